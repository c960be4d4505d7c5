// How a guest asks for a conversion through an exit, and how the answer goes back: KVM_HC_MAP_GPA_RANGE
// by hypercall (KVM_EXIT_HYPERCALL), or the port doorbell (a 32-bit `out` to CONVERT_PORT with the
// hypercall's registers in RAX, RBX, RCX, RDX). Read by the exit switch (exits.ts) and by the vCPU
// threads that answer conversions themselves (vcpuConversions.ts).
import type { KvmRunView } from "../kvm/kvmRun";
import { Exit, IoDirection } from "../kvm/uapi";
import type { ConversionRequest } from "../memory/pageState";
import { CONVERT_PORT } from "./abi";

export type RequestExit = "hypercall" | "doorbell";

/** Whether this exit is a conversion request (the hypercall number in it is checked by the caller) */
export function requestExit(run: KvmRunView): RequestExit | undefined {
  const reason = run.exitReason;
  if (reason === Exit.HYPERCALL) return "hypercall";
  if (reason !== Exit.IO) return undefined;
  const io = run.io;
  return io.port === CONVERT_PORT && io.direction === IoDirection.OUT && io.size === 4 && io.count === 1 ? "doorbell" : undefined;
}

/** The hypercall number (KVM_HC_MAP_GPA_RANGE when valid) and the request in the exit's registers */
export function requestOf(run: KvmRunView, via: RequestExit): { nr: bigint; request: ConversionRequest } {
  if (via === "hypercall") {
    return { nr: run.hypercallNr, request: { gpa: run.hypercallArg(0), pages: run.hypercallArg(1), attrs: run.hypercallArg(2) } };
  }
  const r = run.syncRegs;
  return { nr: r.rax, request: { gpa: r.rbx, pages: r.rcx, attrs: r.rdx } };
}

/** The guest's return value: hypercall.ret, or RAX for the doorbell */
export function answerRequest(run: KvmRunView, via: RequestExit, value: bigint): void {
  if (via === "hypercall") run.hypercallRet = value;
  else run.setSyncReg("rax", value);
}
