// The x86 state a vCPU enters with: the firmware entry in 32-bit protected mode with flat
// segments and paging off (the PVH entry state), so there is no real-mode code and no reset
// vector. guest/include/tsvmm/abi.h documents the registers.
import type { NativeVcpu, NativeVm } from "../../native";
import { decodeSregs, encodeRegs, encodeSregs, Regs, Segment } from "../../kvm/structs";

/** Three pages for the TSS of VMX's real-mode emulation: below 4 GiB and above any RAM tsvmm maps */
const TSS_ADDR = 0xfffbd000;

export function setTss(vm: NativeVm): void {
  try {
    vm.setTssAddr(TSS_ADDR);
  } catch {
    // Only VMX needs a TSS for real-mode emulation; other KVMs may refuse it harmlessly.
  }
}

/** The page KVM_SET_IDENTITY_MAP_ADDR reserves for VMX's real-mode emulation: just below the TSS */
const IDENTITY_MAP_ADDR = 0xfffbc000n;

/** Needed before vCPUs exist when a guest may run real-mode code (the SIPI trampoline of a PC guest). */
export function setIdentityMap(vm: NativeVm): void {
  try {
    vm.setIdentityMapAddr(IDENTITY_MAP_ADDR);
  } catch {
    // As with the TSS: only VMX uses it.
  }
}

export const flat = (selector: number, type: number): Segment => ({
  base: 0n, limit: 0xffffffff, selector, type, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0,
});

/** 32-bit protected mode, paging off, flat 4 GiB code (0x08) and data (0x10) segments, interrupts
 *  off: tsvmm's firmware entry and the multiboot entry. `regs` sets the general registers. */
export function enterFlat32(vcpu: NativeVcpu, regs: Partial<Regs>): void {
  const sregsBuf = vcpu.getSregs();
  const s = decodeSregs(new DataView(sregsBuf.buffer, sregsBuf.byteOffset, sregsBuf.byteLength));
  s.cs = flat(0x08, 0x0b);
  s.ds = s.es = s.fs = s.gs = s.ss = flat(0x10, 0x03);
  // A busy 32/64-bit TSS: VMX refuses long mode with the reset value (16-bit TSS).
  s.tr = { base: 0n, limit: 0x67, selector: 0x18, type: 0x0b, present: 1, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0 };
  s.cr0 = 0x11n; // PE | ET
  s.cr3 = 0n;
  s.cr4 = 0n;
  s.efer = 0n;
  vcpu.setSregs(encodeSregs(sregsBuf, s));
  vcpu.setRegs(encodeRegs({ rflags: 2n, ...regs }));
}

/** Load the entry state: RIP at `entry`, RBX the boot page, RSI the vCPU index. */
export function resetVcpu(vcpu: NativeVcpu, index: number, entry: bigint, bootInfoGpa: number): void {
  enterFlat32(vcpu, { rip: entry, rbx: BigInt(bootInfoGpa), rsi: BigInt(index) });
}
