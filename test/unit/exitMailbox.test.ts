// The vCPU threads' exit hand-off (vmm/machine/exitMailbox.ts) between real threads: every exit
// posted is delivered once, in order per vCPU, and counted in flight until received.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Worker } from "node:worker_threads";
import { ExitMailbox } from "../../vmm/machine/exitMailbox";

const EXITS = 200;

test("exits posted by two threads reach the watcher once each, in order, and nothing stays in flight", async () => {
  const mailbox = new ExitMailbox(2);
  // per vCPU, the last exit answered: a poster waits for its answer before posting the next (its vCPU is paused meanwhile)
  const answered = new Int32Array(new SharedArrayBuffer(8));
  const seen: number[][] = [[], []];
  mailbox.watch(2, (vcpu, result) => {
    assert.equal(mailbox.inFlight(vcpu), 1);
    mailbox.received(vcpu);
    seen[vcpu].push(result);
    Atomics.store(answered, vcpu, result);
    Atomics.notify(answered, vcpu);
  });
  const source = `
    const { workerData } = require("node:worker_threads");
    const { ExitMailbox } = require(${JSON.stringify(require.resolve("../../vmm/machine/exitMailbox"))});
    const mailbox = new ExitMailbox(0, workerData.exits);
    const answered = new Int32Array(workerData.answered);
    for (let i = 1; i <= ${EXITS}; i++) {
      mailbox.post(workerData.vcpu, i);
      while (Atomics.load(answered, workerData.vcpu) !== i) Atomics.wait(answered, workerData.vcpu, i - 1, 1000);
    }`;
  const posters = [0, 1].map((vcpu) => new Worker(source, { eval: true, workerData: { exits: mailbox.buffer, answered: answered.buffer, vcpu } }));
  await Promise.all(posters.map((w) => new Promise((resolve, reject) => w.on("exit", resolve).on("error", reject))));
  mailbox.stop();
  const expected = Array.from({ length: EXITS }, (_, i) => i + 1);
  assert.deepEqual(seen, [expected, expected]);
  assert.equal(mailbox.inFlight(0) + mailbox.inFlight(1), 0);
});

test("a message counted as sending is in flight until received; stop() ends the watch", () => {
  const mailbox = new ExitMailbox(1);
  const seen: number[] = [];
  mailbox.watch(1, (_, result) => seen.push(result));
  mailbox.sending(0);
  assert.equal(mailbox.inFlight(0), 1);
  mailbox.received(0);
  assert.equal(mailbox.inFlight(0), 0);
  mailbox.stop();
  mailbox.post(0, 7);
  assert.deepEqual(seen, [], "nothing is delivered after stop()");
});
