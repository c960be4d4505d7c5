// Linux x86 boot protocol (2.10 or later, bzImage) for the 64-bit entry: check the setup header,
// place the protected-mode kernel, the command line and the initrd, and fill `boot_params` (the
// "zero page") with the setup header, the e820 map and their addresses. Pure functions over
// bytes; the machine writes the result into RAM and enters at `entry64` in long mode with RSI =
// boot_params (Documentation/arch/x86/boot.rst, "64-bit boot protocol").
import { BadImageError } from "../errors";
import { alignUp } from "../machine/layout";
import type { MemoryMapEntry } from "./memoryMap";

/** Where the boot data goes: low RAM that no kernel uses before it has read boot_params. */
export const BOOT_PARAMS_GPA = 0x7000;
export const CMDLINE_GPA = 0x20000;
const CMDLINE_LIMIT = 0x10000;
// The page tables and GDT of the 64-bit entry live in [0x9000, 0x10000) (vmm/arch/x86/longMode.ts),
// the MP table at 0xf0000 (vmm/arch/x86/mpTable.ts).

const HDR = {
  SETUP_SECTS: 0x1f1,
  VID_MODE: 0x1fa,
  BOOT_FLAG: 0x1fe,
  JUMP: 0x200,
  HEADER: 0x202,
  VERSION: 0x206,
  TYPE_OF_LOADER: 0x210,
  LOADFLAGS: 0x211,
  RAMDISK_IMAGE: 0x218,
  RAMDISK_SIZE: 0x21c,
  CMD_LINE_PTR: 0x228,
  INITRD_ADDR_MAX: 0x22c,
  KERNEL_ALIGNMENT: 0x230,
  RELOCATABLE_KERNEL: 0x234,
  XLOADFLAGS: 0x236,
  CMDLINE_SIZE: 0x238,
  PREF_ADDRESS: 0x258,
  INIT_SIZE: 0x260,
} as const;
const BP_E820_ENTRIES = 0x1e8;
const BP_E820_TABLE = 0x2d0;
const E820_MAX_ENTRIES = 128;
const HDRS_MAGIC = 0x53726448; // "HdrS"
const BOOT_FLAG = 0xaa55;
export const MIN_BOOT_PROTOCOL = 0x020a; // 2.10: pref_address, init_size, cmdline_size
const LOADED_HIGH = 0x01;
const XLF_KERNEL_64 = 0x01;
const TYPE_OF_LOADER_UNDEFINED = 0xff;
const VID_MODE_NORMAL = 0xffff;

export interface BzImage {
  name: string;
  /** protocol version, e.g. 0x020f */
  version: number;
  /** the setup header as in the file, from 0x1f1 to its end */
  setupHeader: Buffer;
  /** the protected-mode kernel (what follows the setup sectors) */
  kernel: Buffer;
  prefAddress: bigint;
  initSize: number;
  kernelAlignment: number;
  relocatable: boolean;
  cmdlineSize: number;
  initrdAddrMax: number;
}

const protocol = (v: number) => `${v >> 8}.${(v & 0xff).toString().padStart(2, "0")}`;

export function parseBzImage(name: string, file: Buffer): BzImage {
  const bad = (problem: string) => new BadImageError(name, problem);
  if (file.length < HDR.INIT_SIZE + 4) throw bad(`truncated: ${file.length} bytes cannot hold a Linux setup header`);
  if (file.readUInt16LE(HDR.BOOT_FLAG) !== BOOT_FLAG || file.readUInt32LE(HDR.HEADER) !== HDRS_MAGIC)
    throw bad(`not a Linux bzImage: boot_flag 0x${file.readUInt16LE(HDR.BOOT_FLAG).toString(16)} (want 0xaa55), header 0x${file.readUInt32LE(HDR.HEADER).toString(16)} (want "HdrS")`);
  const version = file.readUInt16LE(HDR.VERSION);
  if (version < MIN_BOOT_PROTOCOL) throw bad(`boot protocol version ${protocol(version)} is too old: tsvmm needs ${protocol(MIN_BOOT_PROTOCOL)} or later (Linux 2.6.26+)`);
  if (!(file[HDR.LOADFLAGS] & LOADED_HIGH)) throw bad("loadflags: LOADED_HIGH is clear (a zImage loaded at 0x10000): only bzImages are supported");
  if (!(file.readUInt16LE(HDR.XLOADFLAGS) & XLF_KERNEL_64)) throw bad("xloadflags: XLF_KERNEL_64 is clear (no 64-bit entry point): build an x86-64 kernel");
  const setupSects = file[HDR.SETUP_SECTS] || 4;
  const kernelOffset = (setupSects + 1) * 512;
  if (kernelOffset >= file.length) throw bad(`truncated: setup_sects ${setupSects} puts the kernel at offset ${kernelOffset}, past the end of the file (${file.length} bytes)`);
  const kernelAlignment = file.readUInt32LE(HDR.KERNEL_ALIGNMENT);
  if (kernelAlignment === 0 || kernelAlignment & (kernelAlignment - 1))
    throw bad(`kernel_alignment 0x${kernelAlignment.toString(16)} is not a power of two`);
  const initSize = file.readUInt32LE(HDR.INIT_SIZE);
  const kernel = file.subarray(kernelOffset);
  if (initSize < kernel.length) throw bad(`init_size 0x${initSize.toString(16)} is smaller than the kernel (0x${kernel.length.toString(16)} bytes)`);
  const headerEnd = Math.min(HDR.JUMP + 2 + file[HDR.JUMP + 1], kernelOffset);
  return {
    name,
    version,
    setupHeader: file.subarray(HDR.SETUP_SECTS, headerEnd),
    kernel,
    prefAddress: file.readBigUInt64LE(HDR.PREF_ADDRESS),
    initSize,
    kernelAlignment,
    relocatable: file[HDR.RELOCATABLE_KERNEL] !== 0,
    cmdlineSize: file.readUInt32LE(HDR.CMDLINE_SIZE),
    initrdAddrMax: file.readUInt32LE(HDR.INITRD_ADDR_MAX),
  };
}

export interface LinuxBootOptions {
  image: BzImage;
  /** The guest-visible memory map (pcMemoryMap of the RAM ranges) */
  memoryMap: MemoryMapEntry[];
  cmdline: string;
  initrd?: { name: string; data: Buffer };
}

export interface LinuxBoot {
  writes: Array<{ gpa: number; data: Buffer }>;
  bootParamsGpa: number;
  /** The 64-bit entry: load address + 0x200 */
  entry64: number;
  kernelStart: number;
  /** [start, end) of the initrd, if any */
  initrd?: { start: number; end: number };
}

/**
 * Load the kernel at pref_address (or the first suitably aligned address at or above 16 MiB for
 * a relocatable kernel whose preference does not fit), the initrd as high as initrd_addr_max and
 * RAM allow, and fill boot_params.
 */
export function buildLinuxBoot(opts: LinuxBootOptions): LinuxBoot {
  const { image, memoryMap } = opts;
  const bad = (problem: string) => new BadImageError(image.name, problem);
  const ramBelow4G = memoryMap.filter((e) => e.type === 1 && e.base >= 0x100000n && e.base < 1n << 32n);
  const high = ramBelow4G[0];
  if (!high) throw bad("the memory map has no RAM above 1 MiB");
  const highEnd = high.base + high.size;

  const cmdline = Buffer.from(opts.cmdline + "\0", "utf8");
  if (cmdline.length - 1 > image.cmdlineSize)
    throw bad(`the command line (${cmdline.length - 1} bytes) is longer than the kernel's cmdline_size (${image.cmdlineSize})`);
  if (cmdline.length > CMDLINE_LIMIT) throw bad(`the command line (${cmdline.length - 1} bytes) is longer than tsvmm's limit (${CMDLINE_LIMIT - 1})`);

  const align = BigInt(image.kernelAlignment);
  let kernelStart = image.prefAddress;
  if (kernelStart < high.base || kernelStart + BigInt(image.initSize) > highEnd) {
    if (!image.relocatable)
      throw bad(`init_size 0x${image.initSize.toString(16)} at pref_address 0x${image.prefAddress.toString(16)} (not relocatable) lies outside RAM (raise --mem)`);
    kernelStart = alignUp(high.base > 0x1000000n ? high.base : 0x1000000n, align);
  }
  const kernelEnd = kernelStart + BigInt(image.initSize);
  if (kernelEnd > highEnd)
    throw bad(`the kernel needs 0x${image.initSize.toString(16)} bytes (init_size) from 0x${kernelStart.toString(16)}, more than the RAM below 4 GiB (raise --mem)`);

  const writes: LinuxBoot["writes"] = [{ gpa: Number(kernelStart), data: image.kernel }, { gpa: CMDLINE_GPA, data: cmdline }];
  const params = Buffer.alloc(4096);
  image.setupHeader.copy(params, HDR.SETUP_SECTS);
  params.writeUInt16LE(VID_MODE_NORMAL, HDR.VID_MODE);
  params[HDR.TYPE_OF_LOADER] = TYPE_OF_LOADER_UNDEFINED;
  params.writeUInt32LE(CMDLINE_GPA, HDR.CMD_LINE_PTR);

  let initrd: LinuxBoot["initrd"];
  if (opts.initrd) {
    const size = BigInt(opts.initrd.data.length);
    const limit = BigInt(image.initrdAddrMax) + 1n < highEnd ? BigInt(image.initrdAddrMax) + 1n : highEnd;
    const start = ((limit - size) / 0x1000n) * 0x1000n;
    if (size > limit || start < kernelEnd)
      throw new BadImageError(opts.initrd.name, `the initrd (${size} bytes) does not fit between the kernel's end (0x${kernelEnd.toString(16)}) and initrd_addr_max/RAM end (0x${limit.toString(16)}) (raise --mem)`);
    writes.push({ gpa: Number(start), data: opts.initrd.data });
    params.writeUInt32LE(Number(start), HDR.RAMDISK_IMAGE);
    params.writeUInt32LE(Number(size), HDR.RAMDISK_SIZE);
    initrd = { start: Number(start), end: Number(start + size) };
  }

  if (memoryMap.length > E820_MAX_ENTRIES) throw new RangeError(`at most ${E820_MAX_ENTRIES} e820 entries`);
  params[BP_E820_ENTRIES] = memoryMap.length;
  memoryMap.forEach((e, i) => {
    const o = BP_E820_TABLE + i * 20;
    params.writeBigUInt64LE(e.base, o);
    params.writeBigUInt64LE(e.size, o + 8);
    params.writeUInt32LE(e.type, o + 16);
  });
  writes.push({ gpa: BOOT_PARAMS_GPA, data: params });
  return { writes, bootParamsGpa: BOOT_PARAMS_GPA, entry64: Number(kernelStart) + 0x200, kernelStart: Number(kernelStart), initrd };
}
