// `tsvmm trace FILE`: a recorded run as text a person reads top to bottom.
import { EventFilter, filterEvents, PRIVATE, SHARED, stateName, statesAt, Trace, TraceEvent } from "./reader";

export interface ReportOptions extends EventFilter {
  /** glyph-map width in characters */
  width?: number;
  /** timeline lines per vCPU (0 = all) */
  limit?: number;
}

const hex = (n: number) => "0x" + n.toString(16);
const mib = (bytes: number) => (bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(bytes % (1 << 20) ? 1 : 0)} MiB` : `${bytes >> 10} KiB`);
export const vcpuName = (v: number) => (v === -2 ? "KVM (no vCPU)" : v < 0 ? "VMM" : `vCPU ${v}`);

/** "hypercall→private", "fault→shared", "doorbell refused", ...: the key events are counted by */
export function directionOf(e: TraceEvent): string {
  if (e.kind !== "conversion") return e.kind;
  return e.to && e.to !== "-" ? `to ${e.to}` : "no change";
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function countBy<T>(items: T[], key: (t: T) => string): Array<[string, number]> {
  const m = new Map<string, number>();
  for (const i of items) m.set(key(i), (m.get(key(i)) ?? 0) + 1);
  return [...m].sort((a, b) => b[1] - a[1]);
}

/** One line per event, the run log's shape */
export function describeEvent(e: TraceEvent): string {
  const at = `${e.time.toFixed(3).padStart(10)} ms  #${e.seq}`;
  if (e.kind === "conversion") {
    const dir = e.from === "-" && e.to === "-" ? "" : ` ${e.from}→${e.to}`;
    const dur = e.ns !== undefined ? ` (${(e.ns / 1000).toFixed(1)} µs)` : "";
    return `${at} ${e.source} ${hex(e.gpa ?? 0)}+${hex(e.size ?? 0)}${e.flags ? ` flags ${e.flags}` : ""}${dir}: ${e.result}${dur}`;
  }
  if (e.kind === "memory-fault") return `${at} memory-fault ${hex(e.gpa ?? 0)}+${hex(e.size ?? 0)} flags ${e.flags} (${e.what})`;
  return `${at} ${e.kind}${e.what ? `: ${e.what}` : ""}`;
}

export function formatReport(trace: Trace, o: ReportOptions = {}): string {
  const { facts } = trace;
  const out: string[] = [];
  const events = filterEvents(trace.events, o, facts);
  const pages = trace.initial.length;
  const filters = [
    o.since !== undefined ? `since ${o.since} ms` : "",
    o.until !== undefined ? `until ${o.until} ms` : "",
    o.ranges ? `range ${o.ranges.map((r) => `${hex(r.start)}-${hex(r.end)}`).join(",")}` : "",
    o.vcpu !== undefined ? `vCPU ${o.vcpu}` : "",
  ].filter(Boolean);

  out.push(`${trace.name}: tsvmm trace, format version ${facts.version}${facts.guest ? `, guest ${facts.guest}` : ""}`);
  out.push(
    `  ${facts.cpus} vCPU${facts.cpus === 1 ? "" : "s"}, RAM ${mib(facts.ram)} (${pages} pages), backend ${facts.backend} (${facts.backing})` +
      (facts.sharedBit ? `, shared view at bit ${facts.sharedBit}` : "") +
      (facts.sharedLimit ? `, always shared below ${hex(facts.sharedLimit)}` : ""),
  );
  if (trace.end) out.push(`  ended at ${trace.end.time.toFixed(3)} ms with status ${trace.end.status}: ${trace.end.reason}`);
  for (const w of trace.warnings) out.push(`  warning: ${w}`);
  out.push(`  ${events.length} of ${trace.events.length} events${filters.length ? ` (${filters.join(", ")})` : ""}`);

  const conversions = events.filter((e) => e.kind === "conversion");
  out.push("", "Counts");
  const line = (label: string, pairs: Array<[string, number]>) => out.push(`  ${label.padEnd(13)} ${pairs.map(([k, n]) => `${k} ${n}`).join(", ") || "none"}`);
  line("by kind", countBy(events, (e) => e.kind));
  line("by source", countBy(conversions, (e) => e.source ?? "-"));
  line("by direction", countBy(conversions, directionOf));
  line("by outcome", countBy(conversions, (e) => e.outcome));
  line("by vCPU", countBy(events, (e) => vcpuName(e.vcpu)));

  const timed = new Map<string, number[]>();
  for (const e of conversions) {
    if (e.ns === undefined) continue;
    const key = `${e.source} ${e.outcome === "converted" ? directionOf(e) : e.outcome}`;
    if (!timed.has(key)) timed.set(key, []);
    timed.get(key)!.push(e.ns / 1000);
  }
  if (timed.size) {
    out.push("", "Latency (µs)".padEnd(32) + ["n", "p50", "p90", "p99", "max"].map((h) => h.padStart(9)).join(""));
    for (const [key, values] of [...timed].sort()) {
      values.sort((a, b) => a - b);
      const cells = [values.length, percentile(values, 50), percentile(values, 90), percentile(values, 99), values[values.length - 1]];
      out.push(`  ${key.padEnd(30)}` + cells.map((c, i) => (i ? c.toFixed(1) : String(c)).padStart(9)).join(""));
    }
  }

  const refused = events.filter((e) => e.outcome === "refused" || e.outcome === "denied" || e.outcome === "stopped");
  out.push("", `Refused, denied and stopped (${refused.length})`);
  for (const e of refused) out.push(`  ${vcpuName(e.vcpu)}: ${describeEvent(e).trim()}`);

  const until = o.until ?? Infinity;
  const states = statesAt(trace, until);
  const window = o.ranges
    ? o.ranges.map((r) => ({ first: Math.floor(r.start / facts.pageSize), end: Math.ceil(r.end / facts.pageSize) }))
    : [{ first: 0, end: pages }];
  out.push("", `Page states ${until === Infinity ? "at the end" : `at ${until} ms`}: ${count(states, PRIVATE)} private, ${count(states, SHARED)} shared` + (count(states, 2) ? `, ${count(states, 2)} unknown (version-0 trace)` : ""));
  for (const w of window) out.push(...stateRuns(states, w.first, Math.min(w.end, pages), facts.pageSize));
  for (const w of window) out.push(...glyphMap(states, w.first, Math.min(w.end, pages), facts.pageSize, o.width ?? 64));

  out.push("", "Timeline");
  const lanes = [...new Set(events.map((e) => e.vcpu))].sort((a, b) => a - b);
  const limit = o.limit ?? 40;
  for (const v of lanes) {
    const mine = events.filter((e) => e.vcpu === v);
    out.push(`  ${vcpuName(v)} (${mine.length} events)`);
    const shown = limit > 0 ? mine.slice(0, limit) : mine;
    for (const e of shown) out.push(`  ${describeEvent(e)}`);
    if (shown.length < mine.length) out.push(`  ... ${mine.length - shown.length} more (--limit 0 shows all)`);
  }
  return out.join("\n") + "\n";
}

function count(states: Uint8Array, s: number): number {
  let n = 0;
  for (const x of states) if (x === s) n++;
  return n;
}

const MAX_RUN_LINES = 24;

function stateRuns(states: Uint8Array, first: number, end: number, pageSize: number): string[] {
  const runs: Array<{ first: number; count: number; state: number }> = [];
  for (let p = first; p < end; p++) {
    const last = runs[runs.length - 1];
    if (last && last.state === states[p]) last.count++;
    else runs.push({ first: p, count: 1, state: states[p] });
  }
  const lines = runs
    .slice(0, MAX_RUN_LINES)
    .map((r) => `  ${hex(r.first * pageSize).padStart(12)}-${hex((r.first + r.count) * pageSize).padEnd(12)} ${stateName(r.state).padEnd(8)} ${r.count} pages`);
  if (runs.length > MAX_RUN_LINES) lines.push(`  ... ${runs.length - MAX_RUN_LINES} more runs (--range narrows)`);
  return lines;
}

/** One line per region: each glyph is `per` pages; █ all private, ░ all shared, ▒ both, ? unknown. */
export function glyphMap(states: Uint8Array, first: number, end: number, pageSize: number, width: number): string[] {
  const pages = end - first;
  if (pages <= 0) return [];
  // about 16 lines at most; a glyph covers a whole number of pages
  const per = Math.max(1, Math.ceil(pages / (width * 16)));
  const lines = [`  map: one glyph = ${per} page${per === 1 ? "" : "s"} (${mib(per * pageSize)}); █ private, ░ shared, ▒ both, ? unknown`];
  for (let row = first; row < end; row += per * width) {
    let text = "";
    for (let g = row; g < Math.min(end, row + per * width); g += per) {
      let priv = 0;
      let shared = 0;
      let unknown = 0;
      for (let p = g; p < Math.min(end, g + per); p++) states[p] === PRIVATE ? priv++ : states[p] === SHARED ? shared++ : unknown++;
      text += unknown && !priv && !shared ? "?" : priv && shared ? "▒" : priv ? "█" : shared ? "░" : "▒";
    }
    lines.push(`  ${hex(row * pageSize).padStart(12)} ${text}`);
  }
  return lines;
}
