// The conversion state the main thread's engine shares with the vCPU threads (no KVM): the
// page-state map over a SharedArrayBuffer and its lock (real worker threads racing), the tally's
// per-thread rows, and the engine's quiet path against its reported one.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import { PageStateMap } from "../../vmm/memory/pageState";
import { ConversionCounters, TALLY_KEYS } from "../../vmm/memory/counters";
import { ConversionEngine, ConversionEvent } from "../../vmm/memory/engine";
import type { MemoryBackend } from "../../vmm/memory/backend";
import { RecordingBackend } from "../support/fakeKvm";

const MiB = 1n << 20n;

test("a second PageStateMap over the buffer sees the same pages and count; a wrong buffer is refused", () => {
  const main = new PageStateMap(0n, 4n * MiB, "private");
  const other = new PageStateMap(0n, 4n * MiB, "shared", main.buffer);
  assert.equal(other.privatePages, 1024, "attaching does not reinitialise");
  other.set(10, 6, "shared");
  assert.equal(main.privatePages, 1018);
  assert.equal(main.stateOf(0xa000n), "shared");
  assert.deepEqual(main.runs(8, 10), [
    { first: 8, count: 2, state: "private" },
    { first: 10, count: 6, state: "shared" },
    { first: 16, count: 2, state: "private" },
  ]);
  assert.throws(() => new PageStateMap(0n, 8n * MiB, "shared", main.buffer), /not a map of 2048 pages/);
});

test("the lock is held by one thread at a time: 3 worker threads and the main thread convert the same pages", async () => {
  const map = new PageStateMap(0n, 1n * MiB);
  const counters = new ConversionCounters(4);
  // inside[0]: how many threads are between lock and unlock; any value but 1 there is a failure
  const inside = new Int32Array(new SharedArrayBuffer(8));
  const rounds = 2000;
  const dist = path.join(__dirname, "..", "..", "vmm", "memory");
  const body = `
    const { workerData, parentPort } = require("node:worker_threads");
    const { PageStateMap } = require(${JSON.stringify(path.join(dist, "pageState.js"))});
    const { ConversionCounters } = require(${JSON.stringify(path.join(dist, "counters.js"))});
    const { convertLocked } = require(${JSON.stringify(path.join(dist, "convertNow.js"))});
    const map = new PageStateMap(0n, ${1n * MiB}n, "shared", workerData.map);
    const inside = new Int32Array(workerData.inside);
    const c = { map, sharedLimitNumber: 0, counters: new ConversionCounters(workerData.counters).row(workerData.row),
      apply(changes) {
        if (Atomics.add(inside, 0, 1) !== 0) Atomics.add(inside, 1, 1);
        for (let i = 0; i < 200; i++) Atomics.load(inside, 0); // stay inside a while
        Atomics.sub(inside, 0, 1);
        return { discarded: changes.reduce((n, r) => n + r.count, 0) * 4096 };
      } };
    for (let i = 0; i < ${rounds}; i++) convertLocked(c, 0, 8, i % 2 ? "shared" : "private");
    parentPort.postMessage("done");`;
  const workers = [1, 2, 3].map(
    (row) => new Worker(body, { eval: true, workerData: { map: map.buffer, counters: counters.buffer, inside: inside.buffer, row } }),
  );
  const done = workers.map((w) => new Promise((resolve, reject) => (w.once("message", resolve), w.once("error", reject))));
  // The main thread takes the lock too (the engine's conversions and host requests)
  for (let i = 0; i < 200; i++) map.locked(() => assert.equal(Atomics.load(inside, 0), 0, "nobody is converting while the main thread holds the lock"));
  await Promise.all(done);
  assert.equal(Atomics.load(inside, 1), 0, "two threads were never inside at once");
  assert.equal(map.privatePages, Array.from({ length: 8 }, (_, p) => map.isPrivatePage(p)).filter(Boolean).length, "the count matches the pages");
  // every conversion that changed pages was counted in its thread's row
  assert.ok(counters.conversions > 0 && counters.conversions <= 3 * rounds, String(counters.conversions));
  assert.equal(counters.discardedBytes, counters.conversions * 8 * 4096);
});

test("the tally adds up every thread's row, in a fixed key order", () => {
  const counters = new ConversionCounters(3);
  const other = new ConversionCounters(counters.buffer);
  counters.row(0).count("fault-race", 1000);
  other.row(2).count("hypercall-to-private", 2000);
  other.row(1).count("hypercall-to-private", 500);
  other.row(1).converted(8192);
  other.row(2).answeredOnVcpuThread();
  other.row(2).count("hypercall-to-shared"); // answered quietly: counted, not timed
  assert.deepEqual(Object.entries(counters.tally()), [
    ["hypercall-to-private", 2],
    ["hypercall-to-shared", 1],
    ["fault-race", 1],
  ]);
  assert.equal(counters.busyMs, 0.0035);
  assert.equal(counters.timed, 3);
  assert.equal(counters.outcomes, 4);
  assert.equal(counters.discardedBytes, 8192);
  assert.equal(counters.conversions, 1);
  assert.equal(counters.onVcpuThreads, 1);
  assert.throws(() => counters.row(3), /no counter row 3/);
  assert.throws(() => counters.row(0).count("hypercall-to-nowhere", 0), /not a conversion tally key/);
  assert.ok(TALLY_KEYS.includes("api-denied") && TALLY_KEYS.includes("prefault-failed"));
});

/** A backend that converts without a quiesce (as the attributes backend), recording what it applies */
function attributesLike(ram: bigint): RecordingBackend {
  return Object.assign(new RecordingBackend(ram), { kind: "attributes" as const, needsQuiesce: false });
}

function engineWith(listening: boolean, o: { backend?: MemoryBackend; prefault?: boolean } = {}) {
  const map = new PageStateMap(0n, 16n * MiB);
  map.set(256, map.pages - 256, "private");
  const backend = o.backend ?? attributesLike(16n * MiB);
  const events: ConversionEvent[] = [];
  const engine = new ConversionEngine({
    map,
    backend,
    sharedLimit: MiB,
    sharedBit: 0,
    quiesce: (work) => work(),
    emit: (e) => events.push(e),
    listening: () => listening,
    now: () => 0,
    testSlot: () => undefined,
    discard: "always",
    preFault: o.prefault ? () => undefined : undefined,
  });
  return { map, backend: backend as RecordingBackend, events, engine };
}

test("the quiet path (nobody listens) answers, converts, counts and refuses exactly as the reported one", async () => {
  const requests: Array<[bigint, bigint, bigint]> = [
    [0x200000n, 4n, 0n], // to shared
    [0x1ff000n, 6n, 0n], // overlapping: 2 pages change
    [0x200000n, 4n, 0x10n], // back to private
    [0x80000n, 1n, 0x10n], // into the always-shared RAM: refused
    [0x200001n, 1n, 0n], // unaligned: refused
    [0x200000n, 0n, 0n], // no pages: refused
    [16n * MiB, 1n, 0n], // outside RAM: refused
    [0x300000n, 512n, 0x11n], // 2 MiB hint, already private
    [(1n << 53n) + 0x200000n, 1n, 0n], // beyond 2^53 (numbers on the quiet path): refused
    [0x200000n, (1n << 64n) - 1n, 0n], // overflowing: refused
    [0x200000n, 1n, (1n << 53n) | 0x10n], // reserved bits above 2^53: refused
  ];
  const quiet = engineWith(false);
  const loud = engineWith(true);
  for (const [gpa, pages, attrs] of requests) {
    const a = await quiet.engine.request("hypercall", 0, { gpa, pages, attrs });
    const b = await loud.engine.request("hypercall", 0, { gpa, pages, attrs });
    assert.equal(a, b, `request ${gpa.toString(16)}+${pages}`);
  }
  assert.deepEqual(quiet.engine.tally, loud.engine.tally);
  assert.deepEqual(quiet.engine.tally, { "hypercall-to-private": 2, "hypercall-to-shared": 2, "hypercall-refused": 7 });
  assert.deepEqual(quiet.map.runs(), loud.map.runs());
  assert.deepEqual(quiet.backend.applied, loud.backend.applied);
  assert.equal(quiet.engine.counters.discardedBytes, loud.engine.counters.discardedBytes);
  assert.equal(quiet.events.length, 0, "no event is built when nobody listens");
  assert.equal(loud.events.length, requests.length);
  // the quiet path reads no clock: its outcomes are counted, not timed, and the summary says so
  assert.equal(quiet.engine.counters.timed, 0);
  assert.equal(loud.engine.counters.timed, requests.length);
  assert.ok(quiet.engine.summary().some((l) => l.includes(`${requests.length} answered with nobody listening are not timed`)), quiet.engine.summary().join("\n"));
  assert.ok(!loud.engine.summary().some((l) => l.includes("not timed")));
});

test("only a plain conversion on a backend without quiesce may be answered quietly (so on a vCPU thread)", () => {
  assert.equal(engineWith(false).engine.answersQuietly("hypercall", "convert"), true);
  assert.equal(engineWith(true).engine.answersQuietly("hypercall", "convert"), false, "a listener sees every conversion");
  assert.equal(engineWith(false).engine.answersQuietly("hypercall", "deny"), false, "--on-hypercall deny is reported");
  assert.equal(engineWith(false, { prefault: true }).engine.answersQuietly("doorbell", "convert"), false, "--prefault runs on the main thread");
  assert.equal(engineWith(false, { backend: new RecordingBackend(16n * MiB) }).engine.answersQuietly("hypercall", "convert"), false, "memslots: quiesce");
});
