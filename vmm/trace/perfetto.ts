// `tsvmm trace FILE --perfetto OUT.json`: Chrome's JSON trace-event format, which Perfetto
// (ui.perfetto.dev) and chrome://tracing open. A track per vCPU with a slice per conversion and
// an instant per other event, and a counter of private and shared pages over time.
import { PRIVATE, SHARED, Trace, UNKNOWN } from "./reader";
import { vcpuName } from "./report";
import type { Run } from "./schema";

export interface TraceEventJson {
  name: string;
  ph: "X" | "i" | "C" | "M";
  pid: number;
  tid?: number;
  ts?: number;
  dur?: number;
  s?: "t";
  cat?: string;
  args?: Record<string, unknown>;
}

const PID = 1;
/** The VMM's own track (start, end, API conversions) is tid 1; vCPU n is tid n + 2; KVM events
 *  no vCPU could be assigned to are on tid 100000. */
export const tidOf = (vcpu: number) => (vcpu === -2 ? 100000 : vcpu < 0 ? 1 : vcpu + 2);
const hex = (n: number) => "0x" + n.toString(16);

export function toPerfetto(trace: Trace): { traceEvents: TraceEventJson[]; displayTimeUnit: "ms"; otherData: Record<string, unknown> } {
  const { facts } = trace;
  const out: TraceEventJson[] = [];
  out.push({ name: "process_name", ph: "M", pid: PID, args: { name: `tsvmm ${facts.guest ?? "run"}` } });
  const lanes = new Set<number>([-1, ...Array.from({ length: facts.cpus }, (_, i) => i), ...trace.events.map((e) => e.vcpu)]);
  for (const v of [...lanes].sort((a, b) => a - b)) {
    out.push({ name: "thread_name", ph: "M", pid: PID, tid: tidOf(v), args: { name: vcpuName(v) } });
    out.push({ name: "thread_sort_index", ph: "M", pid: PID, tid: tidOf(v), args: { sort_index: tidOf(v) } });
  }

  const states = trace.initial.slice();
  const tally = [0, 0, 0];
  for (const s of states) tally[s]++;
  const counter = (ts: number) =>
    out.push({
      name: "pages",
      ph: "C",
      pid: PID,
      ts,
      args: tally[UNKNOWN] ? { private: tally[PRIVATE], shared: tally[SHARED], unknown: tally[UNKNOWN] } : { private: tally[PRIVATE], shared: tally[SHARED] },
    });
  counter(0);

  for (const e of trace.events) {
    const end = e.time * 1000;
    const tid = tidOf(e.vcpu);
    if (e.kind === "conversion") {
      const dur = (e.ns ?? 0) / 1000;
      const name = e.outcome === "converted" || e.outcome === "unchanged" ? `${e.source} → ${e.to}` : `${e.source} ${e.outcome}`;
      out.push({
        name,
        cat: e.source,
        ph: "X",
        pid: PID,
        tid,
        ts: Math.max(0, end - dur),
        dur,
        args: { seq: e.seq, gpa: hex(e.gpa ?? 0), size: e.size, from: e.from, to: e.to, source: e.source, result: e.result, ...(e.flags ? { flags: e.flags } : {}) },
      });
      if (e.after && apply(states, tally, e.after)) counter(end);
    } else {
      const args: Record<string, unknown> = { seq: e.seq };
      if (e.gpa !== undefined) Object.assign(args, { gpa: hex(e.gpa), size: e.size, flags: e.flags });
      if (e.what) args.what = e.what;
      out.push({ name: e.event ?? e.kind, cat: e.kind, ph: "i", s: "t", pid: PID, tid, ts: end, args });
    }
  }
  if (trace.end) out.push({ name: "end", cat: "end", ph: "i", s: "t", pid: PID, tid: tidOf(-1), ts: trace.end.time * 1000, args: { status: trace.end.status, reason: trace.end.reason } });
  return {
    traceEvents: out,
    displayTimeUnit: "ms",
    otherData: { format: "tsvmm-trace", version: facts.version, guest: facts.guest, backend: facts.backend, ram: facts.ram, clock: facts.clock },
  };
}

/** Apply runs to the states and the tally; true when a page changed. */
function apply(states: Uint8Array, tally: number[], runs: Run[]): boolean {
  let changed = false;
  for (const r of runs) {
    const want = r.state === "private" ? PRIVATE : SHARED;
    for (let p = r.first; p < Math.min(states.length, r.first + r.count); p++) {
      if (states[p] === want) continue;
      tally[states[p]]--;
      tally[want]++;
      states[p] = want;
      changed = true;
    }
  }
  return changed;
}
