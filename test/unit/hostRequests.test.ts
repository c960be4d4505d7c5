// Host requests and the test slot without KVM: a plain buffer as the shared view, a backend that
// records punches, and the fake VM for the test slot's memslots.
import { test } from "node:test";
import assert from "node:assert/strict";
import { handleHostRequest, HostRequestContext } from "../../vmm/machine/hostRequests";
import { HostBreak, HostOp } from "../../vmm/machine/abi";
import { PageStateMap } from "../../vmm/memory/pageState";
import { SlotState, TestSlot } from "../../vmm/memory/testSlot";
import { FakeVm, RecordingBackend } from "../support/fakeKvm";

const RAM = 4n << 20n;
const LIMIT = 0x100000n;
const REQ = 0x8000; // a request block in the always-shared RAM

function setup(testSlot: HostRequestContext["testSlot"] = () => "no test slot was created") {
  const map = new PageStateMap(0n, RAM);
  map.set(0x200, 0x10, "private"); // [0x200000, 0x210000) private
  const backend = new RecordingBackend(RAM);
  const view = backend.sharedView;
  const ctx: HostRequestContext = { map, backend, sharedLimit: LIMIT, testSlot };
  /** Write a request block, perform it, and read the answer */
  const send = (op: number, start: bigint, size: bigint, expect = 0, fill = 0, flags = 0, at = REQ) => {
    view.fill(0, at, at + 48);
    view.writeUInt32LE(op, at);
    view.writeInt32LE(-2, at + 4);
    view.writeBigUInt64LE(start, at + 8);
    view.writeBigUInt64LE(size, at + 16);
    view[at + 24] = expect;
    view[at + 25] = fill;
    view[at + 26] = flags;
    const what = handleHostRequest(ctx, BigInt(at));
    return { what, result: view.readInt32LE(at + 4), found: view.readBigUInt64LE(at + 32), value: view.readBigUInt64LE(at + 40) };
  };
  return { map, backend, view, send };
}

test("CHECK_SHARED compares the shared view, reports the first mismatch, and fills on request", () => {
  const s = setup();
  s.view.fill(0x11, 0x300000, 0x302000);
  assert.equal(s.send(HostOp.CHECK_SHARED, 0x300000n, 0x2000n, 0x11, 0x44, 1).result, 0);
  assert.equal(s.view[0x301fff], 0x44, "filled");
  s.view[0x300123] = 0x99;
  const r = s.send(HostOp.CHECK_SHARED, 0x300000n, 0x2000n, 0x44);
  assert.deepEqual([r.result, r.found, r.value], [-1, 0x300123n, 0x99n]);
  assert.match(r.what, /byte at 0x300123 is 0x99, expected 0x44/);
  assert.equal(s.send(HostOp.CHECK_SHARED, 0x200000n, 0x1000n, 0).result, 22, "a private page is not checked as shared");
});

test("CHECK_PRIVATE finds the guest's pattern if it leaked into the shared backing", () => {
  const s = setup();
  assert.equal(s.send(HostOp.CHECK_PRIVATE, 0x200000n, 0x10000n, 0x22).result, 0);
  s.view[0x20a010] = 0x22;
  const r = s.send(HostOp.CHECK_PRIVATE, 0x200000n, 0x10000n, 0x22);
  assert.deepEqual([r.result, r.found], [-1, 0x20a010n]);
  assert.equal(s.send(HostOp.CHECK_PRIVATE, 0x1ff000n, 0x2000n, 0x22).result, 22, "partly shared");
});

test("PUNCH_PRIVATE discards private pages without changing their state; COUNT_PRIVATE counts", () => {
  const s = setup();
  assert.equal(s.send(HostOp.PUNCH_PRIVATE, 0x204000n, 0x3000n).result, 0);
  assert.deepEqual(s.backend.punched, [[0x204, 3]]);
  assert.equal(s.map.privatePages, 0x10);
  assert.equal(s.send(HostOp.PUNCH_PRIVATE, 0x20f000n, 0x2000n).result, 22, "not all private: nothing punched");
  assert.equal(s.backend.punched.length, 1);
  const c = s.send(HostOp.COUNT_PRIVATE, 0x1fe000n, 0x6000n);
  assert.deepEqual([c.result, c.found], [0, 4n]);
});

test("malformed requests are EINVAL, and misplaced request blocks are not touched", () => {
  const s = setup();
  for (const [start, size] of [[0x200800n, 0x1000n], [0x200000n, 0x800n], [0x200000n, 0n], [RAM - 0x1000n, 0x2000n]] as const)
    assert.equal(s.send(HostOp.COUNT_PRIVATE, start, size).result, 22, `${start}+${size}`);
  assert.equal(s.send(99, 0x200000n, 0x1000n).result, 22);
  // A block at or above the always-shared limit (or unaligned) gets no answer at all.
  for (const at of [Number(LIMIT) - 16, 0x8004]) {
    const r = s.send(HostOp.COUNT_PRIVATE, 0x200000n, 0x1000n, 0, 0, 0, at);
    assert.equal(r.result, -2, `block at 0x${at.toString(16)}`);
    assert.match(r.what, /ignored: it must be 8-byte aligned in the always-shared RAM/);
  }
});

test("test-slot requests reach the machine's slot; breaks are checked against the backend", () => {
  const asked: Array<[bigint, boolean]> = [];
  const slot = { break: (how: number) => `broken ${how}` } as unknown as TestSlot;
  const s = setup((gpa: bigint, create: boolean) => (asked.push([gpa, create]), gpa === 0xc0000000n ? slot : "it must be a page outside RAM"));
  assert.equal(s.send(HostOp.TEST_SLOT_CREATE, 0xc0000000n, 0x1000n).result, 0);
  assert.equal(s.send(HostOp.TEST_SLOT_CREATE, 0x1000n, 0x1000n).result, 22);
  const ok = s.send(HostOp.TEST_SLOT_BREAK, 0xc0000000n, 0x1000n, HostBreak.RELEASE);
  assert.deepEqual([ok.result, ok.what], [0, "broken release"]);
  const wrong = s.send(HostOp.TEST_SLOT_BREAK, 0xc0000000n, 0x1000n, HostBreak.DELETE);
  assert.equal(wrong.result, 22, "DELETE is an attributes-backend scenario");
  assert.deepEqual(asked, [[0xc0000000n, true], [0x1000n, true], [0xc0000000n, false], [0xc0000000n, false]]);
});

test("test slot (memslots): one guest_memfd page at its own id; RELEASE closes it; repair re-makes it", () => {
  const vm = new FakeVm(100);
  const slot = new TestSlot(vm.asNative, "memslots", 0xc0000000n, 99);
  assert.deepEqual([...vm.slots.keys()], [99]);
  const first = vm.slots.get(99)!;
  assert.equal(first.file!.flags, 3n, "MMAP|INIT_SHARED");
  assert.equal(slot.contains(0xc0000fffn), true);
  assert.equal(slot.contains(0xc0001000n), false);
  assert.match(slot.break("release"), /guest_memfd released/);
  assert.equal(first.file!.closed, true);
  assert.match(slot.repair(), /\(its guest_memfd released\) re-made with a new guest_memfd/);
  const again = vm.slots.get(99)!;
  assert.notEqual(again.file, first.file);
  assert.equal(again.file!.closed, false);
  assert.equal(slot.state, SlotState.Intact);
  slot.close();
});

test("test slot (attributes): a private page in a hybrid slot; NO_GMEM and a delayed DELETE break it", async () => {
  const vm = new FakeVm(100);
  const slot = new TestSlot(vm.asNative, "attributes", 0xc0000000n, 99);
  assert.deepEqual(vm.attributes, [{ gpa: 0xc0000000n, size: 0x1000n, attributes: 8n }]);
  assert.equal(vm.slots.get(99)!.file!.flags, 0n);
  slot.break("no-gmem");
  assert.equal(vm.slots.get(99)!.guestMemfd, -1, "re-added without KVM_MEM_GUEST_MEMFD");
  assert.equal(vm.slots.get(99)!.flags, 0);
  slot.repair();
  assert.equal(vm.slots.get(99)!.flags, 4);
  assert.match(slot.break("delete", 5), /deleting in 5 ms/);
  assert.ok(vm.slots.has(99), "still there until the timer fires");
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(vm.slots.has(99), false);
  assert.match(slot.repair(), /deleted under the running vCPU/);
  assert.ok(vm.slots.has(99));
  assert.deepEqual([TestSlot.allowed("attributes", "release"), TestSlot.allowed("memslots", "release")], [false, true]);
  slot.close();
});
