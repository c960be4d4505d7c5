import { test } from "node:test";
import assert from "node:assert/strict";
import { buildMultibootBoot, findMultibootHeader, parseMultiboot, MULTIBOOT_HEADER_MAGIC } from "../../vmm/boot/multiboot";
import { pcMemoryMap } from "../../vmm/boot/memoryMap";
import { BadImageError } from "../../vmm/errors";

function header(flags: number, fields: number[] = [], checksumDelta = 0): Buffer {
  const b = Buffer.alloc(12 + fields.length * 4);
  b.writeUInt32LE(MULTIBOOT_HEADER_MAGIC, 0);
  b.writeUInt32LE(flags >>> 0, 4);
  b.writeUInt32LE((-(MULTIBOOT_HEADER_MAGIC + flags) + checksumDelta) >>> 0, 8);
  fields.forEach((f, i) => b.writeUInt32LE(f, 12 + i * 4));
  return b;
}

/** An ELF32 i386 executable with one PT_LOAD segment at paddr holding `body`. */
function elf32(paddr: number, body: Buffer, opts: { memsz?: number; machine?: number; entry?: number } = {}): Buffer {
  const eh = Buffer.alloc(52);
  eh.writeUInt32BE(0x7f454c46, 0);
  eh[4] = 1; // ELFCLASS32
  eh[5] = 1;
  eh[6] = 1;
  eh.writeUInt16LE(2, 16);
  eh.writeUInt16LE(opts.machine ?? 3, 18);
  eh.writeUInt32LE(1, 20);
  eh.writeUInt32LE(opts.entry ?? paddr, 24);
  eh.writeUInt32LE(52, 28);
  eh.writeUInt16LE(52, 40);
  eh.writeUInt16LE(32, 42);
  eh.writeUInt16LE(1, 44);
  const ph = Buffer.alloc(32);
  ph.writeUInt32LE(1, 0);
  ph.writeUInt32LE(0x1000, 4);
  ph.writeUInt32LE(paddr, 8);
  ph.writeUInt32LE(paddr, 12);
  ph.writeUInt32LE(body.length, 16);
  ph.writeUInt32LE(opts.memsz ?? body.length, 20);
  const file = Buffer.alloc(0x1000 + body.length);
  eh.copy(file, 0);
  ph.copy(file, 52);
  body.copy(file, 0x1000);
  return file;
}

const kernelBody = () => Buffer.concat([header(0x3), Buffer.alloc(100, 0x90)]);
const ram = (size: bigint) => pcMemoryMap(size > 3n << 30n ? [{ base: 0n, size: 3n << 30n }, { base: 4n << 30n, size: size - (3n << 30n) }] : [{ base: 0n, size }]);

function isBad(field: RegExp) {
  return (e: unknown) => e instanceof BadImageError && e.status === 65 && field.test(e.message);
}

test("finds the header only 4-byte aligned, in the first 8 KiB, with a matching checksum", () => {
  const file = Buffer.alloc(12000);
  header(0).copy(file, 8192 - 12);
  assert.equal(findMultibootHeader(file), 8180);
  assert.equal(findMultibootHeader(Buffer.concat([Buffer.alloc(8192), header(0)])), undefined);
  assert.equal(findMultibootHeader(Buffer.concat([Buffer.alloc(2), header(0)])), undefined);
  assert.equal(findMultibootHeader(header(0, [], 1)), undefined);
});

test("an ELF32 kernel loads its PT_LOAD segments with bss and enters at e_entry", () => {
  const img = parseMultiboot("k", elf32(0x100000, kernelBody(), { memsz: 0x3000, entry: 0x100010 }));
  assert.equal(img.entry, 0x100010);
  assert.equal(img.segments.length, 1);
  assert.equal(img.segments[0].gpa, 0x100000);
  assert.equal(img.segments[0].memSize, 0x3000);
  assert.equal(img.end, 0x103000);
});

test("the a.out kludge (flag 16) loads by the header's addresses", () => {
  // header at file offset 8, header_addr 0x200008 -> load_addr 0x200000 starts at file offset 0
  const body = Buffer.alloc(0x40, 0x90);
  header(0x10000, [0x200008, 0x200000, 0x200040, 0x201000, 0x200020]).copy(body, 8);
  const img = parseMultiboot("k", body);
  assert.equal(img.entry, 0x200020);
  assert.equal(img.segments[0].gpa, 0x200000);
  assert.equal(img.segments[0].data.length, 0x40);
  assert.equal(img.segments[0].memSize, 0x1000);
});

test("bad images are refused with exit 65 naming the field", () => {
  assert.throws(() => parseMultiboot("k", Buffer.alloc(64)), isBad(/no multiboot header/));
  assert.throws(() => parseMultiboot("k", header(0, [], 4)), isBad(/checksum/));
  assert.throws(() => parseMultiboot("k", elf32(0x100000, Buffer.concat([header(0x4), Buffer.alloc(8)]))), isBad(/flags 0x4: required bit 0x4 \(video mode/));
  assert.throws(() => parseMultiboot("k", elf32(0x100000, kernelBody(), { machine: 62 })), isBad(/e_machine=62/));
  const elf64 = elf32(0x100000, kernelBody());
  elf64[4] = 2;
  assert.throws(() => parseMultiboot("k", elf64), isBad(/ELF32 \(EI_CLASS=2\)/));
  assert.throws(() => parseMultiboot("k", elf32(0x100000, kernelBody()).subarray(0, 0x1000 + 20)), isBad(/truncated: segment 0/));
  assert.throws(() => parseMultiboot("k", elf32(0x100000, kernelBody(), { entry: 0x900000 })), isBad(/entry point 0x900000/));
  const kludge = Buffer.alloc(0x40);
  header(0x10000, [0x200008, 0x200000, 0x300000, 0, 0x200020]).copy(kludge, 8);
  assert.throws(() => parseMultiboot("k", kludge), isBad(/truncated: multiboot load_end_addr/));
});

test("the info block: mem_lower/mem_upper, the memory map, command line, modules and loader name", () => {
  const img = parseMultiboot("k", elf32(0x100000, kernelBody(), { memsz: 0x2800 }));
  const map = ram(64n << 20n);
  const boot = buildMultibootBoot({
    image: img,
    memoryMap: map,
    cmdline: "k.elf smp=2",
    modules: [{ data: Buffer.from("module one"), cmdline: "mod1 x" }, { data: Buffer.alloc(5000, 1), cmdline: "mod2" }],
  });
  const info = boot.writes.find((w) => w.gpa === boot.infoGpa)!.data;
  const str = (gpa: number) => {
    const o = gpa - boot.infoGpa;
    return info.toString("utf8", o, info.indexOf(0, o));
  };
  assert.equal(boot.modules[0].start, 0x103000, "modules follow the image, page aligned");
  assert.equal(boot.modules[1].start, 0x104000);
  assert.equal(boot.infoGpa, 0x106000);
  assert.equal(info.readUInt32LE(0) & 0x24d, 0x24d, "flags: memory, cmdline, mods, mmap, loader name");
  assert.equal(info.readUInt32LE(4), 640);
  assert.equal(info.readUInt32LE(8), 63 * 1024);
  assert.equal(str(info.readUInt32LE(16)), "k.elf smp=2");
  assert.equal(str(info.readUInt32LE(64)), "tsvmm");
  assert.equal(info.readUInt32LE(20), 2);
  const mods = info.readUInt32LE(24) - boot.infoGpa;
  assert.deepEqual([info.readUInt32LE(mods), info.readUInt32LE(mods + 4)], [0x103000, 0x103000 + 10]);
  assert.equal(str(info.readUInt32LE(mods + 8)), "mod1 x");
  assert.equal(str(info.readUInt32LE(mods + 16 + 8)), "mod2");
  const mmapLength = info.readUInt32LE(44);
  const mmap = info.readUInt32LE(48) - boot.infoGpa;
  const entries = [];
  for (let o = mmap; o < mmap + mmapLength; o += info.readUInt32LE(o) + 4)
    entries.push([info.readBigUInt64LE(o + 4), info.readBigUInt64LE(o + 12), info.readUInt32LE(o + 20)]);
  assert.deepEqual(entries, [[0n, 0xa0000n, 1], [0xa0000n, 0x60000n, 2], [0x100000n, (64n << 20n) - 0x100000n, 1]]);
});

test("RAM above 4 GiB: the map has the hole below 4 GiB and mem_upper stops at it", () => {
  const img = parseMultiboot("k", elf32(0x100000, kernelBody()));
  const map = ram(5n << 30n);
  assert.deepEqual(map.map((e) => [e.base, e.base + e.size, e.type]), [
    [0n, 0xa0000n, 1], [0xa0000n, 0x100000n, 2], [0x100000n, 3n << 30n, 1], [4n << 30n, 6n << 30n, 1],
  ]);
  const boot = buildMultibootBoot({ image: img, memoryMap: map, cmdline: "" });
  const info = boot.writes.find((w) => w.gpa === boot.infoGpa)!.data;
  assert.equal(info.readUInt32LE(8), (3 * 1024 - 1) * 1024);
});

test("a kernel or module that does not fit in RAM is refused with exit 65", () => {
  const big = parseMultiboot("k", elf32(0x100000, kernelBody(), { memsz: 8 << 20 }));
  assert.throws(() => buildMultibootBoot({ image: big, memoryMap: ram(4n << 20n), cmdline: "" }), isBad(/lies outside RAM .*raise --mem/));
  const img = parseMultiboot("k", elf32(0x100000, kernelBody()));
  assert.throws(
    () => buildMultibootBoot({ image: img, memoryMap: ram(4n << 20n), cmdline: "", modules: [{ data: Buffer.alloc(4 << 20), cmdline: "m" }] }),
    isBad(/module 0 .* does not fit/),
  );
});
