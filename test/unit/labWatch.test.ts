import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PassThrough } from "node:stream";
import { FROZEN_MS, LabWatcher } from "../../vmm/lab/watch";
import { Progress } from "../../vmm/lab/proc";
import { labPinnedCpu } from "../../vmm/lab/qemu";

/** A watcher on files of its own whose lab has reached its command. */
function watcherAtCommand(): { w: LabWatcher; labio: string; consoleLog: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-watch-"));
  fs.mkdirSync(path.join(dir, "labio"));
  const consoleLog = path.join(dir, "console.log");
  fs.writeFileSync(consoleLog, "TSVMM-LAB-STAGE init 2.5\nTSVMM-LAB-STAGE command 2.8\n");
  const w = new LabWatcher({
    consoleLog, labio: path.join(dir, "labio"), argv: ["true"], bootTimeoutMs: 300_000, timeoutMs: 1_800_000,
    progress: new Progress(true), verbose: false, out: new PassThrough(), err: new PassThrough(),
  });
  assert.equal(w.poll(), undefined);
  assert.ok(w.commandAt > 0, "the command marker was read");
  return { w, labio: path.join(dir, "labio"), consoleLog };
}

test("a lab whose clock stands still for a minute while the command runs is frozen; any tick keeps it alive", () => {
  const { w, labio } = watcherAtCommand();
  const t = w.commandAt;
  const tick = (uptime: string, at: number) => {
    fs.writeFileSync(path.join(labio, "clock"), uptime + "\n");
    return w.poll(at);
  };
  assert.equal(tick("3.01", t + 1000), undefined);
  assert.equal(w.poll(t + FROZEN_MS - 1000), undefined);
  assert.equal(tick("63.02", t + FROZEN_MS - 1000), undefined);
  assert.equal(w.poll(t + FROZEN_MS + 1000), undefined, "the lab ticked a second ago");
  assert.equal(w.poll(t + 2 * FROZEN_MS), "frozen");
});

test("a lab that never wrote its clock is frozen only once the minute since its command started is up", () => {
  const { w } = watcherAtCommand();
  assert.equal(w.poll(w.commandAt + FROZEN_MS - 1), undefined);
  assert.equal(w.poll(w.commandAt + FROZEN_MS + 1), "frozen");
});

test("after the command's exit marker a still clock is not a freeze", () => {
  const { w, consoleLog } = watcherAtCommand();
  fs.appendFileSync(consoleLog, "TSVMM-LAB-EXIT 0 9.5\n");
  assert.equal(w.poll(w.endAt + 1000), undefined);
  assert.equal(w.poll(w.commandAt + FROZEN_MS + 1), "linger", "the lab's own end is waited for, not taken for a freeze");
});

test("a one-CPU lab's QEMU is pinned to one host CPU, a two-CPU lab's floats; TSVMM_LAB_PIN overrides", () => {
  const saved = process.env.TSVMM_LAB_PIN;
  try {
    delete process.env.TSVMM_LAB_PIN;
    const cpu = labPinnedCpu(1);
    assert.ok(cpu !== undefined && cpu >= 0 && cpu < os.cpus().length, `pinned to ${cpu}`);
    assert.equal(labPinnedCpu(2), undefined);
    process.env.TSVMM_LAB_PIN = "none";
    assert.equal(labPinnedCpu(1), undefined);
    process.env.TSVMM_LAB_PIN = "0";
    assert.equal(labPinnedCpu(1), 0);
    assert.equal(labPinnedCpu(2), 0);
  } finally {
    if (saved === undefined) delete process.env.TSVMM_LAB_PIN;
    else process.env.TSVMM_LAB_PIN = saved;
  }
});
