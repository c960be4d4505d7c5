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
  /** paused (NativeVcpu.pause) by a debugger's pauseAll (vmm/control), until resumeAll or runOne */
  debugPaused = false;
  /** an exit the machine leaves unanswered for a debugger (its stop, or --on-fault stop): the vCPU
   *  stays paused until resumeAll or runOne answers it */
  held = false;
  /** called once, after the machine next handled an exit of this vCPU */
  exitWaiters: Array<() => void> = [];

  constructor(readonly native: NativeVcpu) {
    this.kvmRun = new KvmRunView(native.run);
  }

  get index(): number {
    return this.native.index;
  }

  /** KVM_GET_REGS and KVM_GET_SREGS (the vCPU must be paused) */
  registers(): { regs: Regs; sregs: Sregs } {
    const r = this.native.getRegs();
    const s = this.native.getSregs();
    return {
      regs: decodeRegs(new DataView(r.buffer, r.byteOffset, r.byteLength)),
      sregs: decodeSregs(new DataView(s.buffer, s.byteOffset, s.byteLength)),
    };
  }

  /** The registers for a failure report (or why they cannot be read) */
  registerReport(): string {
    try {
      const { regs, sregs } = this.registers();
      return formatRegisters(this.native.index, regs, sregs);
    } catch (err) {
      return `  (registers unavailable: ${(err as Error).message})`;
    }
  }
}
