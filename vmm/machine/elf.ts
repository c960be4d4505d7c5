// ELF64 x86-64 image parsing with validation. A bad image is refused before anything starts.
import { BadImageError } from "../errors";
import { ElfSymbol, readElfSymbols } from "../debug/symbols";
import { DwarfError, LineTable } from "../debug/dwarfLines";

export interface LoadSegment {
  gpa: bigint;
  /** bytes from the file (p_filesz) */
  data: Buffer;
  /** bytes in memory (p_memsz >= data.length; the rest is zero) */
  memSize: bigint;
}

export interface ElfImage {
  name: string;
  entry: bigint;
  segments: LoadSegment[];
  /** Contents of the `.tsvmm.description` section, if any */
  description?: string;
  /** The image has a `.tsvmm.private` section: by default its RAM above the image starts private */
  wantsPrivate: boolean;
  /** .symtab functions and objects (for debuggers; empty when stripped) */
  symbols: ElfSymbol[];
  /** .debug_line: address -> file:line (absent without -g, or when it is malformed) */
  lines?: LineTable;
  /** why .debug_line could not be read (the debugger prints it once and uses symbol+offset) */
  lineWarning?: string;
}

const EM_X86_64 = 62;
const ET_EXEC = 2;
const PT_LOAD = 1;

export function parseElf(name: string, file: Buffer): ElfImage {
  const bad = (problem: string) => new BadImageError(name, problem);
  if (file.length < 64) throw bad(`truncated: ${file.length} bytes is smaller than an ELF header`);
  if (file.readUInt32BE(0) !== 0x7f454c46) throw bad("not an ELF file (bad magic)");
  if (file[4] !== 2) throw bad(`not a 64-bit ELF (EI_CLASS=${file[4]})`);
  if (file[5] !== 1) throw bad("not little-endian");
  const type = file.readUInt16LE(16);
  const machine = file.readUInt16LE(18);
  if (machine !== EM_X86_64) throw bad(`wrong architecture: e_machine=${machine}, expected ${EM_X86_64} (x86-64)`);
  if (type !== ET_EXEC) throw bad(`not a static executable (e_type=${type}); link with -static -no-pie`);
  const entry = file.readBigUInt64LE(24);
  const phoff = Number(file.readBigUInt64LE(32));
  const shoff = Number(file.readBigUInt64LE(40));
  const phentsize = file.readUInt16LE(54);
  const phnum = file.readUInt16LE(56);
  const shentsize = file.readUInt16LE(58);
  const shnum = file.readUInt16LE(60);
  const shstrndx = file.readUInt16LE(62);
  if (phentsize < 56 || phoff + phnum * phentsize > file.length) throw bad("truncated: program headers run past the end of the file");

  const segments: LoadSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    if (file.readUInt32LE(o) !== PT_LOAD) continue;
    const offset = file.readBigUInt64LE(o + 8);
    const paddr = file.readBigUInt64LE(o + 24);
    const filesz = file.readBigUInt64LE(o + 32);
    const memsz = file.readBigUInt64LE(o + 40);
    if (memsz === 0n) continue;
    if (filesz > memsz) throw bad(`segment ${i}: file size 0x${filesz.toString(16)} exceeds memory size 0x${memsz.toString(16)}`);
    if (offset + filesz > BigInt(file.length))
      throw bad(`truncated: segment ${i} needs bytes up to 0x${(offset + filesz).toString(16)} but the file has 0x${file.length.toString(16)}`);
    segments.push({ gpa: paddr, data: file.subarray(Number(offset), Number(offset + filesz)), memSize: memsz });
  }
  if (segments.length === 0) throw bad("no loadable segments");
  const sorted = [...segments].sort((a, b) => (a.gpa < b.gpa ? -1 : 1));
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    if (prev.gpa + prev.memSize > sorted[i].gpa)
      throw bad(`segments overlap at 0x${sorted[i].gpa.toString(16)}`);
  }
  if (!segments.some((s) => entry >= s.gpa && entry < s.gpa + s.memSize))
    throw bad(`entry point 0x${entry.toString(16)} is outside every loadable segment`);

  const sections = readSections(file, shoff, shentsize, shnum, shstrndx);
  const image: ElfImage = {
    name,
    entry,
    segments: sorted,
    description: sections.get(".tsvmm.description")?.toString("utf8").split("\0")[0].trim(),
    wantsPrivate: sections.has(".tsvmm.private"),
    symbols: readElfSymbols(file),
  };
  // The line table is read when a debugger or a report first asks: for the hello guest it is
  // 7 of the 10 ms parseElf took at start-up (docs/startup.md).
  let read: Pick<ElfImage, "lines" | "lineWarning"> | undefined;
  const lines = () => (read ??= readLines(name, sections));
  Object.defineProperties(image, {
    lines: { get: () => lines().lines, enumerable: true },
    lineWarning: { get: () => lines().lineWarning, enumerable: true },
  });
  return image;
}

function readLines(name: string, sections: Map<string, Buffer>): Pick<ElfImage, "lines" | "lineWarning"> {
  const debugLine = sections.get(".debug_line");
  if (!debugLine) return {};
  try {
    return { lines: LineTable.parse(debugLine, { lineStr: sections.get(".debug_line_str"), str: sections.get(".debug_str") }) };
  } catch (err) {
    if (!(err instanceof DwarfError)) throw err;
    return { lineWarning: `${name}: its line information is malformed (${err.message}); stops show symbol+offset without file:line` };
  }
}

const WANTED_SECTIONS = /^(\.tsvmm\.|\.debug_line$|\.debug_line_str$|\.debug_str$)/;

/** The tsvmm and line-information sections (name -> contents); malformed section tables are ignored. */
function readSections(file: Buffer, shoff: number, shentsize: number, shnum: number, shstrndx: number): Map<string, Buffer> {
  const found = new Map<string, Buffer>();
  if (shoff === 0 || shentsize < 64 || shoff + shnum * shentsize > file.length || shstrndx >= shnum) return found;
  const section = (i: number) => {
    const o = shoff + i * shentsize;
    return { name: file.readUInt32LE(o), offset: Number(file.readBigUInt64LE(o + 24)), size: Number(file.readBigUInt64LE(o + 32)) };
  };
  const strtab = section(shstrndx);
  if (strtab.offset + strtab.size > file.length) return found;
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const nameEnd = file.indexOf(0, strtab.offset + s.name);
    const sectionName = file.toString("latin1", strtab.offset + s.name, nameEnd);
    if (!WANTED_SECTIONS.test(sectionName)) continue;
    const truncated = s.offset + s.size > file.length;
    // A truncated .debug_ section is kept cut short: the line reader reports it as malformed.
    if (truncated && !sectionName.startsWith(".debug_")) continue;
    found.set(sectionName, file.subarray(Math.min(s.offset, file.length), Math.min(s.offset + s.size, file.length)));
  }
  return found;
}
