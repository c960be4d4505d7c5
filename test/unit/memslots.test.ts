// The memslots backend against a fake VM that enforces KVM's memslot rules: the slots are always
// the maximal runs of the page-state map in each view, a conversion touches only the slots whose
// run changed, the discard policy, and the memslot budget.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MemslotsBackend } from "../../vmm/memory/memslots";
import { memslotBudget } from "../../vmm/memory/backend";
import { PageStateMap, PageState } from "../../vmm/memory/pageState";
import { FakeSlot, FakeVm } from "../support/fakeKvm";

const PAGES = 64;
const LOW = 8; // pages below sharedLimit: always shared
const BIT = 40;
const ALIAS = 1n << BigInt(BIT);

function setup(opts: { sharedBit?: number; discard?: "always" | "never"; nrMemslots?: number; initial?: PageState } = {}) {
  const vm = new FakeVm(opts.nrMemslots);
  const map = new PageStateMap(0n, BigInt(PAGES) << 12n);
  map.set(LOW, PAGES - LOW, opts.initial ?? "private");
  const backend = new MemslotsBackend({
    vm: vm.asNative,
    map,
    sharedLimit: BigInt(LOW) << 12n,
    sharedBit: opts.sharedBit ?? 0,
    prealloc: false,
    discard: opts.discard ?? "always",
    slotLimit: memslotBudget(vm.nrMemslots).backendSlots,
  });
  const [sharedFile, privateFile] = vm.files;
  const name = (s: FakeSlot) => (s.file === sharedFile ? "shared" : s.file === privateFile ? "private" : s.file?.closed ? "dead" : "?");
  /** [first page, pages, kind] per view, as the fake KVM holds them */
  const views = () => {
    const all = vm.layout(name);
    const alias = opts.sharedBit ? 1n << BigInt(opts.sharedBit) : 0n;
    const shift = alias ? Number(alias >> 12n) : 0;
    return {
      own: all.filter(([p]) => !alias || p < shift),
      alias: alias ? all.filter(([p]) => p >= shift).map(([p, n, k]) => [p - shift, n, k] as [number, number, string]) : [],
    };
  };
  /** What the views must be: maximal runs of the kind each page has in each view */
  const expected = () => {
    const runs = (kindOf: (p: number) => string | null) => {
      const out: Array<[number, number, string]> = [];
      for (let p = 0; p < PAGES; p++) {
        const k = kindOf(p);
        const last = out[out.length - 1];
        if (k && last && last[2] === k && last[0] + last[1] === p) last[1]++;
        else if (k) out.push([p, 1, k]);
      }
      return out;
    };
    const priv = (p: number) => map.isPrivatePage(p);
    return {
      own: runs((p) => (p < LOW ? "shared" : priv(p) ? "private" : opts.sharedBit ? "dead" : "shared")),
      alias: opts.sharedBit ? runs((p) => (p < LOW ? null : priv(p) ? "dead" : "shared")) : [],
    };
  };
  const convert = (first: number, count: number, to: PageState) => backend.apply(map.set(first, count, to));
  return { vm, map, backend, views, expected, convert };
}

test("the initial slots are the maximal runs of each view; the shared view has nothing below the always-shared RAM", () => {
  const s = setup({ sharedBit: BIT });
  assert.deepEqual(s.views(), {
    own: [[0, LOW, "shared"], [LOW, PAGES - LOW, "private"]],
    alias: [[LOW, PAGES - LOW, "dead"]],
  });
  assert.equal(s.backend.slotsInUse, 3);
  const plain = setup();
  assert.deepEqual(plain.views().own, [[0, LOW, "shared"], [LOW, PAGES - LOW, "private"]]);
});

test("slots map each page at its own offset of the file that backs it", () => {
  const s = setup({ sharedBit: BIT });
  s.convert(20, 3, "shared");
  for (const slot of s.vm.slots.values()) {
    const page = (slot.guestPhysAddr & ~ALIAS) >> 12n;
    if (slot.file?.closed) assert.equal(slot.guestMemfdOffset, 0n, "a released guest_memfd of the slot's own size");
    else {
      assert.equal(slot.guestMemfdOffset, page << 12n);
      assert.equal(slot.userspaceAddr, slot.file!.address + (page << 12n));
      assert.equal(slot.flags, 4, "KVM_MEM_GUEST_MEMFD");
    }
  }
});

test("a conversion replaces only the slots whose run changed, and merges runs that meet", () => {
  const s = setup();
  const calls = (f: () => unknown) => {
    s.vm.calls.length = 0;
    f();
    return s.vm.calls.filter((c) => !c.startsWith("fallocate"));
  };
  assert.deepEqual(calls(() => s.convert(20, 1, "shared")), [
    "delete slot=1 gpa=0x8000",
    "add slot=1 gpa=0x8000 size=0xc000 fd=11",
    "add slot=2 gpa=0x14000 size=0x1000 fd=10",
    "add slot=3 gpa=0x15000 size=0x2b000 fd=11",
  ]);
  // page 22: the run [21, 64) splits; the slots of pages 8-20 stay
  assert.equal(calls(() => s.convert(22, 1, "shared")).length, 1 + 3);
  // page 21: three runs become one shared run [20, 23)
  assert.deepEqual(calls(() => s.convert(21, 1, "shared")).filter((c) => c.startsWith("delete")).length, 3);
  assert.deepEqual(s.views().own, [[0, LOW, "shared"], [LOW, 12, "private"], [20, 3, "shared"], [23, PAGES - 23, "private"]]);
  // back to private: everything above LOW is one run again
  s.convert(20, 3, "private");
  assert.deepEqual(s.views().own, [[0, LOW, "shared"], [LOW, PAGES - LOW, "private"]]);
  assert.equal(s.backend.slotsInUse, 2);
  assert.deepEqual(calls(() => s.convert(30, 2, "private")), [], "no change, no ioctl");
});

test("after any sequence of conversions the slots are exactly the maximal runs (both layouts)", () => {
  for (const sharedBit of [0, BIT]) {
    const s = setup({ sharedBit });
    let seed = 12345;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed % n);
    for (let i = 0; i < 400; i++) {
      const first = LOW + rand(PAGES - LOW);
      const count = 1 + rand(Math.min(6, PAGES - first));
      s.convert(first, count, rand(2) ? "private" : "shared");
      assert.deepEqual(s.views(), s.expected(), `step ${i} (shared bit ${sharedBit})`);
    }
    assert.equal(s.backend.slotsInUse, s.vm.slots.size);
  }
});

test("discard always punches the side a page left; never punches nothing", () => {
  const s = setup();
  const [sharedFd, privateFd] = [s.vm.files[0].fd, s.vm.files[1].fd];
  s.vm.calls.length = 0;
  assert.deepEqual(s.convert(20, 2, "shared"), { discarded: 0x2000 });
  assert.deepEqual(s.convert(20, 1, "private"), { discarded: 0x1000 });
  assert.deepEqual(s.vm.calls.filter((c) => c.startsWith("fallocate")), [
    `fallocate fd=${privateFd} punch 0x14000+0x2000`,
    `fallocate fd=${sharedFd} punch 0x14000+0x1000`,
  ]);
  const keep = setup({ discard: "never" });
  keep.backend.sharedView.fill(0x5a, 20 << 12, 21 << 12);
  keep.vm.calls.length = 0;
  assert.deepEqual(keep.convert(20, 1, "shared"), { discarded: 0 });
  assert.deepEqual(keep.convert(20, 1, "private"), { discarded: 0 });
  assert.deepEqual(keep.vm.calls.filter((c) => c.startsWith("fallocate")), []);
  assert.equal(keep.backend.sharedView[20 << 12], 0x5a, "the shared copy survives a private round trip");
});

test("a change that needs more memslots than the budget is refused before any ioctl", () => {
  // 10 ids: 9 for the backend, the last for the test slot
  const s = setup({ nrMemslots: 10 });
  assert.equal(s.backend.slotLimit, 9);
  let page = LOW + 1;
  while (s.backend.slotsInUse + 2 <= 9) {
    assert.equal(s.convert(page, 1, "shared").refused, undefined);
    page += 2;
  }
  const before = s.vm.calls.length;
  const slots = new Map(s.vm.slots);
  const r = s.convert(page, 1, "shared");
  assert.match(r.refused ?? "", /needs 10 memslots, more than the 9 KVM allows/);
  assert.equal(s.vm.calls.length, before, "no ioctl, no punch");
  assert.deepEqual(s.vm.slots, slots);
  // The backend's own state is unchanged too: once the map is restored, joining runs still works.
  s.map.set(page, 1, "private");
  assert.equal(s.convert(LOW + 1, 1, "private").refused, undefined);
  assert.deepEqual(s.views(), s.expected());
  assert.match(s.backend.usage(), /6 in use now, at most 8, of the 9 /);
});

test("memslotBudget keeps the last id for the test slot (32 when KVM does not say)", () => {
  assert.deepEqual(memslotBudget(32764), { backendSlots: 32763, testSlotId: 32763 });
  assert.deepEqual(memslotBudget(0), { backendSlots: 31, testSlotId: 31 });
});
