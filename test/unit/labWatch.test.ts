import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PassThrough } from "node:stream";
import { FROZEN_MS, LabWatcher } from "../../vmm/lab/watch";
import { Progress } from "../../vmm/lab/proc";

/** A watcher on files of its own whose lab has reached its command. */
function watcherAtCommand(): LabWatcher {
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
  return w;
}

test("a lab whose QEMU uses no CPU for a minute while the command runs is frozen; any CPU time keeps it alive", () => {
  const w = watcherAtCommand();
  const t = w.commandAt;
  w.noteQemuCpu(500, t);
  assert.equal(w.poll(t + FROZEN_MS - 1000), undefined);
  w.noteQemuCpu(501, t + FROZEN_MS - 1000);
  assert.equal(w.poll(t + FROZEN_MS + 1000), undefined, "QEMU ran a tick a second ago");
  w.noteQemuCpu(501, t + 2 * FROZEN_MS);
  assert.equal(w.poll(t + 2 * FROZEN_MS), "frozen");
});

test("an unreadable CPU time never makes a lab frozen by itself before the minute is up", () => {
  const w = watcherAtCommand();
  w.noteQemuCpu(undefined, w.commandAt + 1000);
  assert.equal(w.poll(w.commandAt + FROZEN_MS - 1), undefined);
});
