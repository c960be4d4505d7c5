// DWARF line information (.debug_line, versions 2 to 5): address -> file:line, for the stop
// reports. Only the line-number program is read; .debug_info is not needed for it. A malformed
// section throws DwarfError; callers fall back to symbol+offset.
import { lastAtOrBelow } from "./addressSearch";

export class DwarfError extends Error {}

export interface SourceLine {
  /** as the compiler recorded it: absolute when it was compiled with an absolute path */
  file: string;
  line: number;
}

interface LineRange extends SourceLine {
  start: bigint;
  /** exclusive */
  end: bigint;
}

/** Extra string sections the line program may point into */
export interface LineStrings {
  /** .debug_line_str (DW_FORM_line_strp) */
  lineStr?: Buffer;
  /** .debug_str (DW_FORM_strp) */
  str?: Buffer;
}

// DW_LNS_*, DW_LNE_*, DW_LNCT_*, DW_FORM_* (DWARF 5, section 6.2 and 7.5)
const LNS = { copy: 1, advancePc: 2, advanceLine: 3, setFile: 4, setColumn: 5, negateStmt: 6, setBasicBlock: 7, constAddPc: 8, fixedAdvancePc: 9 } as const;
const LNE = { endSequence: 1, setAddress: 2, defineFile: 3 } as const;
const LNCT = { path: 1, directoryIndex: 2 } as const;
const FORM = { block: 0x09, data1: 0x0b, data2: 0x05, data4: 0x06, data8: 0x07, data16: 0x1e, string: 0x08, strp: 0x0e, lineStrp: 0x1f, udata: 0x0f, sdata: 0x0d, block1: 0x0a } as const;

/** A bounds-checked little-endian reader over one section */
class Cursor {
  constructor(
    readonly buf: Buffer,
    public pos: number,
    readonly end: number,
    private readonly what: string,
  ) {}

  private need(n: number): number {
    if (this.pos + n > this.end) throw new DwarfError(`${this.what}: truncated at offset 0x${this.pos.toString(16)}`);
    const at = this.pos;
    this.pos += n;
    return at;
  }
  u8(): number {
    return this.buf[this.need(1)];
  }
  s8(): number {
    return this.buf.readInt8(this.need(1));
  }
  u16(): number {
    return this.buf.readUInt16LE(this.need(2));
  }
  u32(): number {
    return this.buf.readUInt32LE(this.need(4));
  }
  u64(): bigint {
    return this.buf.readBigUInt64LE(this.need(8));
  }
  /** 4 or 8 bytes (the 32- or 64-bit DWARF format) */
  offset(size: number): number {
    return size === 8 ? Number(this.u64()) : this.u32();
  }
  address(size: number): bigint {
    if (size === 8) return this.u64();
    if (size === 4) return BigInt(this.u32());
    throw new DwarfError(`${this.what}: unsupported address size ${size}`);
  }
  skip(n: number | bigint): void {
    this.need(Number(n));
  }
  uleb(): bigint {
    let result = 0n;
    for (let shift = 0n; ; shift += 7n) {
      const b = this.u8();
      result |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return result;
      if (shift > 63n) throw new DwarfError(`${this.what}: LEB128 number too long at 0x${this.pos.toString(16)}`);
    }
  }
  sleb(): bigint {
    let result = 0n;
    let shift = 0n;
    let b: number;
    do {
      b = this.u8();
      result |= BigInt(b & 0x7f) << shift;
      shift += 7n;
      if (shift > 70n) throw new DwarfError(`${this.what}: LEB128 number too long at 0x${this.pos.toString(16)}`);
    } while (b & 0x80);
    return b & 0x40 ? result - (1n << shift) : result;
  }
  cstring(): string {
    const nul = this.buf.indexOf(0, this.pos);
    if (nul < 0 || nul >= this.end) throw new DwarfError(`${this.what}: unterminated string at 0x${this.pos.toString(16)}`);
    const s = this.buf.toString("utf8", this.pos, nul);
    this.pos = nul + 1;
    return s;
  }
}

function stringAt(section: Buffer | undefined, name: string, offset: number): string {
  if (!section) throw new DwarfError(`.debug_line points into ${name}, which the file does not have`);
  if (offset >= section.length) throw new DwarfError(`.debug_line points past the end of ${name} (offset 0x${offset.toString(16)})`);
  const nul = section.indexOf(0, offset);
  return section.toString("utf8", offset, nul < 0 ? section.length : nul);
}

const isAbsolute = (p: string) => p.startsWith("/");
const join = (dir: string | undefined, name: string) => (!dir || isAbsolute(name) ? name : `${dir.replace(/\/$/, "")}/${name}`);

/** The address -> line map of every line-number program in a .debug_line section */
export class LineTable {
  private constructor(private readonly ranges: LineRange[]) {}

  static parse(debugLine: Buffer, strings: LineStrings = {}): LineTable {
    const ranges: LineRange[] = [];
    for (let pos = 0; pos < debugLine.length; ) pos = readUnit(debugLine, pos, strings, ranges);
    ranges.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    return new LineTable(ranges);
  }

  /** One table over several images (the guest and the firmware; their addresses do not overlap) */
  static merge(tables: LineTable[]): LineTable {
    return new LineTable(tables.flatMap((t) => t.ranges).sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0)));
  }

  get size(): number {
    return this.ranges.length;
  }

  /** The row whose address range contains addr */
  lookup(addr: bigint): SourceLine | undefined {
    const found = lastAtOrBelow(this.ranges, addr, (r) => r.start);
    if (!found || addr >= found.end) return undefined;
    return { file: found.file, line: found.line };
  }
}

/** One unit (header and program) at pos; returns where the next one starts */
function readUnit(buf: Buffer, pos: number, strings: LineStrings, out: LineRange[]): number {
  const what = `.debug_line unit at 0x${pos.toString(16)}`;
  const head = new Cursor(buf, pos, buf.length, what);
  let length = head.u32();
  let offsetSize = 4;
  if (length === 0xffffffff) {
    length = Number(head.u64());
    offsetSize = 8;
  } else if (length >= 0xfffffff0) throw new DwarfError(`${what}: reserved unit length 0x${length.toString(16)}`);
  const end = head.pos + length;
  if (end > buf.length) throw new DwarfError(`${what}: its length 0x${length.toString(16)} runs past the end of the section`);
  const c = new Cursor(buf, head.pos, end, what);
  const version = c.u16();
  if (version < 2 || version > 5) throw new DwarfError(`${what}: unsupported DWARF version ${version}`);
  let addressSize = 8;
  if (version >= 5) {
    addressSize = c.u8();
    c.u8(); // segment selector size
  }
  const headerLength = c.offset(offsetSize);
  const programStart = c.pos + headerLength;
  if (programStart > end) throw new DwarfError(`${what}: header length runs past the unit`);
  const minInstLength = c.u8();
  if (version >= 4) c.u8(); // maximum operations per instruction: 1 on x86 (no VLIW)
  const defaultIsStmt = c.u8();
  void defaultIsStmt;
  const lineBase = c.s8();
  const lineRange = c.u8();
  const opcodeBase = c.u8();
  if (lineRange === 0) throw new DwarfError(`${what}: line_range is 0`);
  if (opcodeBase === 0) throw new DwarfError(`${what}: opcode_base is 0`);
  const argCounts = [0];
  for (let i = 1; i < opcodeBase; i++) argCounts.push(c.u8());

  let files: string[];
  if (version >= 5) {
    const dirs = readEntries(c, offsetSize, strings, what).map((e) => e.path);
    files = readEntries(c, offsetSize, strings, what).map((e) => {
      const dir = dirs[e.dir];
      if (e.dir >= dirs.length) throw new DwarfError(`${what}: file ${e.path} names directory ${e.dir} of ${dirs.length}`);
      return join(isAbsolute(dir) || e.dir === 0 ? dir : join(dirs[0], dir), e.path);
    });
  } else {
    const dirs = [""]; // 0: the compilation directory, which only .debug_info knows
    for (let d = c.cstring(); d; d = c.cstring()) dirs.push(d);
    files = [""]; // file numbers start at 1 before DWARF 5
    for (let f = c.cstring(); f; f = c.cstring()) {
      const dir = Number(c.uleb());
      c.uleb(); // mtime
      c.uleb(); // length
      files.push(join(dirs[dir], f));
    }
  }
  runProgram(new Cursor(buf, programStart, end, what), { version, minInstLength, lineBase, lineRange, opcodeBase, argCounts, files, addressSize }, out, what);
  return end;
}

/** DWARF 5 directory or file entries: a format (content type, form pairs), then the entries */
function readEntries(c: Cursor, offsetSize: number, strings: LineStrings, what: string): Array<{ path: string; dir: number }> {
  const formatCount = c.u8();
  const format: Array<[number, number]> = [];
  for (let i = 0; i < formatCount; i++) format.push([Number(c.uleb()), Number(c.uleb())]);
  const count = Number(c.uleb());
  const entries: Array<{ path: string; dir: number }> = [];
  for (let i = 0; i < count; i++) {
    const entry = { path: "", dir: 0 };
    for (const [type, form] of format) {
      const value = readForm(c, form, offsetSize, strings, what);
      if (type === LNCT.path) {
        if (typeof value !== "string") throw new DwarfError(`${what}: a path with a non-string form 0x${form.toString(16)}`);
        entry.path = value;
      } else if (type === LNCT.directoryIndex) {
        if (typeof value !== "bigint") throw new DwarfError(`${what}: a directory index with a non-number form 0x${form.toString(16)}`);
        entry.dir = Number(value);
      }
    }
    entries.push(entry);
  }
  return entries;
}

function readForm(c: Cursor, form: number, offsetSize: number, strings: LineStrings, what: string): string | bigint | undefined {
  switch (form) {
    case FORM.string:
      return c.cstring();
    case FORM.lineStrp:
      return stringAt(strings.lineStr, ".debug_line_str", c.offset(offsetSize));
    case FORM.strp:
      return stringAt(strings.str, ".debug_str", c.offset(offsetSize));
    case FORM.udata:
      return c.uleb();
    case FORM.sdata:
      return c.sleb();
    case FORM.data1:
      return BigInt(c.u8());
    case FORM.data2:
      return BigInt(c.u16());
    case FORM.data4:
      return BigInt(c.u32());
    case FORM.data8:
      return c.u64();
    case FORM.data16: // the MD5 of a file
      c.skip(16);
      return undefined;
    case FORM.block:
      c.skip(c.uleb());
      return undefined;
    case FORM.block1:
      c.skip(c.u8());
      return undefined;
    default:
      throw new DwarfError(`${what}: unsupported form 0x${form.toString(16)} in a file entry`);
  }
}

interface Header {
  version: number;
  minInstLength: number;
  lineBase: number;
  lineRange: number;
  opcodeBase: number;
  argCounts: number[];
  files: string[];
  addressSize: number;
}

/** The line-number state machine; each row covers [its address, the next row's address) */
function runProgram(c: Cursor, h: Header, out: LineRange[], what: string): void {
  let address = 0n;
  let file = 1;
  let line = 1;
  let previous: { address: bigint; file: number; line: number } | undefined;
  const fileName = (n: number) => {
    const name = h.files[n];
    if (name === undefined) throw new DwarfError(`${what}: row names file ${n}, but the header lists ${h.files.length}`);
    return name;
  };
  let sequence: LineRange[] = [];
  const emit = (endSequence: boolean) => {
    // Several rows at one address: the last one describes the code there.
    if (previous && address > previous.address) sequence.push({ start: previous.address, end: address, file: fileName(previous.file), line: previous.line });
    previous = endSequence ? undefined : { address, file, line };
    if (!endSequence) return;
    // A sequence at address 0 is code the linker discarded (--gc-sections): nothing runs there.
    if (sequence.length && sequence[0].start !== 0n) out.push(...sequence);
    sequence = [];
  };
  const reset = () => {
    address = 0n;
    file = 1;
    line = 1;
  };
  while (c.pos < c.end) {
    const op = c.u8();
    if (op >= h.opcodeBase) {
      const adjusted = op - h.opcodeBase;
      address += BigInt(Math.floor(adjusted / h.lineRange) * h.minInstLength);
      line += h.lineBase + (adjusted % h.lineRange);
      emit(false);
      continue;
    }
    switch (op) {
      case 0: {
        const length = Number(c.uleb());
        if (length === 0) throw new DwarfError(`${what}: empty extended opcode at 0x${(c.pos - 1).toString(16)}`);
        const next = c.pos + length;
        if (next > c.end) throw new DwarfError(`${what}: extended opcode runs past the unit`);
        const sub = c.u8();
        if (sub === LNE.endSequence) {
          emit(true);
          reset();
        } else if (sub === LNE.setAddress) address = c.address(length - 1);
        else if (sub === LNE.defineFile && h.version < 5) {
          const name = c.cstring();
          c.uleb();
          h.files.push(name);
        }
        c.pos = next; // set_discriminator and vendor opcodes: skipped
        break;
      }
      case LNS.copy:
        emit(false);
        break;
      case LNS.advancePc:
        address += c.uleb() * BigInt(h.minInstLength);
        break;
      case LNS.advanceLine:
        line += Number(c.sleb());
        break;
      case LNS.setFile:
        file = Number(c.uleb());
        break;
      case LNS.constAddPc:
        address += BigInt(Math.floor((255 - h.opcodeBase) / h.lineRange) * h.minInstLength);
        break;
      case LNS.fixedAdvancePc:
        address += BigInt(c.u16());
        break;
      case LNS.setColumn:
      case LNS.negateStmt:
      case LNS.setBasicBlock:
      default:
        // known opcodes without state we keep, and unknown standard opcodes: skip their arguments
        for (let i = 0; i < h.argCounts[op]; i++) c.uleb();
    }
  }
}
