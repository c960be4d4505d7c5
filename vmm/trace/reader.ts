// Reading a trace (any version) into one model the views share: the run's facts, the page states
// at start, and the events with their outcome and the page runs they changed.
import * as fs from "node:fs";
import * as zlib from "node:zlib";
import { ExitStatus, TsvmmError } from "../errors";
import { PAGE_SIZE, PageState, Run, TRACE_FORMAT, TRACE_VERSION } from "./schema";

export interface TraceFacts {
  /** 0 for traces written before the format had a version */
  version: number;
  guest?: string;
  cpus: number;
  ram: number;
  pageSize: number;
  backing: string;
  backend: string;
  sharedBit: number;
  sharedLimit: number;
  clock?: { monotonicNs: string; wall: string };
}

/** What became of an event: the classes the views count and colour */
export type Outcome = "converted" | "unchanged" | "refused" | "denied" | "race" | "repaired" | "stopped" | "noted";

export interface TraceEvent {
  seq: number;
  time: number;
  vcpu: number;
  kind: string;
  source?: string;
  /** bytes; GPAs of RAM fit a double exactly */
  gpa?: number;
  size?: number;
  from?: string;
  to?: string;
  result?: string;
  ns?: number;
  discard?: number;
  flags?: string;
  outcome: Outcome;
  /** page runs after the event, where it looked at pages (derived for version 0) */
  after?: Run[];
  before?: Run[];
  /** host-request description, memory-fault errno, kernel event text */
  what?: string;
  /** kernel events: the tracepoint's name (kvm_exit, ...) */
  event?: string;
}

/** Per page: 0 shared, 1 private, 2 unknown (version-0 traces do not record the start) */
export const SHARED = 0;
export const PRIVATE = 1;
export const UNKNOWN = 2;

export interface Trace {
  name: string;
  facts: TraceFacts;
  /** page states at start, one byte per page (SHARED, PRIVATE, UNKNOWN) */
  initial: Uint8Array;
  /** every record but start and end, in seq order */
  events: TraceEvent[];
  end?: { time: number; status: number; reason: string };
  warnings: string[];
}

export function readTraceFile(file: string): Trace {
  let text: string;
  try {
    const bytes = fs.readFileSync(file);
    // gzip (a .ndjson.gz kept small, e.g. the test fixtures) reads as well
    text = (bytes[0] === 0x1f && bytes[1] === 0x8b ? zlib.gunzipSync(bytes) : bytes).toString("utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new TsvmmError(`trace ${file}: cannot read (${code ?? (err as Error).message})`, ExitStatus.USAGE, "name a file written by `tsvmm run --trace FILE`");
  }
  return parseTrace(text, file);
}

const bad = (name: string, what: string) =>
  new TsvmmError(`trace ${name}: ${what}`, ExitStatus.USAGE, "give a file written by `tsvmm run --trace FILE` (docs/trace.md describes the format)");

export function parseTrace(text: string, name = "trace"): Trace {
  const lines = text.split("\n");
  const records: Array<Record<string, unknown>> = [];
  const warnings: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    try {
      records.push(JSON.parse(line));
    } catch (err) {
      // A run that was killed can leave half a line at the end; anywhere else it is damage.
      if (lines.slice(i + 1).some((l) => l.trim())) throw bad(name, `line ${i + 1} is not JSON (${(err as Error).message})`);
      warnings.push(`line ${i + 1} is cut short (the run did not finish writing it); ignored`);
    }
  }
  const start = records[0];
  if (!start || start.kind !== "start") throw bad(name, "the first record is not a start record (kind \"start\")");
  const facts = readFacts(start);
  if (facts.version > TRACE_VERSION) warnings.push(`format version ${facts.version} is newer than this tsvmm reads (${TRACE_VERSION}); unknown fields are ignored`);
  const pages = Math.floor(facts.ram / facts.pageSize);
  const events: TraceEvent[] = [];
  let end: Trace["end"];
  for (const r of records.slice(1)) {
    if (r.kind === "end") end = { time: num(r.time), status: num(r.status), reason: String(r.reason ?? "") };
    else events.push(readEvent(r, facts));
  }
  if (!end) warnings.push("no end record: the run did not finish (killed?)");
  const initial = new Uint8Array(pages);
  if (Array.isArray(start.pages)) for (const run of start.pages as Run[]) fill(initial, run);
  else inferInitial(initial, events);
  return { name, facts, initial, events, end, warnings };
}

function readFacts(s: Record<string, unknown>): TraceFacts {
  if (s.format === TRACE_FORMAT) {
    return {
      version: num(s.version),
      guest: String(s.guest),
      cpus: num(s.cpus),
      ram: num(s.ram),
      pageSize: num(s.pageSize) || PAGE_SIZE,
      backing: String(s.backing),
      backend: String(s.backend),
      sharedBit: num(s.sharedBit),
      sharedLimit: parseInt(String(s.sharedLimit), 16) || 0,
      clock: s.clock as TraceFacts["clock"],
    };
  }
  // Version 0: {cpus, ram, backing}; the backing named the private-memory backend too.
  const backing = String(s.backing ?? "unknown");
  return {
    version: 0,
    cpus: num(s.cpus) || 1,
    ram: num(s.ram),
    pageSize: PAGE_SIZE,
    backing,
    backend: backing === "attributes" || backing === "memslots" ? backing : "shared",
    sharedBit: 0,
    sharedLimit: 0,
  };
}

function num(v: unknown): number {
  const n = Number(v);
  return Number.isFinite(n) ? n : 0;
}

export function outcomeOf(kind: string, source: string | undefined, result: string): Outcome {
  if (kind === "memory-fault") return "stopped";
  if (kind !== "conversion") return "noted";
  if (result === "ok" || result.startsWith("ok,")) return "converted";
  if (result.startsWith("ok")) return "unchanged";
  if (/^(EINVAL|ENOSPC)/.test(result)) return source === "fault" ? "stopped" : "refused";
  if (result.startsWith("denied")) return "denied";
  if (result.startsWith("race")) return "race";
  if (source === "fault" && result.includes("test slot") && !result.includes("refused")) return "repaired";
  return "stopped";
}

function readEvent(r: Record<string, unknown>, facts: TraceFacts): TraceEvent {
  const kind = String(r.kind);
  const source = r.source === undefined ? undefined : String(r.source);
  const result = r.result === undefined ? undefined : String(r.result);
  const e: TraceEvent = {
    seq: num(r.seq),
    time: num(r.time),
    vcpu: r.vcpu === undefined ? -1 : num(r.vcpu),
    kind,
    source,
    outcome: outcomeOf(kind, source, result ?? ""),
  };
  if (typeof r.gpa === "string") e.gpa = parseInt(r.gpa, 16);
  if (r.size !== undefined) e.size = num(r.size);
  if (r.from !== undefined) e.from = String(r.from);
  if (r.to !== undefined) e.to = String(r.to);
  if (result !== undefined) e.result = result;
  if (r.ns !== undefined) e.ns = num(r.ns);
  if (r.discard !== undefined) e.discard = num(r.discard);
  if (r.flags !== undefined) e.flags = typeof r.flags === "string" ? r.flags : "0x" + num(r.flags).toString(16);
  if (r.what !== undefined) e.what = String(r.what);
  if (r.errno !== undefined) e.what = String(r.errno);
  if (kind === "kernel") {
    e.event = String(r.event);
    e.what = `${r.event}: ${r.text ?? ""}`;
  }
  if (Array.isArray(r.after)) e.after = r.after as Run[];
  if (Array.isArray(r.before)) e.before = r.before as Run[];
  else if (facts.version === 0 && (e.outcome === "converted" || e.outcome === "unchanged") && e.gpa !== undefined && e.size) {
    // Version 0 did not record pages: the range (the shared view's alias bit removed) ends in `to`.
    const first = Math.floor(withoutAlias(e.gpa, facts) / facts.pageSize);
    const count = Math.ceil(e.size / facts.pageSize);
    if (e.from === "private" || e.from === "shared") e.before = [{ first, count, state: e.from }];
    if (e.to === "private" || e.to === "shared") e.after = [{ first, count, state: e.to }];
  }
  return e;
}

/** The RAM address behind a GPA of the aliased layout's shared view (version 0 has no sharedBit:
 *  an address above RAM loses its top bit). */
export function withoutAlias(gpa: number, facts: TraceFacts): number {
  if (gpa < facts.ram) return gpa;
  const bit = facts.sharedBit ? 2 ** facts.sharedBit : 2 ** Math.floor(Math.log2(gpa));
  return gpa >= bit ? gpa - bit : gpa;
}

function fill(states: Uint8Array, run: Run): void {
  states.fill(run.state === "private" ? PRIVATE : SHARED, run.first, Math.min(states.length, run.first + run.count));
}

/** Version 0: a page's state at start is the state its first conversion found; else unknown. */
function inferInitial(initial: Uint8Array, events: TraceEvent[]): void {
  initial.fill(UNKNOWN);
  for (const e of events) {
    for (const run of e.before ?? []) {
      for (let p = run.first; p < Math.min(initial.length, run.first + run.count); p++)
        if (initial[p] === UNKNOWN) initial[p] = run.state === "private" ? PRIVATE : SHARED;
    }
    // pages converted without a known `from` are known from then on, not at start
    for (const run of e.after ?? []) for (let p = run.first; p < Math.min(initial.length, run.first + run.count); p++) if (initial[p] === UNKNOWN) initial[p] = 3;
  }
  for (let p = 0; p < initial.length; p++) if (initial[p] === 3) initial[p] = UNKNOWN;
}

/** Page states after every event up to (and including) time `until` */
export function statesAt(trace: Trace, until = Infinity): Uint8Array {
  const states = trace.initial.slice();
  for (const e of trace.events) {
    if (e.time > until) break;
    for (const run of e.after ?? []) fill(states, run);
  }
  return states;
}

export interface EventFilter {
  /** ms */
  since?: number;
  until?: number;
  /** GPA ranges [start, end): an event overlapping any of them is kept */
  ranges?: Array<{ start: number; end: number }>;
  vcpu?: number;
}

export function filterEvents(events: TraceEvent[], f: EventFilter, facts?: TraceFacts): TraceEvent[] {
  return events.filter((e) => {
    if (f.since !== undefined && e.time < f.since) return false;
    if (f.until !== undefined && e.time > f.until) return false;
    if (f.vcpu !== undefined && e.vcpu !== f.vcpu) return false;
    if (f.ranges) {
      if (e.gpa === undefined) return false;
      const lo = facts ? withoutAlias(e.gpa, facts) : e.gpa;
      const hi = lo + (e.size || 1);
      if (!f.ranges.some((r) => lo < r.end && hi > r.start)) return false;
    }
    return true;
  });
}

/** "private", "shared", or "unknown" for a state byte */
export function stateName(s: number): PageState | "unknown" {
  return s === PRIVATE ? "private" : s === SHARED ? "shared" : "unknown";
}
