// Byte layouts of the x86 KVM structs that cross the native boundary (little-endian, as in
// <linux/kvm.h>). The native side moves raw bytes; these helpers give them names.

export const REG_NAMES = [
  "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
  "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags",
] as const;
export type RegName = (typeof REG_NAMES)[number];
export type Regs = Record<RegName, bigint>;
export const KVM_REGS_SIZE = 144;

export function decodeRegs(view: DataView, offset = 0): Regs {
  const regs = {} as Regs;
  REG_NAMES.forEach((name, i) => (regs[name] = view.getBigUint64(offset + i * 8, true)));
  return regs;
}

export function encodeRegs(regs: Partial<Regs>): Buffer {
  const buf = Buffer.alloc(KVM_REGS_SIZE);
  REG_NAMES.forEach((name, i) => buf.writeBigUInt64LE(regs[name] ?? 0n, i * 8));
  return buf;
}

export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}

export interface Sregs {
  cs: Segment; ds: Segment; es: Segment; fs: Segment; gs: Segment; ss: Segment;
  tr: Segment; ldt: Segment;
  gdt: { base: bigint; limit: number };
  idt: { base: bigint; limit: number };
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint;
  efer: bigint;
  apicBase: bigint;
}

const SEGMENTS = ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"] as const;
const SEGMENT_BYTES = ["type", "present", "dpl", "db", "s", "l", "g", "avl", "unusable"] as const;

function decodeSegment(v: DataView, o: number): Segment {
  const seg = {
    base: v.getBigUint64(o, true),
    limit: v.getUint32(o + 8, true),
    selector: v.getUint16(o + 12, true),
  } as Segment;
  SEGMENT_BYTES.forEach((name, i) => (seg[name] = v.getUint8(o + 14 + i)));
  return seg;
}

function encodeSegment(v: DataView, o: number, seg: Segment): void {
  v.setBigUint64(o, seg.base, true);
  v.setUint32(o + 8, seg.limit, true);
  v.setUint16(o + 12, seg.selector, true);
  SEGMENT_BYTES.forEach((name, i) => v.setUint8(o + 14 + i, seg[name]));
}

export function decodeSregs(v: DataView, offset = 0): Sregs {
  const s = {} as Sregs;
  SEGMENTS.forEach((name, i) => (s[name] = decodeSegment(v, offset + i * 24)));
  s.gdt = { base: v.getBigUint64(offset + 192, true), limit: v.getUint16(offset + 200, true) };
  s.idt = { base: v.getBigUint64(offset + 208, true), limit: v.getUint16(offset + 216, true) };
  s.cr0 = v.getBigUint64(offset + 224, true);
  s.cr2 = v.getBigUint64(offset + 232, true);
  s.cr3 = v.getBigUint64(offset + 240, true);
  s.cr4 = v.getBigUint64(offset + 248, true);
  s.cr8 = v.getBigUint64(offset + 256, true);
  s.efer = v.getBigUint64(offset + 264, true);
  s.apicBase = v.getBigUint64(offset + 272, true);
  return s;
}

/** Re-encode sregs into an existing struct (keeps the interrupt bitmap). */
export function encodeSregs(buf: Buffer, s: Sregs): Buffer {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  SEGMENTS.forEach((name, i) => encodeSegment(v, i * 24, s[name]));
  v.setBigUint64(192, s.gdt.base, true);
  v.setUint16(200, s.gdt.limit, true);
  v.setBigUint64(208, s.idt.base, true);
  v.setUint16(216, s.idt.limit, true);
  v.setBigUint64(224, s.cr0, true);
  v.setBigUint64(232, s.cr2, true);
  v.setBigUint64(240, s.cr3, true);
  v.setBigUint64(248, s.cr4, true);
  v.setBigUint64(256, s.cr8, true);
  v.setBigUint64(264, s.efer, true);
  v.setBigUint64(272, s.apicBase, true);
  return buf;
}

export interface CpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}
export const CPUID_ENTRY_SIZE = 40;

export function decodeCpuid(buf: Buffer): CpuidEntry[] {
  const entries: CpuidEntry[] = [];
  for (let o = 0; o + CPUID_ENTRY_SIZE <= buf.length; o += CPUID_ENTRY_SIZE) {
    entries.push({
      function: buf.readUInt32LE(o),
      index: buf.readUInt32LE(o + 4),
      flags: buf.readUInt32LE(o + 8),
      eax: buf.readUInt32LE(o + 12),
      ebx: buf.readUInt32LE(o + 16),
      ecx: buf.readUInt32LE(o + 20),
      edx: buf.readUInt32LE(o + 24),
    });
  }
  return entries;
}

export function encodeCpuid(entries: CpuidEntry[]): Buffer {
  const buf = Buffer.alloc(entries.length * CPUID_ENTRY_SIZE);
  entries.forEach((e, i) => {
    const o = i * CPUID_ENTRY_SIZE;
    buf.writeUInt32LE(e.function, o);
    buf.writeUInt32LE(e.index, o + 4);
    buf.writeUInt32LE(e.flags, o + 8);
    buf.writeUInt32LE(e.eax >>> 0, o + 12);
    buf.writeUInt32LE(e.ebx >>> 0, o + 16);
    buf.writeUInt32LE(e.ecx >>> 0, o + 20);
    buf.writeUInt32LE(e.edx >>> 0, o + 24);
  });
  return buf;
}

export const KVM_GUEST_DEBUG_SIZE = 72;

/** struct kvm_guest_debug: control, then debugreg[0..7] (DR0-DR3 addresses, DR7 at index 7) */
export function encodeGuestDebug(control: number, debugreg: readonly bigint[] = []): Buffer {
  const buf = Buffer.alloc(KVM_GUEST_DEBUG_SIZE);
  buf.writeUInt32LE(control >>> 0, 0);
  debugreg.slice(0, 8).forEach((v, i) => buf.writeBigUInt64LE(v, 8 + i * 8));
  return buf;
}
