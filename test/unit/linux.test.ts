import { test } from "node:test";
import assert from "node:assert/strict";
import { buildLinuxBoot, parseBzImage, BOOT_PARAMS_GPA, CMDLINE_GPA } from "../../vmm/boot/linux";
import { pcMemoryMap } from "../../vmm/boot/memoryMap";
import { BadImageError } from "../../vmm/errors";

interface Fields {
  setupSects?: number;
  bootFlag?: number;
  magic?: number;
  version?: number;
  loadflags?: number;
  xloadflags?: number;
  alignment?: number;
  relocatable?: number;
  prefAddress?: bigint;
  initSize?: number;
  cmdlineSize?: number;
  initrdAddrMax?: number;
}

/** A bzImage-shaped file: setup sectors with a setup header, then `kernelBytes` of kernel. */
function bzImage(f: Fields = {}, kernelBytes = 0x3000): Buffer {
  const setupSects = f.setupSects ?? 4;
  const file = Buffer.alloc((setupSects + 1) * 512 + kernelBytes, 0xcc);
  file.fill(0, 0, (setupSects + 1) * 512);
  file[0x1f1] = setupSects;
  file.writeUInt16LE(f.bootFlag ?? 0xaa55, 0x1fe);
  file[0x200] = 0xeb; // jmp short: the header runs to 0x202 + this byte
  file[0x201] = 0x66;
  file.writeUInt32LE(f.magic ?? 0x53726448, 0x202);
  file.writeUInt16LE(f.version ?? 0x020f, 0x206);
  file[0x211] = f.loadflags ?? 0x01;
  file.writeUInt32LE(f.initrdAddrMax ?? 0x7fffffff, 0x22c);
  file.writeUInt32LE(f.alignment ?? 0x200000, 0x230);
  file[0x234] = f.relocatable ?? 1;
  file.writeUInt16LE(f.xloadflags ?? 0x03, 0x236);
  file.writeUInt32LE(f.cmdlineSize ?? 2047, 0x238);
  file.writeBigUInt64LE(f.prefAddress ?? 0x1000000n, 0x258);
  file.writeUInt32LE(f.initSize ?? 0x800000, 0x260);
  return file;
}

const map = (size: bigint) => pcMemoryMap(size > 3n << 30n ? [{ base: 0n, size: 3n << 30n }, { base: 4n << 30n, size: size - (3n << 30n) }] : [{ base: 0n, size }]);
const isBad = (field: RegExp) => (e: unknown) => e instanceof BadImageError && e.status === 65 && field.test(e.message);

test("parses the setup header of a 2.15 bzImage", () => {
  const img = parseBzImage("bz", bzImage());
  assert.equal(img.version, 0x020f);
  assert.equal(img.kernel.length, 0x3000);
  assert.equal(img.kernel[0], 0xcc);
  assert.equal(img.setupHeader.length, 0x202 + 0x66 - 0x1f1);
  assert.equal(img.prefAddress, 0x1000000n);
  assert.equal(img.cmdlineSize, 2047);
});

test("refuses foreign, old, 32-bit-only and truncated images naming the field", () => {
  assert.throws(() => parseBzImage("bz", Buffer.alloc(100)), isBad(/truncated/));
  assert.throws(() => parseBzImage("bz", bzImage({ bootFlag: 0 })), isBad(/not a Linux bzImage: boot_flag 0x0/));
  assert.throws(() => parseBzImage("bz", bzImage({ magic: 0x12345678 })), isBad(/header 0x12345678 \(want "HdrS"\)/));
  assert.throws(() => parseBzImage("bz", bzImage({ version: 0x0209 })), isBad(/boot protocol version 2\.09 is too old: tsvmm needs 2\.10/));
  assert.throws(() => parseBzImage("bz", bzImage({ loadflags: 0 })), isBad(/loadflags: LOADED_HIGH/));
  assert.throws(() => parseBzImage("bz", bzImage({ xloadflags: 0 })), isBad(/xloadflags: XLF_KERNEL_64/));
  assert.throws(() => parseBzImage("bz", bzImage({ alignment: 0x3000 })), isBad(/kernel_alignment 0x3000/));
  assert.throws(() => parseBzImage("bz", bzImage({ initSize: 0x1000 })), isBad(/init_size 0x1000 is smaller/));
  assert.throws(() => parseBzImage("bz", bzImage({ setupSects: 60 }, 0).subarray(0, 0x400)), isBad(/truncated: setup_sects 60/));
});

test("boot_params: setup header, loader type, command line, e820 from the RAM map", () => {
  const img = parseBzImage("bz", bzImage());
  const boot = buildLinuxBoot({ image: img, memoryMap: map(256n << 20n), cmdline: "console=ttyS0 quiet" });
  assert.equal(boot.kernelStart, 0x1000000);
  assert.equal(boot.entry64, 0x1000200);
  assert.equal(boot.bootParamsGpa, BOOT_PARAMS_GPA);
  const params = boot.writes.find((w) => w.gpa === BOOT_PARAMS_GPA)!.data;
  assert.equal(params.readUInt32LE(0x202), 0x53726448, "the header is copied");
  assert.equal(params[0x210], 0xff, "type_of_loader");
  assert.equal(params.readUInt32LE(0x228), CMDLINE_GPA);
  assert.equal(boot.writes.find((w) => w.gpa === CMDLINE_GPA)!.data.toString(), "console=ttyS0 quiet\0");
  assert.equal(params.readUInt32LE(0x218), 0, "no initrd");
  const e820 = [];
  for (let i = 0; i < params[0x1e8]; i++) {
    const o = 0x2d0 + i * 20;
    e820.push([params.readBigUInt64LE(o), params.readBigUInt64LE(o + 8), params.readUInt32LE(o + 16)]);
  }
  assert.deepEqual(e820, [[0n, 0xa0000n, 1], [0xa0000n, 0x60000n, 2], [0x100000n, (256n << 20n) - 0x100000n, 1]]);
  assert.deepEqual(boot.writes.find((w) => w.gpa === 0x1000000)!.data, img.kernel);
});

test("RAM above 4 GiB shows up in e820 after the hole", () => {
  const img = parseBzImage("bz", bzImage());
  const boot = buildLinuxBoot({ image: img, memoryMap: map(6n << 30n), cmdline: "" });
  const params = boot.writes.find((w) => w.gpa === BOOT_PARAMS_GPA)!.data;
  assert.equal(params[0x1e8], 4);
  assert.equal(params.readBigUInt64LE(0x2d0 + 3 * 20), 4n << 30n);
  assert.equal(params.readBigUInt64LE(0x2d0 + 3 * 20 + 8), 3n << 30n);
});

test("the initrd goes as high as initrd_addr_max and RAM allow, page aligned", () => {
  const img = parseBzImage("bz", bzImage({ initrdAddrMax: 0x37ffffff }));
  const data = Buffer.alloc(0x12345, 7);
  const small = buildLinuxBoot({ image: img, memoryMap: map(64n << 20n), cmdline: "", initrd: { name: "initrd", data } });
  assert.equal(small.initrd!.start, (64 << 20) - 0x13000);
  const big = buildLinuxBoot({ image: img, memoryMap: map(2n << 30n), cmdline: "", initrd: { name: "initrd", data } });
  assert.equal(big.initrd!.start, 0x38000000 - 0x13000);
  const params = big.writes.find((w) => w.gpa === BOOT_PARAMS_GPA)!.data;
  assert.equal(params.readUInt32LE(0x218), big.initrd!.start);
  assert.equal(params.readUInt32LE(0x21c), 0x12345);
});

test("a kernel, initrd or command line that does not fit is refused with exit 65", () => {
  const img = parseBzImage("bz", bzImage({ initSize: 0x2000000 }));
  assert.throws(() => buildLinuxBoot({ image: img, memoryMap: map(32n << 20n), cmdline: "" }), isBad(/init_size.*raise --mem/));
  const fixed = parseBzImage("bz", bzImage({ relocatable: 0, prefAddress: 0x4000000n }));
  assert.throws(() => buildLinuxBoot({ image: fixed, memoryMap: map(32n << 20n), cmdline: "" }), isBad(/not relocatable/));
  const ok = parseBzImage("bz", bzImage({ cmdlineSize: 10 }));
  assert.throws(() => buildLinuxBoot({ image: ok, memoryMap: map(64n << 20n), cmdline: "console=ttyS0" }), isBad(/longer than the kernel's cmdline_size \(10\)/));
  assert.throws(
    () => buildLinuxBoot({ image: ok, memoryMap: map(32n << 20n), cmdline: "", initrd: { name: "big.cpio", data: Buffer.alloc(24 << 20) } }),
    (e: unknown) => e instanceof BadImageError && /^big\.cpio: the initrd/.test(e.message),
  );
});

test("a relocatable kernel whose pref_address does not fit moves to the first aligned address at 16 MiB", () => {
  const img = parseBzImage("bz", bzImage({ prefAddress: 0x80000000n }));
  const boot = buildLinuxBoot({ image: img, memoryMap: map(64n << 20n), cmdline: "" });
  assert.equal(boot.kernelStart, 0x1000000);
});
