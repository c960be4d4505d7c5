// The 64-bit entry of the Linux boot protocol, built by the VMM (no firmware runs): an identity
// map of the low 4 GiB with 2 MiB pages, a GDT with flat __BOOT_CS (0x10, 64-bit code) and
// __BOOT_DS (0x18), and the vCPU in long mode with paging on and interrupts off.
import type { NativeVcpu } from "../../native";
import { decodeSregs, encodeRegs, encodeSregs, Regs } from "../../kvm/structs";
import { flat } from "./reset";

/** [0x9000, 0x10000): PML4, PDPT, four page directories, then the GDT. Below the kernel, above boot_params (0x7000). */
export const PML4_GPA = 0x9000;
const PDPT_GPA = 0xa000;
const PD_GPA = 0xb000;
export const GDT_GPA = 0xf000;
export const BOOT_CS = 0x10;
export const BOOT_DS = 0x18;
const BOOT_TSS = 0x20;
/** Below the page tables: some kernels want a stack before they set up their own */
export const BOOT_STACK = 0x8ff0;

const PTE_PRESENT = 0x1n;
const PTE_WRITE = 0x2n;
const PDE_LARGE = 0x80n;

/** The identity map and the GDT, to be written at PML4_GPA (one buffer, 0x7000 bytes). */
export function longModeTables(): { gpa: number; data: Buffer } {
  const data = Buffer.alloc(GDT_GPA + 0x1000 - PML4_GPA);
  const at = (gpa: number) => gpa - PML4_GPA;
  data.writeBigUInt64LE(BigInt(PDPT_GPA) | PTE_PRESENT | PTE_WRITE, at(PML4_GPA));
  for (let gib = 0; gib < 4; gib++) {
    const pd = PD_GPA + gib * 0x1000;
    data.writeBigUInt64LE(BigInt(pd) | PTE_PRESENT | PTE_WRITE, at(PDPT_GPA) + gib * 8);
    for (let i = 0; i < 512; i++) {
      const phys = (BigInt(gib) << 30n) | (BigInt(i) << 21n);
      data.writeBigUInt64LE(phys | PTE_PRESENT | PTE_WRITE | PDE_LARGE, at(pd) + i * 8);
    }
  }
  const gdt = at(GDT_GPA);
  data.writeBigUInt64LE(0x00af9b000000ffffn, gdt + BOOT_CS); // 64-bit code, flat
  data.writeBigUInt64LE(0x00cf93000000ffffn, gdt + BOOT_DS); // data, flat
  data.writeBigUInt64LE(0x00008b0000000067n, gdt + BOOT_TSS); // busy 64-bit TSS at 0 (VMX wants a valid TR)
  return { gpa: PML4_GPA, data };
}

const CR0_PE = 0x1n;
const CR0_ET = 0x10n;
const CR0_PG = 0x80000000n;
const CR4_PAE = 0x20n;
const EFER_LME = 0x100n;
const EFER_LMA = 0x400n;

/** Long mode on the tables of longModeTables(); `regs` sets RIP, RSI and the rest. */
export function enterLong64(vcpu: NativeVcpu, regs: Partial<Regs>): void {
  const sregsBuf = vcpu.getSregs();
  const s = decodeSregs(new DataView(sregsBuf.buffer, sregsBuf.byteOffset, sregsBuf.byteLength));
  s.cs = { ...flat(BOOT_CS, 0x0b), db: 0, l: 1 };
  s.ds = s.es = s.fs = s.gs = s.ss = flat(BOOT_DS, 0x03);
  s.tr = { base: 0n, limit: 0x67, selector: BOOT_TSS, type: 0x0b, present: 1, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0 };
  s.gdt = { base: BigInt(GDT_GPA), limit: 0x27 };
  s.idt = { base: 0n, limit: 0 };
  s.cr0 = CR0_PE | CR0_ET | CR0_PG;
  s.cr3 = BigInt(PML4_GPA);
  s.cr4 = CR4_PAE;
  s.efer = EFER_LME | EFER_LMA;
  vcpu.setSregs(encodeSregs(sregsBuf, s));
  vcpu.setRegs(encodeRegs({ rflags: 2n, rsp: BigInt(BOOT_STACK), ...regs }));
}
