// How a guest asks for a conversion through an exit, and how the answer goes back: KVM_HC_MAP_GPA_RANGE
// by hypercall (KVM_EXIT_HYPERCALL), or the port doorbell (a 32-bit `out` to CONVERT_PORT with the
// hypercall's registers in RAX, RBX, RCX, RDX). Read by the exit switch (exits.ts) and by the vCPU
// threads that answer conversions themselves (vcpuConversions.ts).
import type { KvmRunView } from "../kvm/kvmRun";
import { Exit } from "../kvm/uapi";
import type { ConversionRequest } from "../memory/pageState";
import { CONVERT_PORT } from "./abi";

export type RequestExit = "hypercall" | "doorbell";

/** Whether this exit is a conversion request (the hypercall number in it is checked by the caller) */
export function requestExit(run: KvmRunView): RequestExit | undefined {
  const reason = run.exitReason;
  if (reason === Exit.HYPERCALL) return "hypercall";
  return reason === Exit.IO && run.isOut(CONVERT_PORT, 4) ? "doorbell" : undefined;
}

/** The hypercall number (KVM_HC_MAP_GPA_RANGE when valid) and the request in the exit's registers */
export function requestOf(run: KvmRunView, via: RequestExit): { nr: bigint; request: ConversionRequest } {
  if (via === "hypercall") {
    return { nr: run.hypercallNr, request: { gpa: run.hypercallArg(0), pages: run.hypercallArg(1), attrs: run.hypercallArg(2) } };
  }
  const r = run.syncRegs;
  return { nr: r.rax, request: { gpa: r.rbx, pages: r.rcx, attrs: r.rdx } };
}

/** The same words as numbers, with nothing allocated (the vCPU threads' hot path): 0 the hypercall
 *  number, 1 gpa, 2 pages, 3 attrs (hypercall nr and args[0..2], or RAX, RBX, RCX, RDX). Exact below
 *  2^53; a larger value reads as a number at or above 2^53, which no valid request has. */
export function requestWord(run: KvmRunView, via: RequestExit, i: 0 | 1 | 2 | 3): number {
  return via === "hypercall" ? run.hypercallWord(i) : run.syncRegWord(i);
}

/** The guest's return value: hypercall.ret, or RAX for the doorbell */
export function answerRequest(run: KvmRunView, via: RequestExit, value: bigint): void {
  if (via === "hypercall") run.hypercallRet = value;
  else run.setSyncReg("rax", value);
}

/** answerRequest for a small non-negative value, with no BigInt */
export function answerRequestWord(run: KvmRunView, via: RequestExit, value: number): void {
  if (via === "hypercall") run.setHypercallRetWord(value);
  else run.setSyncRegWord(0, value);
}
