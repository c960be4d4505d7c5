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
  /** kept parked by a debugger (vmm/control) until it lets the vCPU go */
  held = false;
  /** may re-enter while the VM is paused (a debugger's single-step) */
  stepping = false;
  /** The mapped struct kvm_run */
  readonly kvmRun: KvmRunView;
  /** called once, the next time the vCPU parks */
  parkWaiters: Array<() => void> = [];

  constructor(readonly native: NativeVcpu) {
    this.kvmRun = new KvmRunView(native.run);
  }

  get index(): number {
    return this.native.index;
  }

  /** KVM_GET_REGS and KVM_GET_SREGS (the vCPU must be parked) */
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
