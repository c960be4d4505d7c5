// The views on traces recorded from real guests in the lab (test/fixtures/traces/README.md says
// which runs, and what each run itself reported: the facts checked here).
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { PRIVATE, readTraceFile, SHARED, statesAt, Trace, UNKNOWN } from "../../vmm/trace/reader";
import { formatReport } from "../../vmm/trace/report";
import { toPerfetto, tidOf } from "../../vmm/trace/perfetto";
import { pageData } from "../../vmm/trace/html";
import { ROOT } from "../support/cli";

const fixture = (name: string) => readTraceFile(path.join(ROOT, "test", "fixtures", "traces", `${name}.ndjson.gz`));
const count = (states: Uint8Array, s: number) => states.reduce((n, x) => n + (x === s ? 1 : 0), 0);
const PAGE = 4096;

test("smp-convert: each vCPU's lane holds the requests its guest counted, and the end map is tsvmm's", () => {
  const trace = fixture("smp-convert");
  assert.equal(trace.facts.version, 1);
  assert.equal(trace.facts.cpus, 2);
  const requests = (v: number) =>
    trace.events.filter((e) => e.kind === "conversion" && e.source === "hypercall" && e.vcpu === v && (e.outcome === "converted" || e.outcome === "unchanged"));
  assert.equal(requests(0).length, 58, "vCPU 0: 58 conversion requests (the guest's count)");
  assert.equal(requests(1).length, 64, "vCPU 1: 64 conversion requests");
  const end = statesAt(trace);
  assert.equal(count(end, PRIVATE), 16098, "tsvmm's summary: 16098 private");
  assert.equal(count(end, SHARED), 286, "and 286 shared");
  assert.match(formatReport(trace), /Page states at the end: 16098 private, 286 shared/);

  const perfetto = toPerfetto(trace).traceEvents;
  for (const v of [0, 1]) assert.equal(perfetto.filter((e) => e.ph === "X" && e.tid === tidOf(v)).length, requests(v).length);
  const counters = perfetto.filter((e) => e.ph === "C");
  assert.deepEqual(counters[counters.length - 1].args, { private: 16098, shared: 286 });

  const kernel = trace.events.filter((e) => e.kind === "kernel");
  assert.equal(kernel.length, 122);
  assert.ok(kernel.every((e) => e.event === "kvm_hypercall" && e.vcpu >= 0), "each hypercall on a vCPU (its thread's kvm_exit named it)");
  const lanes = pageData(trace).lanes.map((l) => l.name);
  assert.deepEqual(lanes, ["vCPU 0", "vCPU 1"]);
});

test("implicit: ten memory-fault conversions, and the pages end as the guest says", () => {
  const trace = fixture("implicit");
  assert.equal(trace.facts.sharedBit, 39);
  const faults = trace.events.filter((e) => e.kind === "conversion" && e.source === "fault");
  assert.equal(faults.length, 10, "the guest expected 10 implicit conversions");
  assert.ok(faults.every((e) => e.outcome === "converted"));
  const end = statesAt(trace);
  const first = 0x200000 / PAGE;
  assert.deepEqual(Array.from(end.slice(first, first + 8)), [PRIVATE, SHARED, SHARED, PRIVATE, SHARED, SHARED, SHARED, SHARED]);
  const report = formatReport(trace, { ranges: [{ start: 0x200000, end: 0x208000 }] });
  assert.match(report, /0x200000 █░░█░░░░/);
});

test("deny: every request denied or refused, nothing converted, the end map is the start map", () => {
  const trace = fixture("deny");
  const conversions = trace.events.filter((e) => e.kind === "conversion");
  assert.ok(conversions.length > 0 && conversions.every((e) => e.outcome === "denied" || e.outcome === "refused"));
  assert.deepEqual(statesAt(trace), trace.initial);
  assert.match(formatReport(trace), new RegExp(`Refused, denied and stopped \\(${conversions.length}\\)`));
  assert.equal(trace.end?.status, 1, "the guest failed its checks");
});

test("convert: the refusals with their reasons; version 0 of the same run reads to the same map where it knows", () => {
  const v1: Trace = fixture("convert");
  const report = formatReport(v1);
  for (const why of ["is outside RAM", "overflows", "reserved attribute bits 0x20", "page-size field 3"]) assert.match(report, new RegExp(`EINVAL: .*${why}`));
  const v0 = fixture("convert-v0");
  assert.equal(v0.facts.version, 0);
  assert.equal(v0.facts.backend, "memslots");
  assert.equal(v0.events.length, v1.events.length);
  const a = statesAt(v1);
  const b = statesAt(v0);
  let known = 0;
  for (let p = 0; p < a.length; p++) {
    if (b[p] === UNKNOWN) continue;
    known++;
    assert.equal(b[p], a[p], `page ${p}`);
  }
  assert.ok(known > 512, `${known} pages known from version 0 (the pages its conversions touched)`);
});
