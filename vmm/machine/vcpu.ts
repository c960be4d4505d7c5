// One vCPU as the machine sees it: the native thread, its mapped kvm_run, and whether it may run.
import type { NativeVcpu } from "../native";
import { KvmRunView } from "../kvm/kvmRun";
import { decodeRegs, decodeSregs, Regs, Sregs } from "../kvm/structs";
import { formatRegisters } from "./report";

export class VcpuState {
  /** halted, or stopped by --on-fault deny: never resumed again */
  halted = false;
  /** outside KVM_RUN, waiting for us */
  parked = false;
  /** The mapped struct kvm_run */
  readonly kvmRun: KvmRunView;
  onParked?: () => void;

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
