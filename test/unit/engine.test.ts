// The conversion engine without KVM: a fake backend that records what it is asked to apply, a
// synchronous quiesce, plain buffers. Validation, the low always-shared RAM, policies, implicit
// conversions on memory faults, repeat detection, the memslot budget and the events.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ConversionEngine, ConversionEvent, EngineOptions, formatEvent } from "../../vmm/memory/engine";
import type { DiscardPolicy, MemoryBackend } from "../../vmm/memory/backend";
import { MemslotsBackend } from "../../vmm/memory/memslots";
import { memslotBudget } from "../../vmm/memory/backend";
import { PageStateMap } from "../../vmm/memory/pageState";
import type { TestSlot } from "../../vmm/memory/testSlot";
import { FakeVm, RecordingBackend } from "../support/fakeKvm";

const MiB = 1n << 20n;
const RAM = 16n * MiB;
const LIMIT = 0x100000n; // always-shared RAM below 1 MiB
const BIT = 40;
const ALIAS = 1n << BigInt(BIT);
const PRIVATE = 0x10n;
const EINVAL = 22;

function setup(o: { sharedBit?: number; discard?: DiscardPolicy; backend?: (map: PageStateMap) => MemoryBackend; testSlot?: TestSlot; ram?: bigint; listening?: boolean } = {}) {
  const map = new PageStateMap(0n, o.ram ?? RAM);
  map.set(map.pageOf(LIMIT), map.pages - map.pageOf(LIMIT), "private");
  const backend = o.backend?.(map) ?? new RecordingBackend(o.ram ?? RAM);
  const events: ConversionEvent[] = [];
  let quiesced = 0;
  const opts: EngineOptions = {
    map,
    backend,
    sharedLimit: LIMIT,
    sharedBit: o.sharedBit ?? 0,
    quiesce: (work) => (quiesced++, work()),
    emit: (e) => events.push(e),
    now: () => 1.5,
    testSlot: () => o.testSlot,
    discard: o.discard ?? "always",
    listening: o.listening === undefined ? undefined : () => o.listening!,
  };
  const engine = new ConversionEngine(opts);
  const req = (gpa: bigint, pages: bigint, attrs: bigint) => engine.request("hypercall", 0, { gpa, pages, attrs });
  const fault = (gpa: bigint, flags = 0n, errno = "EFAULT") => engine.fault(0, { gpa, flags, size: 4096n }, errno, "convert");
  return { map, backend, events, engine, req, fault, quiesced: () => quiesced };
}

test("valid requests convert the range, apply only the pages that changed, and say so in the event", async () => {
  const s = setup();
  const rb = s.backend as RecordingBackend;
  assert.equal(await s.req(0x200000n, 4n, 0n), 0);
  assert.deepEqual(rb.applied, [[{ first: 0x200, count: 4, state: "shared" }]]);
  assert.equal(s.map.stateOf(0x203000n), "shared");
  assert.equal(await s.req(0x1ff000n, 6n, 0n), 0, "overlapping: only the 2 private pages change");
  assert.deepEqual(rb.applied[1], [
    { first: 0x1ff, count: 1, state: "shared" },
    { first: 0x204, count: 1, state: "shared" },
  ]);
  assert.equal(await s.req(0x200000n, 2n, 0n), 0);
  assert.equal(rb.applied.length, 2, "already shared: nothing applied, no quiesce");
  assert.equal(s.quiesced(), 2);
  const [first, second, third] = s.events;
  assert.deepEqual(first, {
    seq: 0, time: 1.5, vcpu: 0, source: "hypercall", gpa: "0x200000", size: 0x4000, from: "private", to: "shared", discard: 0x4000, result: "ok", ns: first.ns,
    before: [{ first: 0x200, count: 4, state: "private" }], after: [{ first: 0x200, count: 4, state: "shared" }],
  });
  assert.equal(second.from, "mixed");
  assert.deepEqual(second.before, [
    { first: 0x1ff, count: 1, state: "private" },
    { first: 0x200, count: 4, state: "shared" },
    { first: 0x204, count: 1, state: "private" },
  ]);
  assert.equal(third.result, "ok (already shared)");
  assert.deepEqual(s.engine.tally, { "hypercall-to-shared": 3 });
  assert.match(formatEvent(first), /^#0 1\.500 ms vCPU 0 hypercall 0x200000\+0x4000 private→shared discard 16 KiB: ok \(/);
});

test("invalid requests are EINVAL to the guest, recorded with the reason, and change nothing", async () => {
  const s = setup();
  const rb = s.backend as RecordingBackend;
  const cases: Array<[bigint, bigint, bigint, RegExp]> = [
    [0x200800n, 1n, PRIVATE, /not page aligned/],
    [0x200000n, 0n, PRIVATE, /page count is zero/],
    [0xfffffffffffff000n, 2n, 0n, /overflows/],
    [1n << 52n, 1n << 52n, 0n, /overflows/],
    [RAM - 0x1000n, 2n, 0n, /outside RAM/],
    [RAM, 1n, PRIVATE, /outside RAM/],
    [0x200000n, 1n, 0x20n, /reserved attribute bits 0x20/],
    [0x200000n, 1n, 0x13n, /page-size field 3/],
    [0x80000n, 1n, PRIVATE, /always-shared RAM below 0x100000/],
    [LIMIT - 0x1000n, 2n, PRIVATE, /always-shared RAM/],
  ];
  const before = s.map.runs();
  for (const [gpa, pages, attrs, why] of cases) {
    assert.equal(await s.req(gpa, pages, attrs), EINVAL, `${gpa}+${pages} ${attrs}`);
    const e = s.events[s.events.length - 1];
    assert.match(e.result, /^EINVAL: /);
    assert.match(e.result, why);
  }
  assert.deepEqual(s.map.runs(), before, "map unchanged");
  assert.equal(rb.applied.length, 0, "the backend was never asked");
  assert.deepEqual(s.engine.tally, { "hypercall-refused": cases.length });
  assert.equal(await s.req(0x80000n, 1n, 0n), 0, "to shared below the limit: allowed, nothing changes");
  assert.equal(rb.applied.length, 0);
});

test("--on-hypercall deny refuses valid requests with EINVAL and records them", async () => {
  const s = setup();
  assert.equal(await s.engine.request("doorbell", 1, { gpa: 0x200000n, pages: 1n, attrs: 0n }, "deny"), EINVAL);
  assert.equal(s.map.stateOf(0x200000n), "private");
  assert.equal(s.events[0].result, "denied (--on-hypercall deny)");
  assert.deepEqual(s.engine.tally, { "doorbell-denied": 1 });
});

test("a refused backend change (memslots exhausted) restores the map and is EINVAL to the guest", async () => {
  const s = setup();
  const rb = s.backend as RecordingBackend;
  rb.refuse = "needs 9 memslots, more than the 8 KVM allows";
  const before = s.map.runs();
  assert.equal(await s.req(0x1ff000n, 3n, 0n), EINVAL);
  assert.deepEqual(s.map.runs(), before);
  assert.equal(s.map.sharedPages, Number(LIMIT >> 12n));
  assert.match(s.events[0].result, /^ENOSPC, EINVAL to the guest: needs 9 memslots/);
  assert.deepEqual(s.engine.tally, { "hypercall-refused": 1 });
});

test("nobody listening: a request and a fault convert inside the quiesce, are counted, and make no event", () => {
  const s = setup({ sharedBit: BIT, listening: false });
  const rb = s.backend as RecordingBackend;
  assert.equal(s.req(0x200000n, 4n, 0n), 0);
  assert.equal(s.req(0x80000n, 1n, PRIVATE), EINVAL, "always-shared RAM: refused");
  assert.deepEqual(s.fault(0x300000n | ALIAS), { action: "retry" });
  assert.deepEqual(rb.applied, [[{ first: 0x200, count: 4, state: "shared" }], [{ first: 0x300, count: 1, state: "shared" }]]);
  assert.equal(s.quiesced(), 2);
  assert.deepEqual(s.events, []);
  assert.deepEqual(s.engine.tally, { "hypercall-to-shared": 1, "hypercall-refused": 1, "fault-to-shared": 1 });
});

test("a backend that throws (an ioctl failed) leaves the map as it was", async () => {
  const s = setup({ backend: () => Object.assign(new RecordingBackend(RAM), { apply: () => { throw new Error("KVM_SET_USER_MEMORY_REGION2(slot=7) failed: EINVAL"); } }) });
  const before = s.map.runs();
  assert.throws(() => s.req(0x200000n, 4n, 0n), /slot=7/);
  assert.deepEqual(s.map.runs(), before);
});

test("a request is done when it returns: conversions apply in call order", () => {
  const s = setup();
  assert.equal(s.engine.request("hypercall", 0, { gpa: 0x200000n, pages: 1n, attrs: 0n }), 0);
  assert.equal(s.map.stateOf(0x200000n), "shared");
  assert.equal(s.engine.request("hypercall", 1, { gpa: 0x200000n, pages: 1n, attrs: PRIVATE }), 0);
  assert.equal(s.map.stateOf(0x200000n), "private", "the later request wins");
  assert.deepEqual(s.events.map((e) => e.seq), [0, 1]);
});

test("with the aliased layout a fault on the other view converts that page and retries", async () => {
  const s = setup({ sharedBit: BIT });
  assert.deepEqual(await s.fault(0x300000n | ALIAS), { action: "retry" });
  assert.equal(s.map.stateOf(0x300000n), "shared");
  assert.deepEqual(await s.fault(0x300000n, 8n), { action: "retry" });
  assert.equal(s.map.stateOf(0x300000n), "private");
  assert.deepEqual(await s.fault(0x300000n, 8n), { action: "retry" }, "already private: a race, re-run");
  assert.deepEqual(s.engine.tally, { "fault-to-shared": 1, "fault-to-private": 1, "fault-race": 1 });
  assert.deepEqual(
    s.events.map((e) => [e.gpa, e.flags, e.from, e.to, e.result]),
    [
      ["0x10000300000", "0x0", "private", "shared", "ok"],
      ["0x300000", "0x8", "shared", "private", "ok"],
      ["0x300000", "0x8", "private", "private", "race: already converted, re-run"],
    ],
  );
});

test("faults that are not conversion requests stop the VM with the reason", async () => {
  const s = setup({ sharedBit: BIT });
  const stop = async (gpa: bigint, flags: bigint, errno: string, why: RegExp) => {
    const r = await s.fault(gpa, flags, errno);
    assert.equal(r.action, "stop");
    assert.match(r.action === "stop" ? r.reason : "", why);
  };
  await stop(0x300000n, 0x10n, "EFAULT", /unknown KVM_EXIT_MEMORY_FAULT flags 0x10/);
  await stop(0x300000n, 0n, "EHWPOISON", /EHWPOISON \(a poisoned/);
  await stop(0x80000n | ALIAS, 0n, "EFAULT", /not convertible RAM/);
  await stop(RAM + 0x1000n, 0n, "EFAULT", /not convertible RAM/);
  const plain = setup();
  const r = await plain.fault(0x300000n, 0n);
  assert.equal(r.action, "stop", "without the aliased layout a shared access to a private page is a configuration error");
  assert.deepEqual(await plain.fault(0x300000n, 8n), { action: "retry" }, "the state matches: a race");
  assert.deepEqual((plain.backend as RecordingBackend).applied, []);
});

test("--on-fault deny and stop refuse an implicit conversion; the map is unchanged", async () => {
  for (const policy of ["deny", "stop"] as const) {
    const s = setup({ sharedBit: BIT });
    const r = await s.engine.fault(2, { gpa: 0x300000n | ALIAS, flags: 0n, size: 4096n }, "EFAULT", policy);
    assert.equal(r.action, policy);
    assert.match("reason" in r ? r.reason : "", new RegExp(`private→shared refused \\(--on-fault ${policy}\\)`));
    assert.equal(s.map.stateOf(0x300000n), "private");
    assert.equal(s.events[0].vcpu, 2);
  }
});

test("the same fault four times with no conversion in between stops the VM as stuck", async () => {
  const s = setup({ sharedBit: BIT });
  // The backend "fails" silently: the map says shared, but the guest keeps faulting on the shared
  // view. The first fault converts; the next is the first with no conversion since.
  assert.deepEqual(await s.fault(0x300000n | ALIAS), { action: "retry" });
  assert.deepEqual(await s.fault(0x300000n | ALIAS), { action: "retry" });
  assert.deepEqual(await s.fault(0x300000n | ALIAS), { action: "retry" });
  assert.deepEqual(await s.fault(0x300000n | ALIAS), { action: "retry" });
  const r = await s.fault(0x300000n | ALIAS);
  assert.equal(r.action, "stop");
  assert.match(r.action === "stop" ? r.reason : "", /the same memory fault repeated 4 times with no conversion in between/);
  // Another vCPU's history is its own.
  assert.deepEqual(await s.engine.fault(1, { gpa: 0x300000n | ALIAS, flags: 0n, size: 4096n }, "EFAULT", "convert"), { action: "retry" });
});

test("a page bounced between views by stores and MAP_GPA_RANGE is progress, however often", async () => {
  const s = setup({ sharedBit: BIT });
  for (let round = 0; round < 10; round++) {
    // a store through the shared view: fault, converted to shared
    assert.deepEqual(await s.fault(0x300000n | ALIAS), { action: "retry" }, `round ${round}`);
    // the guest makes it private again by hypercall
    assert.equal(await s.req(0x300000n, 1n, PRIVATE), 0);
  }
  assert.deepEqual(s.engine.tally, { "fault-to-shared": 10, "hypercall-to-private": 10 });
});

test("a test-slot fault is repaired (or refused by the policy), not converted", async () => {
  let repaired = 0;
  const slot = { contains: (gpa: bigint) => gpa === 0xc0000000n, stateText: "its guest_memfd released", repair: () => (repaired++, "re-made") } as unknown as TestSlot;
  const s = setup({ testSlot: slot });
  assert.deepEqual(await s.fault(0xc0000000n, 8n), { action: "retry" });
  assert.equal(repaired, 1);
  assert.match(s.events[0].result, /private access to the test slot \(its guest_memfd released\): re-made/);
  const r = await s.engine.fault(0, { gpa: 0xc0000000n, flags: 0n, size: 4096n }, "EFAULT", "stop");
  assert.equal(r.action, "stop");
  assert.deepEqual(s.engine.tally, { "fault-repaired": 1, "fault-stopped": 1 });
});

test("--discard never: events and summary say both copies are kept", async () => {
  const s = setup({ discard: "never" });
  await s.req(0x200000n, 1n, 0n);
  await s.req(0x200000n, 1n, PRIVATE);
  assert.deepEqual(s.events.map((e) => e.result), ["ok, kept the private copy (--discard never)", "ok, kept the shared copy (--discard never)"]);
  assert.ok(s.engine.summary().some((l) => /--discard never: both copies of every page kept/.test(l)));
  const always = setup();
  await always.req(0x200000n, 1n, 0n);
  assert.ok(always.engine.summary().some((l) => /--discard always: discarded 4 KiB/.test(l)));
});

test("alternating single-page conversions on the memslots backend end in a refusal at KVM's real memslot count, map unchanged", async () => {
  // The case: --shared-bit, every other page shared, 4 slots per conversion; 32 764 ids.
  const vm = new FakeVm(32764, { checkOverlap: false });
  const ram = 80n * MiB;
  const s = setup({
    sharedBit: BIT,
    ram,
    backend: (map) =>
      new MemslotsBackend({ vm: vm.asNative, map, sharedLimit: LIMIT, sharedBit: BIT, prealloc: false, discard: "always", slotLimit: memslotBudget(vm.nrMemslots).backendSlots }),
  });
  const backend = s.backend as MemslotsBackend;
  let page = 0x101n;
  let ret = 0;
  let done = 0;
  for (; page < ram >> 12n; page += 2n) {
    ret = await s.req(page << 12n, 1n, 0n);
    if (ret) break;
    done++;
  }
  assert.equal(ret, EINVAL);
  assert.equal(done, 8190, "3 slots at the start, 4 more per conversion: 3 + 4 × 8190 = 32 763");
  assert.ok(backend.slotsInUse <= 32763 && vm.slots.size === backend.slotsInUse);
  assert.equal(s.map.stateOf(page << 12n), "private", "the refused page keeps its state");
  assert.equal(s.map.sharedPages, Number(LIMIT >> 12n) + done);
  assert.match(s.events[s.events.length - 1].result, /ENOSPC, EINVAL to the guest: needs 32767 memslots, more than the 32763/);
  assert.ok(s.engine.summary().some((l) => /memslots: 3276\d in use now/.test(l)));
  // Converting back frees slots: the guest can go on.
  assert.equal(await s.req(0x101000n, 1n, PRIVATE), 0);
});
