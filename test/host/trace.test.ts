// The trace from a real guest on /dev/kvm: `--trace -` keeps stdout for the trace alone, and
// `tsvmm trace` reads what `tsvmm run` wrote (report, --html, --perfetto).
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { tsvmm } from "../support/cli";
import { requireKvm } from "../support/host";

const T = { timeout: 60000 };

test("--trace - streams NDJSON on stdout; the console and the run log go to stderr", T, async (t) => {
  if (!requireKvm(t)) return;
  const r = await tsvmm(["run", "smp", "--cpus", "2", "--trace", "-"]);
  assert.equal(r.status, 0, r.stderr);
  const records = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(records[0].kind, "start");
  assert.equal(records[0].format, "tsvmm-trace");
  assert.equal(records[0].cpus, 2);
  assert.equal(records[records.length - 1].kind, "end");
  records.forEach((x, i) => assert.equal(x.seq, i, "every line a record, in order"));
  assert.match(r.stderr, /all 2 vCPUs reported/, "the guest's console is on stderr");
  assert.match(r.stderr, /tsvmm: RAM 64 MiB/);
});

test("tsvmm trace reads a run's trace: the report, an HTML page and a Perfetto file", T, async (t) => {
  if (!requireKvm(t)) return;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-trace-cli-"));
  const file = path.join(dir, "smp.ndjson");
  assert.equal((await tsvmm(["run", "smp", "--cpus", "2", "--trace", file, "-q"])).status, 0);
  const report = await tsvmm(["trace", file]);
  assert.equal(report.status, 0, report.stderr);
  assert.match(report.stdout, /format version 1, guest smp/);
  assert.match(report.stdout, /2 vCPUs, RAM 64 MiB \(16384 pages\), backend shared/);
  assert.match(report.stdout, /ended at [\d.]+ ms with status 0/);
  assert.match(report.stdout, /Page states at the end: 0 private, 16384 shared/);
  const out = await tsvmm(["trace", file, "--html", path.join(dir, "smp.html"), "--perfetto", path.join(dir, "smp.json")]);
  assert.equal(out.status, 0, out.stderr);
  assert.match(fs.readFileSync(path.join(dir, "smp.html"), "utf8"), /^<!doctype html>/);
  const perfetto = JSON.parse(fs.readFileSync(path.join(dir, "smp.json"), "utf8"));
  assert.ok(perfetto.traceEvents.some((e: { ph: string; args?: { name?: string } }) => e.ph === "M" && e.args?.name === "vCPU 1"));
});

test("tsvmm trace refuses what is not a trace, and bad filters, with the option named", T, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-trace-cli-"));
  const junk = path.join(dir, "junk.ndjson");
  fs.writeFileSync(junk, "hello\nworld\n");
  const r = await tsvmm(["trace", junk]);
  assert.equal(r.status, 64);
  assert.match(r.stderr, /line 1 is not JSON/);
  assert.match(r.stderr, /hint: .*--trace FILE/);
  const missing = await tsvmm(["trace", path.join(dir, "none.ndjson")]);
  assert.equal(missing.status, 64);
  assert.match(missing.stderr, /cannot read \(ENOENT\)/);
  const range = await tsvmm(["trace", junk, "--range", "nonsense"]);
  assert.equal(range.status, 64);
  assert.match(range.stderr, /--range "nonsense" is not a range/);
  const since = await tsvmm(["trace", junk, "--since", "-3"]);
  assert.equal(since.status, 64);
  assert.match(since.stderr, /--since -3 is not a time/);
  const help = await tsvmm(["trace", "--help"]);
  for (const o of ["--html", "--perfetto", "--since", "--until", "--range", "--vcpu", "docs/trace.md"]) assert.ok(help.stdout.includes(o), o);
});
