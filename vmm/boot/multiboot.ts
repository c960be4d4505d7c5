// Multiboot (version 1) kernels: find and check the header in the first 8 KiB, load the image
// (ELF32 program headers, or the header's address fields: the "a.out kludge"), and build the
// information block the kernel finds in EBX. Pure functions over bytes; the machine writes the
// result into RAM and enters the kernel in 32-bit protected mode, paging off, EAX = 0x2BADB002.
import { BadImageError } from "../errors";
import { alignUp } from "../machine/layout";
import type { MemoryMapEntry } from "./memoryMap";

export const MULTIBOOT_HEADER_MAGIC = 0x1badb002;
export const MULTIBOOT_BOOTLOADER_MAGIC = 0x2badb002;
const SEARCH_LIMIT = 8192;

/** Header flags: bits 0-15 are requirements a loader must refuse if it cannot meet them. */
export const MbHeaderFlag = { PAGE_ALIGN_MODULES: 1 << 0, MEMORY_INFO: 1 << 1, VIDEO_MODE: 1 << 2, ADDRESS_FIELDS: 1 << 16 } as const;
const SUPPORTED_REQUIREMENTS = MbHeaderFlag.PAGE_ALIGN_MODULES | MbHeaderFlag.MEMORY_INFO;

/** Info-block flags (which fields are valid) */
export const MbInfoFlag = { MEMORY: 1 << 0, CMDLINE: 1 << 2, MODS: 1 << 3, MMAP: 1 << 6, LOADER_NAME: 1 << 9 } as const;
export const MB_INFO_SIZE = 116;
const MMAP_ENTRY_SIZE = 24;
const MODULE_ENTRY_SIZE = 16;
export const LOADER_NAME = "tsvmm";

export interface MultibootSegment {
  gpa: number;
  data: Buffer;
  memSize: number;
}

export interface MultibootImage {
  name: string;
  headerFlags: number;
  entry: number;
  segments: MultibootSegment[];
  /** First byte after the image (bss included) */
  end: number;
}

/** Offset of a valid-looking multiboot header (magic with a matching checksum), or undefined. */
export function findMultibootHeader(file: Buffer): number | undefined {
  const limit = Math.min(file.length, SEARCH_LIMIT) - 12;
  for (let o = 0; o <= limit; o += 4) {
    if (file.readUInt32LE(o) !== MULTIBOOT_HEADER_MAGIC) continue;
    const flags = file.readUInt32LE(o + 4);
    if (((MULTIBOOT_HEADER_MAGIC + flags + file.readUInt32LE(o + 8)) & 0xffffffff) >>> 0 === 0) return o;
  }
  return undefined;
}

export function parseMultiboot(name: string, file: Buffer): MultibootImage {
  const bad = (problem: string) => new BadImageError(name, problem);
  const at = findMultibootHeader(file);
  if (at === undefined) {
    const magicAt = file.subarray(0, SEARCH_LIMIT).indexOf(Buffer.from([0x02, 0xb0, 0xad, 0x1b]));
    throw bad(magicAt >= 0 && magicAt % 4 === 0
      ? `multiboot header at offset ${magicAt}: checksum does not make magic + flags + checksum zero`
      : "no multiboot header (magic 0x1badb002, 4-byte aligned) in the first 8 KiB");
  }
  const flags = file.readUInt32LE(at + 4);
  const unsupported = flags & 0xffff & ~SUPPORTED_REQUIREMENTS;
  if (unsupported)
    throw bad(`multiboot header flags 0x${flags.toString(16)}: required bit${unsupported & (unsupported - 1) ? "s" : ""} 0x${unsupported.toString(16)} ${unsupported & MbHeaderFlag.VIDEO_MODE ? "(video mode: tsvmm has no display) " : ""}not supported`);
  const loaded = flags & MbHeaderFlag.ADDRESS_FIELDS ? loadByAddressFields(file, at, bad) : loadElf32(file, bad);
  const end = loaded.segments.reduce((m, s) => Math.max(m, s.gpa + s.memSize), 0);
  if (!loaded.segments.some((s) => loaded.entry >= s.gpa && loaded.entry < s.gpa + s.memSize))
    throw bad(`entry point 0x${loaded.entry.toString(16)} is outside the loaded image`);
  return { name, headerFlags: flags, entry: loaded.entry, segments: loaded.segments, end };
}

type Bad = (problem: string) => BadImageError;

/** Header fields header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr (flag 16). */
function loadByAddressFields(file: Buffer, at: number, bad: Bad): { entry: number; segments: MultibootSegment[] } {
  if (at + 32 > file.length) throw bad("truncated: the multiboot header's address fields run past the end of the file");
  const [headerAddr, loadAddr, loadEndAddr, bssEndAddr, entry] = [12, 16, 20, 24, 28].map((o) => file.readUInt32LE(at + o));
  if (loadAddr > headerAddr) throw bad(`multiboot load_addr 0x${loadAddr.toString(16)} is above header_addr 0x${headerAddr.toString(16)}`);
  const fileStart = at - (headerAddr - loadAddr);
  if (fileStart < 0) throw bad(`multiboot header_addr - load_addr (0x${(headerAddr - loadAddr).toString(16)}) reaches before the start of the file`);
  const size = loadEndAddr === 0 ? file.length - fileStart : loadEndAddr - loadAddr;
  if (loadEndAddr !== 0 && loadEndAddr < loadAddr) throw bad(`multiboot load_end_addr 0x${loadEndAddr.toString(16)} is below load_addr`);
  if (fileStart + size > file.length) throw bad(`truncated: multiboot load_end_addr needs 0x${(fileStart + size).toString(16)} bytes of file, it has 0x${file.length.toString(16)}`);
  const memEnd = bssEndAddr === 0 ? loadAddr + size : bssEndAddr;
  if (memEnd < loadAddr + size) throw bad(`multiboot bss_end_addr 0x${bssEndAddr.toString(16)} is below load_end_addr`);
  return { entry, segments: [{ gpa: loadAddr, data: file.subarray(fileStart, fileStart + size), memSize: memEnd - loadAddr }] };
}

const EM_386 = 3;
const PT_LOAD = 1;

function loadElf32(file: Buffer, bad: Bad): { entry: number; segments: MultibootSegment[] } {
  if (file.length < 52 || file.readUInt32BE(0) !== 0x7f454c46)
    throw bad("multiboot header without address fields (flag 16), and the file is not an ELF");
  if (file[4] !== 1) throw bad(`multiboot kernels must be ELF32 (EI_CLASS=${file[4]}), or set the header's address fields (flag 16)`);
  if (file[5] !== 1) throw bad("not little-endian (EI_DATA)");
  const machine = file.readUInt16LE(18);
  if (machine !== EM_386) throw bad(`wrong architecture: e_machine=${machine}, expected ${EM_386} (i386)`);
  const entry = file.readUInt32LE(24);
  const phoff = file.readUInt32LE(28);
  const phentsize = file.readUInt16LE(42);
  const phnum = file.readUInt16LE(44);
  if (phentsize < 32 || phoff + phnum * phentsize > file.length) throw bad("truncated: program headers (e_phoff, e_phnum) run past the end of the file");
  const segments: MultibootSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    if (file.readUInt32LE(o) !== PT_LOAD) continue;
    const [offset, paddr, filesz, memsz] = [4, 12, 16, 20].map((f) => file.readUInt32LE(o + f));
    if (memsz === 0) continue;
    if (filesz > memsz) throw bad(`segment ${i}: p_filesz 0x${filesz.toString(16)} exceeds p_memsz 0x${memsz.toString(16)}`);
    if (offset + filesz > file.length) throw bad(`truncated: segment ${i} (p_offset + p_filesz) runs past the end of the file`);
    segments.push({ gpa: paddr, data: file.subarray(offset, offset + filesz), memSize: memsz });
  }
  if (!segments.length) throw bad("no loadable segments (PT_LOAD)");
  segments.sort((a, b) => a.gpa - b.gpa);
  for (let i = 1; i < segments.length; i++)
    if (segments[i - 1].gpa + segments[i - 1].memSize > segments[i].gpa) throw bad(`segments overlap at 0x${segments[i].gpa.toString(16)}`);
  return { entry, segments };
}

export interface MultibootModule {
  data: Buffer;
  /** The module's string (conventionally its path and arguments) */
  cmdline: string;
}

export interface MultibootBoot {
  /** Everything to copy into RAM: the kernel's segments (memSize zero-filled), modules, info */
  writes: Array<{ gpa: number; data: Buffer; memSize?: number }>;
  /** EBX at entry */
  infoGpa: number;
  entry: number;
  /** Where each module landed: [start, end) */
  modules: Array<{ start: number; end: number }>;
}

export interface MultibootBootOptions {
  image: MultibootImage;
  /** The guest-visible memory map (pcMemoryMap of the RAM ranges) */
  memoryMap: MemoryMapEntry[];
  cmdline: string;
  modules?: MultibootModule[];
}

/**
 * Place the modules and the information block above the image (page aligned), in the RAM that
 * starts at 1 MiB, and lay out the info block with mem_lower/mem_upper, the memory map, the
 * command line, the modules and the loader name.
 */
export function buildMultibootBoot(opts: MultibootBootOptions): MultibootBoot {
  const { image, memoryMap } = opts;
  const name = image.name;
  const lowRam = memoryMap.find((e) => e.base === 0n && e.type === 1);
  const upperRam = memoryMap.find((e) => e.base === 0x100000n && e.type === 1);
  if (!lowRam || !upperRam) throw new BadImageError(name, "the memory map has no RAM at 0 and at 1 MiB");
  const upperEnd = Number(upperRam.base + upperRam.size);
  for (const s of image.segments)
    if (s.gpa < 0x100000 ? s.gpa + s.memSize > Number(lowRam.size) : s.gpa + s.memSize > upperEnd)
      throw new BadImageError(name, `segment [0x${s.gpa.toString(16)}, 0x${(s.gpa + s.memSize).toString(16)}) lies outside RAM below 4 GiB (raise --mem)`);

  const writes: MultibootBoot["writes"] = image.segments.map((s) => ({ gpa: s.gpa, data: s.data, memSize: s.memSize }));
  let next = alignUp(BigInt(Math.max(image.end, 0x100000)), 0x1000n);
  const take = (what: string, size: number, align = 0x1000n): number => {
    const at = alignUp(next, align);
    if (at + BigInt(size) > BigInt(upperEnd))
      throw new BadImageError(name, `${what} (${size} bytes) does not fit in RAM below 4 GiB after the kernel (raise --mem)`);
    next = at + BigInt(size);
    return Number(at);
  };
  const modules = (opts.modules ?? []).map((m, i) => {
    const start = take(`module ${i}`, m.data.length);
    writes.push({ gpa: start, data: m.data });
    return { start, end: start + m.data.length };
  });

  const strings: Buffer[] = [];
  const stringTable = (s: string) => { strings.push(Buffer.from(s + "\0", "utf8")); };
  stringTable(opts.cmdline);
  stringTable(LOADER_NAME);
  (opts.modules ?? []).forEach((m) => stringTable(m.cmdline));
  const mmapBytes = memoryMap.length * MMAP_ENTRY_SIZE;
  const modBytes = modules.length * MODULE_ENTRY_SIZE;
  const stringBytes = strings.reduce((n, s) => n + s.length, 0);
  const infoGpa = take("the multiboot information block", MB_INFO_SIZE + mmapBytes + modBytes + stringBytes);
  const block = Buffer.alloc(MB_INFO_SIZE + mmapBytes + modBytes + stringBytes);
  const mmapAt = MB_INFO_SIZE;
  const modsAt = mmapAt + mmapBytes;
  let stringAt = modsAt + modBytes;
  const stringGpas = strings.map((s) => {
    s.copy(block, stringAt);
    stringAt += s.length;
    return infoGpa + stringAt - s.length;
  });

  block.writeUInt32LE(MbInfoFlag.MEMORY | MbInfoFlag.CMDLINE | MbInfoFlag.MODS | MbInfoFlag.MMAP | MbInfoFlag.LOADER_NAME, 0);
  block.writeUInt32LE(Number(Math.min(Number(lowRam.size), 0xa0000) >> 10), 4); // mem_lower, KiB below 640 KiB
  block.writeUInt32LE((upperEnd - 0x100000) >>> 10, 8); // mem_upper, KiB from 1 MiB to the first hole
  block.writeUInt32LE(stringGpas[0], 16);
  block.writeUInt32LE(modules.length, 20);
  block.writeUInt32LE(infoGpa + modsAt, 24);
  block.writeUInt32LE(mmapBytes, 44);
  block.writeUInt32LE(infoGpa + mmapAt, 48);
  block.writeUInt32LE(stringGpas[1], 64);
  memoryMap.forEach((e, i) => {
    const o = mmapAt + i * MMAP_ENTRY_SIZE;
    block.writeUInt32LE(MMAP_ENTRY_SIZE - 4, o); // size, not counting itself
    block.writeBigUInt64LE(e.base, o + 4);
    block.writeBigUInt64LE(e.size, o + 12);
    block.writeUInt32LE(e.type, o + 20);
  });
  modules.forEach((m, i) => {
    const o = modsAt + i * MODULE_ENTRY_SIZE;
    block.writeUInt32LE(m.start, o);
    block.writeUInt32LE(m.end, o + 4);
    block.writeUInt32LE(stringGpas[2 + i], o + 8);
  });
  writes.push({ gpa: infoGpa, data: block });
  return { writes, infoGpa, entry: image.entry, modules };
}
