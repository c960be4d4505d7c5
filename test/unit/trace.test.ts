// The trace reader and its views on traces written by the real engine and writer (generated,
// seeded) and by real guests (test/fixtures/traces, recorded in the nested lab).
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { generateTrace, GeneratedTrace } from "../support/traceGen";
import { parseTrace, PRIVATE, readTraceFile, SHARED, stateName, statesAt, Trace, UNKNOWN } from "../../vmm/trace/reader";
import { formatReport, percentile } from "../../vmm/trace/report";
import { toPerfetto, tidOf } from "../../vmm/trace/perfetto";
import { pageData, toHtml } from "../../vmm/trace/html";
import { openTrace } from "../../vmm/trace/writer";
import { TRACE_VERSION } from "../../vmm/trace/schema";
import { TsvmmError } from "../../vmm/errors";

let generated: Promise<GeneratedTrace> | undefined;
const small = () => (generated ??= generateTrace(3000, { cpus: 3, seed: 11 }));

function assertMapEquals(trace: Trace, g: GeneratedTrace, states = statesAt(trace)) {
  assert.equal(states.length, g.map.pages);
  for (let p = 0; p < states.length; p++) {
    const want = g.map.isPrivatePage(p) ? PRIVATE : SHARED;
    if (states[p] !== want) assert.fail(`page ${p}: the trace says ${stateName(states[p])}, the engine's map ${stateName(want)}`);
  }
}

/** What the first release wrote: no format fields in start, no before/after in conversions */
function asVersion0(g: GeneratedTrace): string {
  return g.records
    .map((r) => {
      if (r.kind === "start") return { seq: r.seq, time: r.time, vcpu: r.vcpu, kind: r.kind, cpus: r.cpus, ram: r.ram, backing: r.backing };
      const { before: _b, after: _a, ...rest } = r;
      return rest;
    })
    .map((r) => JSON.stringify(r))
    .join("\n");
}

test("version 1: the start record has the format, and replaying the events gives the engine's final map", async () => {
  const g = await small();
  const trace = parseTrace(g.text, "generated");
  assert.equal(trace.facts.version, TRACE_VERSION);
  assert.equal(trace.facts.cpus, 3);
  assert.equal(trace.facts.sharedBit, 40);
  assert.equal(trace.events.length, g.records.length - 2);
  assert.deepEqual(trace.warnings, []);
  assert.equal(trace.initial[0], SHARED, "the firmware page starts shared");
  assert.equal(trace.initial[trace.initial.length - 1], PRIVATE, "the top of RAM starts private");
  assertMapEquals(trace, g);
});

test("version 0 (the first format) still reads: pages a conversion touched are known, the rest unknown", async () => {
  const g = await small();
  const trace = parseTrace(asVersion0(g), "old");
  assert.equal(trace.facts.version, 0);
  assert.equal(trace.events.length, g.records.length - 2);
  const final = statesAt(trace);
  let known = 0;
  for (let p = 0; p < final.length; p++) {
    if (final[p] === UNKNOWN) continue;
    known++;
    assert.equal(final[p], g.map.isPrivatePage(p) ? PRIVATE : SHARED, `page ${p}`);
  }
  assert.ok(known > 1000, `${known} pages known`);
  assert.match(formatReport(trace), /unknown \(version-0 trace\)/);
});

test("the report counts what the records hold, and its filters narrow it", async () => {
  const g = await small();
  const trace = parseTrace(g.text, "generated");
  const conversions = g.records.filter((r) => r.kind === "conversion");
  const bySource = (s: string) => conversions.filter((r) => r.source === s).length;
  const report = formatReport(trace);
  assert.match(report, new RegExp(`by source +.*hypercall ${bySource("hypercall")}`));
  assert.match(report, new RegExp(`fault ${bySource("fault")}`));
  const refused = conversions.filter((r) => String(r.result).startsWith("EINVAL")).length;
  assert.ok(refused > 0);
  assert.match(report, new RegExp(`Refused, denied and stopped \\(${refused}\\)`));
  assert.match(report, /Latency \(µs\) +n +p50 +p90 +p99 +max/);
  assert.match(report, /map: one glyph = \d+ pages?/);

  const one = formatReport(trace, { vcpu: 1, limit: 0 });
  const timeline = one.slice(one.indexOf("\nTimeline"));
  assert.match(timeline, /vCPU 1 \(\d+ events\)/);
  assert.doesNotMatch(timeline, /vCPU [02] /);
  assert.equal(timeline.split("\n").filter((l) => / ms +#\d+ /.test(l)).length, conversions.filter((r) => r.vcpu === 1).length);

  const until = trace.events[1000].time;
  const early = formatReport(trace, { until });
  const at = statesAt(trace, until);
  const privateThen = at.reduce((n, s) => n + (s === PRIVATE ? 1 : 0), 0);
  assert.match(early, new RegExp(`Page states at ${until} ms: ${privateThen} private`));

  const ranged = formatReport(trace, { ranges: [{ start: 0x800000, end: 0x810000 }], limit: 0 });
  for (const line of ranged.slice(ranged.indexOf("\nTimeline")).split("\n").filter((l) => / ms +#/.test(l))) {
    const [, gpa, size] = /(0x[0-9a-f]+)\+(0x[0-9a-f]+)/.exec(line)!;
    const lo = Number(gpa) % 2 ** 40; // the shared view's alias
    assert.ok(lo < 0x810000 && lo + Number(size) > 0x800000, line);
  }
});

test("percentiles pick the nearest rank", () => {
  const v = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(v, 50), 50);
  assert.equal(percentile(v, 99), 99);
  assert.equal(percentile([7], 90), 7);
});

test("Perfetto JSON: it parses, a track per vCPU with a slice per conversion, page counters that follow the map", async () => {
  const g = await small();
  const trace = parseTrace(g.text, "generated");
  const json = JSON.parse(JSON.stringify(toPerfetto(trace)));
  const events = json.traceEvents as Array<{ ph: string; name: string; tid?: number; ts?: number; dur?: number; args?: Record<string, unknown> }>;
  const names = new Map(events.filter((e) => e.ph === "M" && e.name === "thread_name").map((e) => [e.tid, e.args!.name]));
  for (let v = 0; v < 3; v++) assert.equal(names.get(tidOf(v)), `vCPU ${v}`);
  for (let v = 0; v < 3; v++) {
    const slices = events.filter((e) => e.ph === "X" && e.tid === tidOf(v));
    assert.equal(slices.length, g.records.filter((r) => r.kind === "conversion" && r.vcpu === v).length);
    for (const s of slices) {
      assert.ok(s.ts! >= 0 && s.dur! >= 0);
      for (const k of ["gpa", "size", "from", "to", "source", "result"]) assert.ok(k in s.args!, `slice args have ${k}`);
    }
  }
  const counters = events.filter((e) => e.ph === "C");
  assert.ok(counters.length > 10);
  for (const c of counters) assert.equal((c.args!.private as number) + (c.args!.shared as number), g.map.pages);
  assert.equal(counters[0].args!.private, trace.initial.reduce((n, s) => n + (s === PRIVATE ? 1 : 0), 0));
  assert.equal(counters[counters.length - 1].args!.private, g.map.privatePages);
  for (let i = 1; i < counters.length; i++) assert.ok(counters[i].ts! >= counters[i - 1].ts!, "counters in time order");
});

test("the HTML page is self-contained and embeds data that replays to the final map", async () => {
  const g = await small();
  const trace = parseTrace(g.text, "generated");
  const html = toHtml(trace);
  assert.doesNotMatch(html, /<script[^>]+src=|<link |https?:\/\//i, "no external script, style or address");
  const json = /<script id="trace-data" type="application\/json">(.*?)<\/script>/s.exec(html)![1];
  const data = JSON.parse(json) as ReturnType<typeof pageData>;
  assert.equal(data.t.length, trace.events.length);
  assert.deepEqual(data.lanes.map((l) => l.vcpu), [0, 1, 2]);
  for (let lane = 0; lane < 3; lane++) assert.equal(data.l.filter((l) => l === lane).length, trace.events.filter((e) => e.vcpu === lane).length);
  const states = new Uint8Array(data.pages);
  for (let i = 0, p = 0; i < data.initial.length; i += 2) states.fill(data.initial[i], p, (p += data.initial[i + 1]));
  for (let i = 0; i < data.changes.length; i += 4) states.fill(data.changes[i + 3], data.changes[i + 1], data.changes[i + 1] + data.changes[i + 2]);
  assertMapEquals(trace, g, states);
  assert.equal(data.refusedTotal, trace.events.filter((e) => e.outcome === "refused").length);
});

test("damaged traces: a clear error naming the line, a cut-short last line is a warning", () => {
  const start = JSON.stringify({ seq: 0, time: 0, vcpu: -1, kind: "start", cpus: 1, ram: 1 << 20, backing: "memfd" });
  assert.throws(() => parseTrace(`${start}\n{oops\n{"kind":"end"}\n`, "t.ndjson"), (e: TsvmmError) => /trace t\.ndjson: line 2 is not JSON/.test(e.message) && e.status === 64);
  assert.throws(() => parseTrace(`{"kind":"conversion"}\n`, "t"), /first record is not a start record/);
  assert.throws(() => parseTrace("", "t"), /first record is not a start record/);
  const cut = parseTrace(`${start}\n{"seq":1,"time":1,"vc`, "t");
  assert.match(cut.warnings.join("\n"), /line 2 is cut short/);
  assert.match(cut.warnings.join("\n"), /no end record/);
  const newer = parseTrace(JSON.stringify({ kind: "start", format: "tsvmm-trace", version: TRACE_VERSION + 1, cpus: 1, ram: 4096, pageSize: 4096, pages: [] }), "t");
  assert.match(newer.warnings.join("\n"), /newer than this tsvmm reads/);
  assert.throws(() => readTraceFile("/nonexistent/trace.ndjson"), /cannot read \(ENOENT\)/);
});

test("the writer refuses an unwritable --trace with the option and a fix", () => {
  assert.throws(() => openTrace(path.join(os.tmpdir(), "no-such-dir", "x.ndjson")), (e: TsvmmError) => /--trace .*cannot open for writing \(ENOENT\)/.test(e.message) && !!e.hint);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-trace-")), "t.ndjson");
  const sink = openTrace(file);
  sink.write({ kind: "start" });
  sink.close();
  assert.equal(fs.readFileSync(file, "utf8"), '{"kind":"start"}\n');
});
