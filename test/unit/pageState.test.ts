import { test } from "node:test";
import assert from "node:assert/strict";
import { firstPageOf, PageStateMap, validateRequest } from "../../vmm/memory/pageState";

const MiB = 1n << 20n;

test("a new map is all shared (or all private) and counts pages", () => {
  const m = new PageStateMap(0n, 4n * MiB);
  assert.equal(m.pages, 1024);
  assert.equal(m.sharedPages, 1024);
  assert.deepEqual(m.runs(), [{ first: 0, count: 1024, state: "shared" }]);
  const p = new PageStateMap(0n, 8192n, "private");
  assert.equal(p.privatePages, 2);
});

test("set returns only the runs that changed, merged", () => {
  const m = new PageStateMap(0n, 64n * 4096n);
  assert.deepEqual(m.set(4, 8, "private"), [{ first: 4, count: 8, state: "private" }]);
  assert.deepEqual(m.set(0, 16, "private"), [
    { first: 0, count: 4, state: "private" },
    { first: 12, count: 4, state: "private" },
  ]);
  assert.deepEqual(m.set(0, 16, "private"), [], "converting to the current state changes nothing");
  assert.equal(m.privatePages, 16);
  assert.equal(m.stateOf(0x3000n), "private");
  assert.equal(m.stateOf(0x10000n), "shared");
});

test("runs are maximal runs of equal state (what the memslots backend lays out)", () => {
  const m = new PageStateMap(0n, 16n * 4096n);
  m.set(2, 3, "private");
  m.set(7, 1, "private");
  assert.deepEqual(m.runs(), [
    { first: 0, count: 2, state: "shared" },
    { first: 2, count: 3, state: "private" },
    { first: 5, count: 2, state: "shared" },
    { first: 7, count: 1, state: "private" },
    { first: 8, count: 8, state: "shared" },
  ]);
  assert.deepEqual(m.runs(3, 5), [
    { first: 3, count: 2, state: "private" },
    { first: 5, count: 2, state: "shared" },
    { first: 7, count: 1, state: "private" },
  ]);
});

test("requests: valid ones give pages and direction", () => {
  const m = new PageStateMap(0n, 64n * MiB);
  assert.deepEqual(validateRequest(m, { gpa: 0x200000n, pages: 512n, attrs: 0x10n }), { ok: true, first: 512, count: 512, to: "private" });
  assert.deepEqual(validateRequest(m, { gpa: 0x1000n, pages: 1n, attrs: 0n }), { ok: true, first: 1, count: 1, to: "shared" });
  assert.equal(validateRequest(m, { gpa: 0n, pages: 512n, attrs: 0x11n }).ok, true, "2M page-size hint");
});

test("requests: unaligned, empty, overflowing, outside RAM or reserved bits are EINVAL with a reason", () => {
  const m = new PageStateMap(0n, 64n * MiB);
  const why = (gpa: bigint, pages: bigint, attrs: bigint) => {
    const v = validateRequest(m, { gpa, pages, attrs });
    assert.equal(v.ok, false);
    return v.ok ? "" : v.reason;
  };
  assert.match(why(0x1001n, 1n, 0n), /not page aligned/);
  assert.match(why(0x1000n, 0n, 0n), /page count is zero/);
  assert.match(why(0xfffffffffffff000n, 2n, 0n), /overflows/);
  assert.match(why(0n, 1n << 60n, 0n), /overflows/);
  assert.match(why(63n * MiB, 512n, 0x10n), /outside RAM/);
  assert.match(why(0n, 1n, 0x20n), /reserved attribute bits 0x20/);
  assert.match(why(0n, 1n, 1n << 63n), /reserved attribute bits/);
  assert.match(why(0n, 1n, 0x3n), /page-size field 3/);
});

test("requests in numbers (the vCPU threads' path) agree with the exact checks, 2^53 and beyond included", () => {
  const m = new PageStateMap(1n * MiB, 64n * MiB);
  const big = [1n << 53n, (1n << 53n) + 1n, (1n << 53n) + 0x1000n, (1n << 64n) - 1n, (1n << 64n) - 0x1000n, 1n << 63n];
  const gpas = [0n, 0x1000n, 1n * MiB, 1n * MiB + 1n, 2n * MiB, 65n * MiB - 0x1000n, 65n * MiB, ...big, ...big.map((b) => b + 1n * MiB)];
  const pages = [0n, 1n, 2n, 512n, 16384n, 16385n, ...big];
  const attrs = [0n, 0x10n, 0x11n, 0x12n, 0x13n, 0x1fn, 0x20n, ...big, ...big.map((b) => b | 0x10n)];
  let valid = 0;
  for (const gpa of gpas)
    for (const p of pages)
      for (const a of attrs) {
        const v = validateRequest(m, { gpa, pages: p, attrs: a });
        const first = firstPageOf(m, Number(gpa), Number(p), Number(a));
        assert.equal(first, v.ok ? v.first : -1, `gpa ${gpa} pages ${p} attrs ${a}`);
        if (v.ok) valid++;
      }
  assert.ok(valid > 20, String(valid));
});

test("set finds the same changed runs as a page-by-page walk, on random maps", () => {
  let seed = 7;
  const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
  for (let round = 0; round < 200; round++) {
    const m = new PageStateMap(0n, 64n << 12n);
    const naive: boolean[] = Array(64).fill(false);
    for (let i = 0; i < 8; i++) {
      // ranges short and long (set walks up to 16 pages one by one, longer ones by indexOf and fill)
      const first = random(64), count = 1 + random(64 - first), state = random(2) ? "private" : "shared";
      const expected: Array<{ first: number; count: number; state: string }> = [];
      for (let p = first; p < first + count; p++) {
        if (naive[p] === (state === "private")) continue;
        naive[p] = state === "private";
        const last = expected[expected.length - 1];
        if (last && last.first + last.count === p) last.count++;
        else expected.push({ first: p, count: 1, state });
      }
      assert.deepEqual(m.set(first, count, state), expected);
      assert.equal(m.privatePages, naive.filter(Boolean).length);
    }
  }
});
