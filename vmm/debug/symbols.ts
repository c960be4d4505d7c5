// Symbols of a guest ELF: address -> "tsvmm_main+0x3d (guest/guests/convert.c:42)" and
// name -> address, from .symtab and, where the ELF has it, .debug_line.
import * as path from "node:path";
import { LineTable, SourceLine } from "./dwarfLines";
import { lastAtOrBelow } from "./addressSearch";

export interface ElfSymbol {
  name: string;
  addr: bigint;
  size: bigint;
}

const SHT_SYMTAB = 2;
const STT_NOTYPE = 0;
const STT_OBJECT = 1;
const STT_FUNC = 2;
const SHN_UNDEF = 0;
const SHN_LORESERVE = 0xff00;
const SHF_ALLOC = 0x2;

export class SymbolTable {
  /** sorted by address */
  private readonly sorted: ElfSymbol[];
  private readonly byName = new Map<string, ElfSymbol>();

  constructor(
    symbols: ElfSymbol[],
    private readonly lines?: LineTable,
  ) {
    // At one address a sized symbol (a function, an object) is preferred to a linker-script label
    const sized = (s: ElfSymbol) => (s.size > 0n ? 1 : 0);
    this.sorted = [...symbols].sort((a, b) => (a.addr < b.addr ? -1 : a.addr > b.addr ? 1 : sized(a) - sized(b)));
    // A name in several images (the guest and the firmware): the first one given wins
    for (const s of symbols) if (!this.byName.has(s.name)) this.byName.set(s.name, s);
  }

  /** Symbols from an ELF64 file; an empty table when it has none or they are malformed. */
  static fromElf(file: Buffer): SymbolTable {
    return new SymbolTable(readElfSymbols(file));
  }

  get size(): number {
    return this.sorted.length;
  }

  lookup(name: string): ElfSymbol | undefined {
    return this.byName.get(name);
  }

  /** The symbol containing addr (or the nearest one below it, for symbols without a size) */
  containing(addr: bigint): ElfSymbol | undefined {
    const found = lastAtOrBelow(this.sorted, addr, (s) => s.addr);
    if (!found) return undefined;
    if (found.size > 0n && addr >= found.addr + found.size) return undefined;
    return found;
  }

  /** "name+0x3d (file:line)", "name", or the bare hex address when no symbol covers it;
   *  file:line where the ELF has line information for addr */
  describe(addr: bigint): string {
    const s = this.containing(addr);
    const where = s ? (addr === s.addr ? s.name : `${s.name}+0x${(addr - s.addr).toString(16)}`) : "0x" + addr.toString(16);
    const line = this.sourceLine(addr);
    return line ? `${where} (${displayPath(line.file)}:${line.line})` : where;
  }

  sourceLine(addr: bigint): SourceLine | undefined {
    return this.lines?.lookup(addr);
  }

  /** Names starting with prefix (monitor completion) */
  complete(prefix: string): string[] {
    return [...this.byName.keys()].filter((n) => n.startsWith(prefix)).sort();
  }
}

/** Relative to the working directory when the file lies below it (guest/guests/convert.c) */
export function displayPath(file: string): string {
  if (!path.isAbsolute(file)) return file;
  const relative = path.relative(process.cwd(), file);
  return relative && !relative.startsWith("..") && !path.isAbsolute(relative) ? relative : file;
}

export function readElfSymbols(file: Buffer): ElfSymbol[] {
  if (file.length < 64 || file.readUInt32BE(0) !== 0x7f454c46 || file[4] !== 2) return [];
  const shoff = Number(file.readBigUInt64LE(40));
  const shentsize = file.readUInt16LE(58);
  const shnum = file.readUInt16LE(60);
  if (shoff === 0 || shentsize < 64 || shoff + shnum * shentsize > file.length) return [];
  const section = (i: number) => {
    const o = shoff + i * shentsize;
    return {
      type: file.readUInt32LE(o + 4),
      flags: Number(file.readBigUInt64LE(o + 8)),
      offset: Number(file.readBigUInt64LE(o + 24)),
      size: Number(file.readBigUInt64LE(o + 32)),
      link: file.readUInt32LE(o + 40),
      entsize: Number(file.readBigUInt64LE(o + 56)),
    };
  };
  const out: ElfSymbol[] = [];
  for (let i = 0; i < shnum; i++) {
    const symtab = section(i);
    if (symtab.type !== SHT_SYMTAB || symtab.link >= shnum) continue;
    const strtab = section(symtab.link);
    const entsize = symtab.entsize || 24;
    if (symtab.offset + symtab.size > file.length || strtab.offset + strtab.size > file.length || entsize < 24) continue;
    for (let o = symtab.offset; o + 24 <= symtab.offset + symtab.size; o += entsize) {
      const type = file[o + 4] & 0xf;
      const shndx = file.readUInt16LE(o + 6);
      if ((type !== STT_FUNC && type !== STT_OBJECT && type !== STT_NOTYPE) || shndx === SHN_UNDEF || shndx >= SHN_LORESERVE) continue;
      if (shndx >= shnum || !(section(shndx).flags & SHF_ALLOC)) continue; // not in the loaded image
      const nameOff = strtab.offset + file.readUInt32LE(o);
      if (nameOff >= strtab.offset + strtab.size) continue;
      const end = file.indexOf(0, nameOff);
      const name = file.toString("latin1", nameOff, end < 0 ? strtab.offset + strtab.size : end);
      if (!name || name.startsWith(".")) continue;
      out.push({ name, addr: file.readBigUInt64LE(o + 8), size: file.readBigUInt64LE(o + 16) });
    }
  }
  return out;
}
