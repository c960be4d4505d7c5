// The .debug_line reader against real ELFs, cross-checked with binutils' addr2line: the shipped
// guests and firmware (gcc's default, DWARF 5) and a small program built here with -gdwarf-4.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { execFileSync } from "node:child_process";
import { parseElf } from "../../vmm/machine/elf";
import { DwarfError, LineTable } from "../../vmm/debug/dwarfLines";
import { displayPath, SymbolTable } from "../../vmm/debug/symbols";
import { GUEST_DIR } from "../../vmm/guests";
import { ROOT } from "../support/cli";

const FIRMWARE = path.join(ROOT, "build", "firmware", "firmware.elf");
const SHIPPED = [...fs.readdirSync(GUEST_DIR).filter((f) => f.endsWith(".elf") && f !== "multiboot.elf").map((f) => path.join(GUEST_DIR, f)), FIRMWARE];

/** Every function symbol (nm: t/T) with its size */
function functions(elf: string): Array<{ name: string; addr: bigint; size: bigint }> {
  return execFileSync("nm", ["-S", elf], { encoding: "utf8" })
    .split("\n")
    .map((l) => /^([0-9a-f]+) ([0-9a-f]+) [tT] (\S+)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ name: m[3], addr: BigInt("0x" + m[1]), size: BigInt("0x" + m[2]) }));
}

/** Each function's first byte, a byte in its middle and its last byte, against addr2line */
function crossCheck(elf: string): number {
  const image = parseElf(elf, fs.readFileSync(elf));
  assert.equal(image.lineWarning, undefined, `${elf}: ${image.lineWarning}`);
  assert.ok(image.lines && image.lines.size > 0, `${elf} has line information (built with -g)`);
  const addrs = functions(elf).flatMap((f) => (f.size > 2n ? [f.addr, f.addr + f.size / 2n, f.addr + f.size - 1n] : [f.addr]));
  assert.ok(addrs.length > 0, `${elf} has function symbols`);
  const expected = execFileSync("addr2line", ["-e", elf, ...addrs.map((a) => "0x" + a.toString(16))], { encoding: "utf8" }).trim().split("\n");
  assert.equal(expected.length, addrs.length);
  addrs.forEach((addr, i) => {
    const found = image.lines!.lookup(addr);
    const ours = found ? `${found.file}:${found.line}` : "??:0";
    assert.equal(ours, expected[i].replace(/ \(discriminator \d+\)$/, ""), `${path.basename(elf)} 0x${addr.toString(16)}`);
  });
  return addrs.length;
}

test("every function of the shipped guests and firmware maps to the file:line addr2line gives (DWARF 5)", () => {
  let checked = 0;
  for (const elf of SHIPPED) checked += crossCheck(elf);
  assert.ok(checked > 300, `checked ${checked} addresses`);
  const version = execFileSync("readelf", ["--debug-dump=rawline", path.join(GUEST_DIR, "convert.elf")], { encoding: "utf8" });
  assert.match(version, /DWARF Version:\s+5/);
});

test("a program built with -gdwarf-4 (include_directories and file_names, no .debug_line_str) matches addr2line", (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-dwarf4-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const source = path.join(dir, "lines.c");
  fs.writeFileSync(
    source,
    [
      "static volatile int sink;",
      "int twice(int x) { return x * 2; }",
      "int loop(int n) {",
      "  int s = 0;",
      "  for (int i = 0; i < n; i++)",
      "    s += twice(i) ^ sink;",
      "  return s;",
      "}",
      "void _start(void) { sink = loop(sink); for (;;) ; }",
      "",
    ].join("\n"),
  );
  const object = path.join(dir, "lines.o");
  const elf = path.join(dir, "lines.elf");
  execFileSync("gcc", ["-gdwarf-4", "-O2", "-ffreestanding", "-fno-pic", "-fno-asynchronous-unwind-tables", "-c", "-o", object, source]);
  execFileSync("ld", ["-static", "-nostdlib", "-Ttext=0x100000", "-o", elf, object]);
  assert.match(execFileSync("readelf", ["--debug-dump=rawline", elf], { encoding: "utf8" }), /DWARF Version:\s+4/);
  assert.ok(crossCheck(elf) >= 3);
});

test("stops are described as symbol+offset (file:line), and without line information as symbol+offset", () => {
  const elf = path.join(GUEST_DIR, "convert.elf");
  const image = parseElf(elf, fs.readFileSync(elf));
  const main = image.symbols.find((s) => s.name === "tsvmm_main")!;
  const line = execFileSync("addr2line", ["-e", elf, "0x" + (main.addr + 0x10n).toString(16)], { encoding: "utf8" }).trim().replace(/ \(discriminator \d+\)$/, "");
  const withLines = new SymbolTable(image.symbols, image.lines);
  assert.equal(withLines.describe(main.addr + 0x10n), `tsvmm_main+0x10 (${displayPath(line)})`);
  assert.equal(displayPath(path.join(process.cwd(), "guest", "x.c")), path.join("guest", "x.c"), "below the working directory: relative");
  assert.equal(displayPath("/elsewhere/x.c"), process.cwd() === "/" ? "elsewhere/x.c" : "/elsewhere/x.c", "elsewhere: as recorded");
  assert.equal(new SymbolTable(image.symbols).describe(main.addr + 0x10n), "tsvmm_main+0x10");
  // Line programs of functions --gc-sections discarded sit at address 0: no line there (as addr2line says)
  assert.equal(execFileSync("addr2line", ["-e", elf, "0x10"], { encoding: "utf8" }).trim(), "??:0");
  assert.equal(withLines.describe(0x10n), "0x10", "no symbol and no line: the bare address");
});

/** The file offset and size of a section, from readelf */
function sectionOf(elf: string, name: string): { offset: number; size: number } {
  const m = new RegExp(`\\${name}\\s+PROGBITS\\s+[0-9a-f]+ ([0-9a-f]+) ([0-9a-f]+)`).exec(execFileSync("readelf", ["-SW", elf], { encoding: "utf8" }));
  assert.ok(m, `${elf} has ${name}`);
  return { offset: parseInt(m[1], 16), size: parseInt(m[2], 16) };
}

test("malformed .debug_line: one clear warning, no line table, and symbol+offset still works", () => {
  const elf = path.join(GUEST_DIR, "hello.elf");
  const file = fs.readFileSync(elf);
  const { offset } = sectionOf(elf, ".debug_line");
  const cases: Array<[string, (b: Buffer) => void, RegExp]> = [
    ["version 9", (b) => b.writeUInt16LE(9, offset + 4), /unsupported DWARF version 9/],
    ["unit length past the end", (b) => b.writeUInt32LE(0x7fffff00, offset), /runs past the end of the section/],
    ["line_range 0", (b) => b.writeUInt8(0, offset + 4 + 2 + 2 + 4 + 4), /line_range is 0/],
  ];
  for (const [what, corrupt, message] of cases) {
    const bad = Buffer.from(file);
    corrupt(bad);
    const image = parseElf("hello.elf", bad);
    assert.equal(image.lines, undefined, what);
    assert.match(image.lineWarning ?? "", message, what);
    assert.match(image.lineWarning ?? "", /^hello\.elf: its line information is malformed .*symbol\+offset/, what);
    const main = image.symbols.find((s) => s.name === "tsvmm_main")!;
    assert.equal(new SymbolTable(image.symbols, image.lines).describe(main.addr + 3n), "tsvmm_main+0x3", what);
  }
});

test("corrupted line programs either parse or throw DwarfError, never anything else", () => {
  const elf = path.join(GUEST_DIR, "convert.elf");
  const file = fs.readFileSync(elf);
  const { offset, size } = sectionOf(elf, ".debug_line");
  const lineStr = sectionOf(elf, ".debug_line_str");
  const section = file.subarray(offset, offset + size);
  const strings = { lineStr: file.subarray(lineStr.offset, lineStr.offset + lineStr.size) };
  let seed = 12345;
  const random = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  let rejected = 0;
  for (let round = 0; round < 300; round++) {
    const bad = Buffer.from(round % 3 === 0 ? section.subarray(0, random(size)) : section);
    for (let i = 0; i < 1 + random(4); i++) bad[random(Math.min(bad.length, 200) || 1)] = random(256);
    try {
      LineTable.parse(bad, round % 5 === 0 ? {} : strings);
    } catch (err) {
      assert.ok(err instanceof DwarfError, `round ${round}: ${(err as Error).stack}`);
      rejected++;
    }
  }
  assert.ok(rejected > 50, `${rejected} of 300 corrupted sections were rejected`);
});

test("the guest and the firmware in one table: both symbolised with file:line, the guest's names win", () => {
  const guestFile = path.join(GUEST_DIR, "hello.elf");
  const guest = parseElf(guestFile, fs.readFileSync(guestFile));
  const firmware = parseElf(FIRMWARE, fs.readFileSync(FIRMWARE));
  const table = new SymbolTable([...guest.symbols, ...firmware.symbols], LineTable.merge([guest.lines!, firmware.lines!]));
  const start = firmware.symbols.find((s) => s.name === "_start")!.addr;
  const where = (elf: string, addr: bigint) => displayPath(execFileSync("addr2line", ["-e", elf, "0x" + addr.toString(16)], { encoding: "utf8" }).trim());
  // _start shares its address with the linker-script label __firmware_start: the function is named
  assert.equal(table.describe(start + 1n), `_start+0x1 (${where(FIRMWARE, start + 1n)})`);
  const main = table.lookup("tsvmm_main")!.addr;
  assert.equal(table.describe(main + 4n), `tsvmm_main+0x4 (${where(guestFile, main + 4n)})`);
  const both = guest.symbols.find((g) => firmware.symbols.some((f) => f.name === g.name))!;
  assert.ok(both, "a name both images have (console_lock)");
  assert.equal(table.lookup(both.name)?.addr, both.addr);
});
