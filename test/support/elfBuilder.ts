// Builds small ELF64 files in memory for loader tests.
export interface SegmentSpec {
  paddr: bigint;
  data: Buffer;
  memsz?: bigint;
}

export interface ElfSpec {
  machine?: number;
  type?: number;
  class64?: boolean;
  entry: bigint;
  segments: SegmentSpec[];
  description?: string;
}

export function buildElf(spec: ElfSpec): Buffer {
  const ehsize = 64;
  const phentsize = 56;
  const phoff = ehsize;
  let dataOff = phoff + phentsize * spec.segments.length;
  const payloads: Buffer[] = [];
  const phdrs = Buffer.alloc(phentsize * spec.segments.length);
  spec.segments.forEach((s, i) => {
    const o = i * phentsize;
    phdrs.writeUInt32LE(1, o); // PT_LOAD
    phdrs.writeUInt32LE(7, o + 4);
    phdrs.writeBigUInt64LE(BigInt(dataOff), o + 8);
    phdrs.writeBigUInt64LE(s.paddr, o + 16);
    phdrs.writeBigUInt64LE(s.paddr, o + 24);
    phdrs.writeBigUInt64LE(BigInt(s.data.length), o + 32);
    phdrs.writeBigUInt64LE(s.memsz ?? BigInt(s.data.length), o + 40);
    payloads.push(s.data);
    dataOff += s.data.length;
  });
  let sections = Buffer.alloc(0);
  let shoff = 0;
  let shnum = 0;
  let shstrndx = 0;
  let desc = Buffer.alloc(0);
  if (spec.description !== undefined) {
    desc = Buffer.from(spec.description + "\0");
    const strtab = Buffer.from("\0.tsvmm.description\0.shstrtab\0");
    const descOff = dataOff;
    const strOff = descOff + desc.length;
    shoff = strOff + strtab.length;
    shnum = 3;
    shstrndx = 2;
    sections = Buffer.alloc(64 * 3);
    sections.writeUInt32LE(1, 64 + 0);
    sections.writeBigUInt64LE(BigInt(descOff), 64 + 24);
    sections.writeBigUInt64LE(BigInt(desc.length), 64 + 32);
    sections.writeUInt32LE(20, 128 + 0);
    sections.writeBigUInt64LE(BigInt(strOff), 128 + 24);
    sections.writeBigUInt64LE(BigInt(strtab.length), 128 + 32);
    desc = Buffer.concat([desc, strtab]);
  }
  const eh = Buffer.alloc(ehsize);
  eh.writeUInt32BE(0x7f454c46, 0);
  eh[4] = spec.class64 === false ? 1 : 2;
  eh[5] = 1;
  eh[6] = 1;
  eh.writeUInt16LE(spec.type ?? 2, 16);
  eh.writeUInt16LE(spec.machine ?? 62, 18);
  eh.writeUInt32LE(1, 20);
  eh.writeBigUInt64LE(spec.entry, 24);
  eh.writeBigUInt64LE(BigInt(phoff), 32);
  eh.writeBigUInt64LE(BigInt(shoff), 40);
  eh.writeUInt16LE(ehsize, 52);
  eh.writeUInt16LE(phentsize, 54);
  eh.writeUInt16LE(spec.segments.length, 56);
  eh.writeUInt16LE(64, 58);
  eh.writeUInt16LE(shnum, 60);
  eh.writeUInt16LE(shstrndx, 62);
  return Buffer.concat([eh, phdrs, ...payloads, desc, sections]);
}
