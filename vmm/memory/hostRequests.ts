// Host requests (abi.h, TSVMM_HOST_PORT): the VMM's side of the conversion tests. A request lives
// in always-shared guest RAM; the VMM only ever reads or writes the shared backing of a page.
import type { MemoryBackend } from "./backend";
import { PAGE, PAGE_SHIFT, PageStateMap } from "./pageState";
import { TestSlot } from "./testSlot";

export const HostOp = { CHECK_SHARED: 1, CHECK_PRIVATE: 2, PUNCH_PRIVATE: 3, COUNT_PRIVATE: 4, TEST_SLOT_CREATE: 5, TEST_SLOT_BREAK: 6 } as const;
const FLAG_FILL = 1;
export const HOST_REQUEST_SIZE = 48;
const EINVAL = 22;

export interface HostRequestContext {
  map: PageStateMap;
  backend: MemoryBackend;
  sharedLimit: bigint;
  /** Create (or return) the exit scenarios' test slot at gpa; throws a reason if it cannot */
  testSlot: (gpa: bigint, create: boolean) => TestSlot | string;
}

/** Perform the request at `gpa`; returns a one-line description for the trace. */
export function handleHostRequest(ctx: HostRequestContext, gpa: bigint): string {
  const view = ctx.backend.sharedView;
  if (gpa % 8n !== 0n || gpa + BigInt(HOST_REQUEST_SIZE) > ctx.sharedLimit)
    return `host request at 0x${gpa.toString(16)} ignored: it must be 8-byte aligned in the always-shared RAM below 0x${ctx.sharedLimit.toString(16)}`;
  const at = Number(gpa);
  const op = view.readUInt32LE(at);
  const start = view.readBigUInt64LE(at + 8);
  const size = view.readBigUInt64LE(at + 16);
  const expect = view[at + 24];
  const fill = view[at + 25];
  const flags = view[at + 26];
  const answer = (result: number, found = 0n, value = 0n) => {
    view.writeInt32LE(result, at + 4);
    view.writeBigUInt64LE(found, at + 32);
    view.writeBigUInt64LE(value, at + 40);
  };
  const range = `0x${start.toString(16)}+0x${size.toString(16)}`;
  const { map } = ctx;
  if (op === HostOp.TEST_SLOT_CREATE || op === HostOp.TEST_SLOT_BREAK) {
    const slot = ctx.testSlot(start, op === HostOp.TEST_SLOT_CREATE);
    if (typeof slot === "string") return answer(EINVAL), `test slot ${range}: EINVAL (${slot})`;
    if (op === HostOp.TEST_SLOT_CREATE) return answer(0), `test slot created at 0x${start.toString(16)}`;
    if (!TestSlot.allowed(ctx.backend.kind as "attributes" | "memslots", expect))
      return answer(EINVAL), `test slot break ${expect}: EINVAL (not a scenario of the ${ctx.backend.kind} backend)`;
    const what = slot.break(expect);
    answer(0);
    return what;
  }
  if (start % PAGE !== 0n || size % PAGE !== 0n || size === 0n || start < map.base || start + size > map.base + map.size) {
    answer(EINVAL);
    return `host request ${op} ${range}: EINVAL (not whole pages inside RAM)`;
  }
  const first = map.pageOf(start);
  const count = Number(size >> PAGE_SHIFT);
  const runs = map.runs(first, count);
  const all = (state: string) => runs.length === 1 && runs[0].state === state;
  const lo = Number(start);
  const hi = Number(start + size);
  switch (op) {
    case HostOp.CHECK_SHARED: {
      if (!all("shared")) return answer(EINVAL), `check-shared ${range}: EINVAL (not all shared)`;
      for (let i = lo; i < hi; i++) {
        if (view[i] !== expect) {
          answer(-1, BigInt(i), BigInt(view[i]));
          return `check-shared ${range}: byte at 0x${i.toString(16)} is 0x${view[i].toString(16)}, expected 0x${expect.toString(16)}`;
        }
      }
      if (flags & FLAG_FILL) view.fill(fill, lo, hi);
      answer(0);
      return `check-shared ${range}: all 0x${expect.toString(16)}${flags & FLAG_FILL ? `, filled 0x${fill.toString(16)}` : ""}`;
    }
    case HostOp.CHECK_PRIVATE: {
      if (!all("private")) return answer(EINVAL), `check-private ${range}: EINVAL (not all private)`;
      const leak = view.subarray(lo, hi).indexOf(expect);
      if (leak >= 0) {
        answer(-1, BigInt(lo + leak), BigInt(expect));
        return `check-private ${range}: the shared backing holds 0x${expect.toString(16)} at 0x${(lo + leak).toString(16)}`;
      }
      answer(0);
      return `check-private ${range}: no 0x${expect.toString(16)} in the shared backing`;
    }
    case HostOp.PUNCH_PRIVATE: {
      if (!all("private")) return answer(EINVAL), `punch-private ${range}: EINVAL (not all private)`;
      ctx.backend.punchPrivate(first, count);
      answer(0);
      return `punch-private ${range}: discarded`;
    }
    case HostOp.COUNT_PRIVATE: {
      const n = runs.filter((r) => r.state === "private").reduce((s, r) => s + r.count, 0);
      answer(0, BigInt(n));
      return `count-private ${range}: ${n}`;
    }
    default:
      answer(EINVAL);
      return `host request op ${op}: EINVAL (unknown operation)`;
  }
}
