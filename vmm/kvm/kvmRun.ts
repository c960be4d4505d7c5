// A view of a vCPU's mapped struct kvm_run (x86). Only valid between two runUntilExit() calls on
// the thread that runs the vCPU, or while it is paused: the only times the VMM touches it.
import { decodeRegs, REG_NAMES, RegName, Regs } from "./structs";
import { IoDirection, SyncRegs } from "./uapi";

const IO_OUT = IoDirection.OUT;

const EXIT_REASON = 8;
const UNION = 32;
const DIRTY_REGS = 296;
const SYNC_REGS = 304;

export class KvmRunView {
  private readonly view: DataView;
  private readonly bytes: Uint8Array;

  constructor(buffer: ArrayBuffer) {
    this.view = new DataView(buffer);
    this.bytes = new Uint8Array(buffer);
  }

  get exitReason(): number {
    return this.view.getUint32(EXIT_REASON, true);
  }

  // KVM_EXIT_IO
  get io(): { direction: number; size: number; port: number; count: number; dataOffset: number } {
    return {
      direction: this.view.getUint8(UNION),
      size: this.view.getUint8(UNION + 1),
      port: this.view.getUint16(UNION + 2, true),
      count: this.view.getUint32(UNION + 4, true),
      dataOffset: Number(this.view.getBigUint64(UNION + 8, true)),
    };
  }

  /** io.port alone, with nothing allocated (the vCPU threads' check of every exit) */
  get ioPort(): number {
    return this.view.getUint16(UNION + 2, true);
  }

  /** Whether this KVM_EXIT_IO is one `out` of `size` bytes to `port`, read with nothing allocated */
  isOut(port: number, size: number): boolean {
    return this.ioPort === port && this.view.getUint8(UNION) === IO_OUT && this.view.getUint8(UNION + 1) === size && this.view.getUint32(UNION + 4, true) === 1;
  }

  ioData(dataOffset: number, length: number): Uint8Array {
    return this.bytes.subarray(dataOffset, dataOffset + length);
  }

  // KVM_EXIT_MMIO
  get mmio(): { physAddr: bigint; data: Uint8Array; len: number; isWrite: boolean } {
    return {
      physAddr: this.view.getBigUint64(UNION, true),
      data: this.bytes.subarray(UNION + 8, UNION + 16),
      len: this.view.getUint32(UNION + 16, true),
      isWrite: this.view.getUint8(UNION + 20) !== 0,
    };
  }

  // KVM_EXIT_HYPERCALL
  get hypercall(): { nr: bigint; args: bigint[]; flags: bigint } {
    const args: bigint[] = [];
    for (let i = 0; i < 6; i++) args.push(this.view.getBigUint64(UNION + 8 + i * 8, true));
    return { nr: this.view.getBigUint64(UNION, true), args, flags: this.view.getBigUint64(UNION + 64, true) };
  }

  /** hypercall.nr and args[i] alone (a conversion request reads 4 of the 8 words) */
  get hypercallNr(): bigint {
    return this.view.getBigUint64(UNION, true);
  }

  hypercallArg(i: number): bigint {
    return this.view.getBigUint64(UNION + 8 + i * 8, true);
  }

  set hypercallRet(value: bigint) {
    this.view.setBigUint64(UNION + 56, value, true);
  }

  /** The conversion hot path's reads, as numbers (no BigInt): hypercall.nr then args[0..2] of a
   *  KVM_EXIT_HYPERCALL, or RAX, RBX, RCX, RDX from the sync-regs area. Exact below 2^53; a larger
   *  value comes back rounded, still at or above 2^53 (outside any RAM, never a valid request). */
  hypercallWord(i: number): number {
    return this.u64(UNION + i * 8);
  }

  syncRegWord(index: number): number {
    return this.u64(SYNC_REGS + index * 8);
  }

  /** hypercall.ret = value, or one register, from a number (a small non-negative answer) */
  setHypercallRetWord(value: number): void {
    this.setU64(UNION + 56, value);
  }

  setSyncRegWord(index: number, value: number): void {
    this.setU64(SYNC_REGS + index * 8, value);
    this.view.setUint32(DIRTY_REGS, this.view.getUint32(DIRTY_REGS, true) | SyncRegs.REGS, true);
  }

  private u64(offset: number): number {
    return this.view.getUint32(offset, true) + this.view.getUint32(offset + 4, true) * 0x1_0000_0000;
  }

  private setU64(offset: number, value: number): void {
    this.view.setUint32(offset, value % 0x1_0000_0000, true);
    this.view.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000), true);
  }

  // KVM_EXIT_MEMORY_FAULT
  get memoryFault(): { flags: bigint; gpa: bigint; size: bigint } {
    return {
      flags: this.view.getBigUint64(UNION, true),
      gpa: this.view.getBigUint64(UNION + 8, true),
      size: this.view.getBigUint64(UNION + 16, true),
    };
  }

  // KVM_EXIT_DEBUG (struct kvm_debug_exit_arch): exception 1 (#DB: single-step, debug registers)
  // or 3 (#BP: int3 with KVM_GUESTDBG_USE_SW_BP)
  get debug(): { exception: number; pc: bigint; dr6: bigint; dr7: bigint } {
    return {
      exception: this.view.getUint32(UNION, true),
      pc: this.view.getBigUint64(UNION + 8, true),
      dr6: this.view.getBigUint64(UNION + 16, true),
      dr7: this.view.getBigUint64(UNION + 24, true),
    };
  }

  // KVM_EXIT_INTERNAL_ERROR
  get internal(): { suberror: number; data: bigint[] } {
    const ndata = Math.min(this.view.getUint32(UNION + 4, true), 16);
    const data: bigint[] = [];
    for (let i = 0; i < ndata; i++) data.push(this.view.getBigUint64(UNION + 8 + i * 8, true));
    return { suberror: this.view.getUint32(UNION, true), data };
  }

  // KVM_EXIT_FAIL_ENTRY
  get failEntry(): { reason: bigint; cpu: number } {
    return { reason: this.view.getBigUint64(UNION, true), cpu: this.view.getUint32(UNION + 8, true) };
  }

  // KVM_EXIT_SYSTEM_EVENT
  get systemEvent(): { type: number; data: bigint[] } {
    const ndata = Math.min(this.view.getUint32(UNION + 4, true), 16);
    const data: bigint[] = [];
    for (let i = 0; i < ndata; i++) data.push(this.view.getBigUint64(UNION + 8 + i * 8, true));
    return { type: this.view.getUint32(UNION, true), data };
  }

  /** Registers from the sync-regs area (valid when KVM_SYNC_X86_REGS was requested). */
  get syncRegs(): Regs {
    return decodeRegs(this.view, SYNC_REGS);
  }

  /** Change one register through the sync-regs area; KVM loads it on the next KVM_RUN. */
  setSyncReg(name: RegName, value: bigint): void {
    this.view.setBigUint64(SYNC_REGS + REG_NAMES.indexOf(name) * 8, value, true);
    const dirty = this.view.getBigUint64(DIRTY_REGS, true);
    this.view.setBigUint64(DIRTY_REGS, dirty | BigInt(SyncRegs.REGS), true);
  }
}
