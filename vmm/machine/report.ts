// Register dumps for failure reports.
import type { Regs, Segment, Sregs } from "../kvm/structs";

const hex = (v: bigint, width = 16) => v.toString(16).padStart(width, "0");

function segment(name: string, s: Segment): string {
  return `${name}=${s.selector.toString(16).padStart(4, "0")} base=${hex(s.base)} limit=${s.limit.toString(16).padStart(8, "0")} type=${s.type.toString(16)} l=${s.l} db=${s.db}`;
}

export function describeMode(s: Sregs): string {
  if (!(s.cr0 & 1n)) return "real mode";
  if (s.efer & 0x400n) return s.cs.l ? "64-bit long mode" : "compatibility mode";
  return s.cr0 & 0x80000000n ? "32-bit protected mode, paging" : "32-bit protected mode";
}

export function formatRegisters(vcpu: number, r: Regs, s: Sregs): string {
  return [
    `  vCPU ${vcpu} registers (${describeMode(s)}):`,
    `    rip=${hex(r.rip)} rsp=${hex(r.rsp)} rflags=${hex(r.rflags, 8)}`,
    `    rax=${hex(r.rax)} rbx=${hex(r.rbx)} rcx=${hex(r.rcx)} rdx=${hex(r.rdx)}`,
    `    rsi=${hex(r.rsi)} rdi=${hex(r.rdi)} rbp=${hex(r.rbp)} r8 =${hex(r.r8)}`,
    `    r9 =${hex(r.r9)} r10=${hex(r.r10)} r11=${hex(r.r11)} r12=${hex(r.r12)}`,
    `    r13=${hex(r.r13)} r14=${hex(r.r14)} r15=${hex(r.r15)}`,
    `    cr0=${hex(s.cr0, 8)} cr2=${hex(s.cr2)} cr3=${hex(s.cr3)} cr4=${hex(s.cr4, 8)} efer=${hex(s.efer, 4)}`,
    `    ${segment("cs", s.cs)}`,
    `    ${segment("ss", s.ss)}`,
    `    gdt=${hex(s.gdt.base)}/${s.gdt.limit.toString(16)} idt=${hex(s.idt.base)}/${s.idt.limit.toString(16)}`,
  ].join("\n");
}
