// Host requests (abi.h, TSVMM_HOST_PORT): the VMM's side of the conversion tests. A request lives
// in always-shared guest RAM; the VMM only ever reads or writes the shared backing of a page.
import type { MemoryBackend } from "../memory/backend";
import { PAGE, PAGE_SHIFT, PageStateMap } from "../memory/pageState";
import { SlotBreak, TestSlot } from "../memory/testSlot";
import { decodeHostRequest, encodeHostAnswer, HOST_FLAG_FILL, HOST_REQUEST_SIZE, HostAnswer, HostBreak, HostOp } from "./abi";
import { Errno } from "../kvm/uapi";
import { hex } from "../format";

export interface HostRequestContext {
  map: PageStateMap;
  backend: MemoryBackend;
  sharedLimit: bigint;
  /** Create (or return) the exit scenarios' test slot at gpa; a string says why it cannot */
  testSlot: (gpa: bigint, create: boolean) => TestSlot | string;
}

const BREAKS: Record<number, SlotBreak> = { [HostBreak.DELETE]: "delete", [HostBreak.NO_GMEM]: "no-gmem", [HostBreak.RELEASE]: "release" };

/** Perform the request at `gpa` and write the answer into it; returns a one-line description for the trace. */
export function handleHostRequest(ctx: HostRequestContext, gpa: bigint): string {
  const view = ctx.backend.sharedView;
  if (gpa % 8n !== 0n || gpa + BigInt(HOST_REQUEST_SIZE) > ctx.sharedLimit)
    return `host request at ${hex(gpa)} ignored: it must be 8-byte aligned in the always-shared RAM below ${hex(ctx.sharedLimit)}`;
  const at = Number(gpa);
  const { answer, what } = perform(ctx, view, at);
  encodeHostAnswer(view, at, { result: answer.result, found: answer.found ?? 0n, value: answer.value ?? 0n });
  return what;
}

type Reply = { answer: Partial<HostAnswer> & { result: number }; what: string };

function perform(ctx: HostRequestContext, view: Buffer, at: number): Reply {
  const req = decodeHostRequest(view, at);
  const range = `${hex(req.gpa)}+${hex(req.size)}`;
  const invalid = (what: string, why: string): Reply => ({ answer: { result: Errno.EINVAL }, what: `${what}: EINVAL (${why})` });
  if (req.op === HostOp.TEST_SLOT_CREATE || req.op === HostOp.TEST_SLOT_BREAK) {
    const slot = ctx.testSlot(req.gpa, req.op === HostOp.TEST_SLOT_CREATE);
    if (typeof slot === "string") return invalid(`test slot ${range}`, slot);
    if (req.op === HostOp.TEST_SLOT_CREATE) return { answer: { result: 0 }, what: `test slot created at ${hex(req.gpa)}` };
    const how = BREAKS[req.expect];
    if (!how || !TestSlot.allowed(ctx.backend.kind as "attributes" | "memslots", how))
      return invalid(`test slot break ${req.expect}`, `not a scenario of the ${ctx.backend.kind} backend`);
    return { answer: { result: 0 }, what: slot.break(how) };
  }
  const { map } = ctx;
  if (req.gpa % PAGE !== 0n || req.size % PAGE !== 0n || req.size === 0n || req.gpa < map.base || req.gpa + req.size > map.base + map.size)
    return invalid(`host request ${req.op} ${range}`, "not whole pages inside RAM");
  const first = map.pageOf(req.gpa);
  const count = Number(req.size >> PAGE_SHIFT);
  const runs = map.runs(first, count);
  const all = (state: string) => runs.length === 1 && runs[0].state === state;
  const lo = Number(req.gpa);
  const hi = Number(req.gpa + req.size);
  const expect = hex(BigInt(req.expect));
  switch (req.op) {
    case HostOp.CHECK_SHARED: {
      if (!all("shared")) return invalid(`check-shared ${range}`, "not all shared");
      for (let i = lo; i < hi; i++) {
        if (view[i] !== req.expect)
          return {
            answer: { result: -1, found: BigInt(i), value: BigInt(view[i]) },
            what: `check-shared ${range}: byte at ${hex(BigInt(i))} is ${hex(BigInt(view[i]))}, expected ${expect}`,
          };
      }
      const fill = req.flags & HOST_FLAG_FILL;
      if (fill) view.fill(req.fill, lo, hi);
      return { answer: { result: 0 }, what: `check-shared ${range}: all ${expect}${fill ? `, filled ${hex(BigInt(req.fill))}` : ""}` };
    }
    case HostOp.CHECK_PRIVATE: {
      if (!all("private")) return invalid(`check-private ${range}`, "not all private");
      const leak = view.subarray(lo, hi).indexOf(req.expect);
      if (leak >= 0)
        return {
          answer: { result: -1, found: BigInt(lo + leak), value: BigInt(req.expect) },
          what: `check-private ${range}: the shared backing holds ${expect} at ${hex(BigInt(lo + leak))}`,
        };
      return { answer: { result: 0 }, what: `check-private ${range}: no ${expect} in the shared backing` };
    }
    case HostOp.PUNCH_PRIVATE:
      if (!all("private")) return invalid(`punch-private ${range}`, "not all private");
      ctx.backend.punchPrivate(first, count);
      return { answer: { result: 0 }, what: `punch-private ${range}: discarded` };
    case HostOp.COUNT_PRIVATE: {
      const n = runs.filter((r) => r.state === "private").reduce((s, r) => s + r.count, 0);
      return { answer: { result: 0, found: BigInt(n) }, what: `count-private ${range}: ${n}` };
    }
    default:
      return invalid(`host request op ${req.op}`, "unknown operation");
  }
}
