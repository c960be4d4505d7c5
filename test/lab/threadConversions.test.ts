// Conversions answered on the vCPU threads (attributes backend, nobody listening): the fast path is
// taken, and the guest's own checks, the page states at the end and the conversion tally are the
// same as on the main thread's path, which a trace or a run log selects.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { runGuest, GuestRun, RunOptions } from "../../vmm/run";
import { assessHost, probeHost } from "../../vmm/host/caps";

const verdict = assessHost(probeHost());
// Only the attributes backend converts without a quiesce; the stock lab kernel has none of it.
const onAttributes = verdict.backends.attributes.available ? test : ((() => undefined) as unknown as typeof test);
const T = { timeout: 600_000 };

function assertTapPassed(r: GuestRun): void {
  const plan = /^1\.\.(\d+)$/m.exec(r.console);
  assert.ok(plan, `no TAP plan in:\n${r.console}`);
  assert.deepEqual(r.console.match(/^not ok.*$/gm) ?? [], [], "failed TAP lines");
  assert.equal((r.console.match(/^ok \d+/gm) ?? []).length, Number(plan[1]), "every planned check ran and passed");
  assert.equal(r.status, 0, `${r.reason}\n${r.report ?? ""}`);
}

/** The same guest with nobody listening, then with a trace (every conversion an event) */
async function bothPaths(opts: RunOptions): Promise<{ quiet: GuestRun; traced: GuestRun; traceEvents: number }> {
  const quiet = await runGuest({ timeout: 240, ...opts });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-lab-"));
  try {
    const trace = path.join(dir, "trace.ndjson");
    const traced = await runGuest({ timeout: 240, ...opts, trace });
    const traceEvents = fs.readFileSync(trace, "utf8").split("\n").filter((l) => l.includes('"kind":"conversion"')).length;
    return { quiet, traced, traceEvents };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const pagesNow = (r: GuestRun) => r.conversions!.summary.find((l) => l.startsWith("pages now:"));

for (const convertVia of ["hypercall", "doorbell"] as const) {
  onAttributes(`convert by ${convertVia}: answered on the vCPU thread with nobody listening, on the main thread with a trace, same results`, T, async () => {
    const { quiet, traced, traceEvents } = await bothPaths({ guest: "convert", privateMemory: { backend: "attributes", convertVia } });
    assertTapPassed(quiet);
    assertTapPassed(traced);
    const q = quiet.conversions!;
    const t = traced.conversions!;
    // Every valid request of the guest was answered where it exited; the main thread saw none.
    assert.equal(q.onVcpuThreads, q.tally[`${convertVia}-to-private`] + q.tally[`${convertVia}-to-shared`] + q.tally[`${convertVia}-refused`], JSON.stringify(q));
    assert.ok(q.onVcpuThreads > 0);
    // The valid ones inside the native run loop; the refusals in JavaScript, which says why.
    assert.equal(q.inRunLoop, q.tally[`${convertVia}-to-private`] + q.tally[`${convertVia}-to-shared`], JSON.stringify(q));
    assert.equal(t.onVcpuThreads, 0, "with a trace every conversion went to the engine");
    assert.equal(t.inRunLoop, 0);
    assert.equal(traceEvents, Object.values(t.tally).reduce((a, b) => a + b, 0), "one trace event per counted conversion");
    assert.deepEqual(q.tally, t.tally, "the same tally on both paths");
    assert.ok(q.tally[`${convertVia}-refused`] >= 4, "the guest's invalid requests were refused on the vCPU thread too");
    assert.equal(pagesNow(quiet), pagesNow(traced), "the same page states at the end");
    assert.match(q.summary.join("\n"), new RegExp(`, ${q.onVcpuThreads} conversions answered on vCPU threads`));
  });
}

onAttributes("a run log sees every conversion: none is answered on a vCPU thread", T, async () => {
  const lines: string[] = [];
  const r = await runGuest({ guest: "convert", timeout: 240, privateMemory: { backend: "attributes" }, log: (l) => lines.push(l) });
  assertTapPassed(r);
  assert.equal(r.conversions!.onVcpuThreads, 0);
  assert.equal(r.conversions!.inRunLoop, 0);
  const logged = lines.filter((l) => / hypercall 0x[0-9a-f]+\+0x/.test(l)).length;
  const tally = r.conversions!.tally;
  assert.equal(logged, tally["hypercall-to-private"] + tally["hypercall-to-shared"] + tally["hypercall-refused"], "one run-log line per conversion");
});

onAttributes("smp-convert with 4 vCPUs converting at once on their threads: the map the guest computed, the same tally as traced", T, async () => {
  const { quiet, traced } = await bothPaths({ guest: "smp-convert", cpus: 4, privateMemory: { backend: "attributes" } });
  assertTapPassed(quiet);
  assertTapPassed(traced);
  assert.ok(quiet.conversions!.onVcpuThreads > 0, JSON.stringify(quiet.conversions));
  assert.ok(quiet.conversions!.inRunLoop > 0, JSON.stringify(quiet.conversions));
  assert.deepEqual(quiet.conversions!.tally, traced.conversions!.tally);
  assert.equal(pagesNow(quiet), pagesNow(traced));
});
