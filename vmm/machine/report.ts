// Register dumps for failure reports.
import type { Regs, Segment, Sregs } from "../kvm/structs";

/** Zero-padded hex digits, as register dumps align them */
const digits = (v: bigint, width = 16) => v.toString(16).padStart(width, "0");

function segment(name: string, s: Segment): string {
  return `${name}=${s.selector.toString(16).padStart(4, "0")} base=${digits(s.base)} limit=${s.limit.toString(16).padStart(8, "0")} type=${s.type.toString(16)} l=${s.l} db=${s.db}`;
}

export function describeMode(s: Sregs): string {
  if (!(s.cr0 & 1n)) return "real mode";
  if (s.efer & 0x400n) return s.cs.l ? "64-bit long mode" : "compatibility mode";
  return s.cr0 & 0x80000000n ? "32-bit protected mode, paging" : "32-bit protected mode";
}

export function formatRegisters(vcpu: number, r: Regs, s: Sregs): string {
  return [
    `  vCPU ${vcpu} registers (${describeMode(s)}):`,
    `    rip=${digits(r.rip)} rsp=${digits(r.rsp)} rflags=${digits(r.rflags, 8)}`,
    `    rax=${digits(r.rax)} rbx=${digits(r.rbx)} rcx=${digits(r.rcx)} rdx=${digits(r.rdx)}`,
    `    rsi=${digits(r.rsi)} rdi=${digits(r.rdi)} rbp=${digits(r.rbp)} r8 =${digits(r.r8)}`,
    `    r9 =${digits(r.r9)} r10=${digits(r.r10)} r11=${digits(r.r11)} r12=${digits(r.r12)}`,
    `    r13=${digits(r.r13)} r14=${digits(r.r14)} r15=${digits(r.r15)}`,
    `    cr0=${digits(s.cr0, 8)} cr2=${digits(s.cr2)} cr3=${digits(s.cr3)} cr4=${digits(s.cr4, 8)} efer=${digits(s.efer, 4)}`,
    `    ${segment("cs", s.cs)}`,
    `    ${segment("ss", s.ss)}`,
    `    gdt=${digits(s.gdt.base)}/${s.gdt.limit.toString(16)} idt=${digits(s.idt.base)}/${s.idt.limit.toString(16)}`,
  ].join("\n");
}
