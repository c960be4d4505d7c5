// One vCPU as the machine sees it: the native vCPU, its mapped kvm_run, and whether it halted.
import type { NativeVcpu } from "../native";
import { KvmRunView } from "../kvm/kvmRun";
import { decodeRegs, decodeSregs, Regs, Sregs } from "../kvm/structs";
import { formatRegisters } from "./report";

export class VcpuState {
  /** halted, or stopped by --on-fault deny: never resumed again */
  halted = false;
  /** The mapped struct kvm_run */
  readonly kvmRun: KvmRunView;

  constructor(readonly native: NativeVcpu) {
    this.kvmRun = new KvmRunView(native.run);
  }

  get index(): number {
    return this.native.index;
  }

  /** The registers for a failure report (or why they cannot be read) */
  registerReport(): string {
    let regs: Regs;
    let sregs: Sregs;
    try {
      const r = this.native.getRegs();
      regs = decodeRegs(new DataView(r.buffer, r.byteOffset, r.byteLength));
      const s = this.native.getSregs();
      sregs = decodeSregs(new DataView(s.buffer, s.byteOffset, s.byteLength));
    } catch (err) {
      return `  (registers unavailable: ${(err as Error).message})`;
    }
    return formatRegisters(this.native.index, regs, sregs);
  }
}
