// The x86-64 register set tsvmm's GDB stub offers: exactly gdb's feature org.gnu.gdb.i386.core
// (64bit-core.xml: 24 general/segment registers and the 16 x87 registers, in that order), which
// is the minimum gdb accepts for i386:x86-64. No SSE feature: the test guests are built with
// -mgeneral-regs-only. x87 registers are not fetched from KVM and are sent as unavailable ("xx").
import type { Regs, RegName, Sregs } from "../kvm/structs";

interface RegisterDef {
  name: string;
  bits: number;
  type: string;
  /** where the value comes from: a kvm_regs field, a segment selector, or nothing (unavailable) */
  from: { regs: RegName } | { selector: "cs" | "ss" | "ds" | "es" | "fs" | "gs" } | { unavailable: true };
}

const gpr = (name: RegName, type = "int64"): RegisterDef => ({ name, bits: 64, type, from: { regs: name } });
const seg = (name: "cs" | "ss" | "ds" | "es" | "fs" | "gs"): RegisterDef => ({ name, bits: 32, type: "int32", from: { selector: name } });
const x87 = (name: string, bits: number, type: string): RegisterDef => ({ name, bits, type, from: { unavailable: true } });

export const X86_REGISTERS: readonly RegisterDef[] = [
  gpr("rax"), gpr("rbx"), gpr("rcx"), gpr("rdx"), gpr("rsi"), gpr("rdi"),
  gpr("rbp", "data_ptr"), gpr("rsp", "data_ptr"),
  gpr("r8"), gpr("r9"), gpr("r10"), gpr("r11"), gpr("r12"), gpr("r13"), gpr("r14"), gpr("r15"),
  gpr("rip", "code_ptr"),
  { name: "eflags", bits: 32, type: "i386_eflags", from: { regs: "rflags" } },
  seg("cs"), seg("ss"), seg("ds"), seg("es"), seg("fs"), seg("gs"),
  ...Array.from({ length: 8 }, (_, i) => x87(`st${i}`, 80, "i387_ext")),
  ...["fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"].map((n) => x87(n, 32, "int")),
];

export const RIP_REGNUM = X86_REGISTERS.findIndex((r) => r.name === "rip");

const EFLAGS_FIELDS = [
  [0, "CF"], [1, ""], [2, "PF"], [4, "AF"], [6, "ZF"], [7, "SF"], [8, "TF"], [9, "IF"], [10, "DF"], [11, "OF"],
  [14, "NT"], [16, "RF"], [17, "VM"], [18, "AC"], [19, "VIF"], [20, "VIP"], [21, "ID"],
] as const;

/** The target description gdb reads with qXfer:features:read:target.xml */
export function targetXml(): string {
  const flags = EFLAGS_FIELDS.map(([bit, name]) => `      <field name="${name}" start="${bit}" end="${bit}"/>`).join("\n");
  const regs = X86_REGISTERS.map((r, i) => `    <reg name="${r.name}" bitsize="${r.bits}" type="${r.type}" regnum="${i}"/>`).join("\n");
  return [
    `<?xml version="1.0"?>`,
    `<!DOCTYPE target SYSTEM "gdb-target.dtd">`,
    `<target version="1.0">`,
    `  <architecture>i386:x86-64</architecture>`,
    `  <feature name="org.gnu.gdb.i386.core">`,
    `    <flags id="i386_eflags" size="4">`,
    flags,
    `    </flags>`,
    regs,
    `  </feature>`,
    `</target>`,
    "",
  ].join("\n");
}

function valueOf(def: RegisterDef, regs: Regs, sregs: Sregs): bigint | undefined {
  if ("regs" in def.from) return regs[def.from.regs];
  if ("selector" in def.from) return BigInt(sregs[def.from.selector].selector);
  return undefined;
}

function encodeValue(def: RegisterDef, value: bigint | undefined): string {
  const bytes = def.bits / 8;
  if (value === undefined) return "xx".repeat(bytes);
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt.asUintN(64, value));
  return b.subarray(0, bytes).toString("hex");
}

/** The `g` reply: every register in order, little-endian hex, unavailable ones as "xx". */
export function encodeRegisters(regs: Regs, sregs: Sregs): string {
  return X86_REGISTERS.map((def) => encodeValue(def, valueOf(def, regs, sregs))).join("");
}

/** The `p n` reply, or undefined for a register number gdb does not know from us. */
export function encodeRegister(regnum: number, regs: Regs, sregs: Sregs): string | undefined {
  const def = X86_REGISTERS[regnum];
  return def ? encodeValue(def, valueOf(def, regs, sregs)) : undefined;
}

const readLE = (b: Buffer) => {
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  return v;
};

/**
 * Apply a `P n=value`: general registers, rip and eflags are writable; anything else is refused
 * with the reason (segment registers would need descriptor state gdb does not send).
 */
export function writeRegister(regs: Regs, regnum: number, value: Buffer): string | undefined {
  const def = X86_REGISTERS[regnum];
  if (!def) return `no register ${regnum}`;
  if (!("regs" in def.from)) return `${def.name} is read-only here`;
  if (value.length !== def.bits / 8) return `${def.name} takes ${def.bits / 8} bytes`;
  const v = readLE(value);
  regs[def.from.regs] = def.from.regs === "rflags" ? (regs.rflags & ~0xffffffffn) | v : v;
  return undefined;
}

/** Apply a `G` block: the writable registers take their new values; the rest is ignored. */
export function writeRegisters(regs: Regs, data: Buffer): string | undefined {
  let offset = 0;
  for (let i = 0; i < X86_REGISTERS.length && offset < data.length; i++) {
    const size = X86_REGISTERS[i].bits / 8;
    if (offset + size > data.length) return "G data ends inside a register";
    if ("regs" in X86_REGISTERS[i].from) writeRegister(regs, i, data.subarray(offset, offset + size));
    offset += size;
  }
  return undefined;
}
