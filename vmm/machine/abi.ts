// Mirror of guest/include/tsvmm/abi.h: the layout and boot-information page the firmware and
// guests rely on. Change both together.

export const BOOT_INFO_GPA = 0x1000;
export const FIRMWARE_BASE = 0x10000;
export const STACKS_BASE = 0x80000;
export const STACK_SIZE = 0x4000;
export const MAX_CPUS = 32;
export const GUEST_BASE = 0x100000;

export const CONSOLE_PORT = 0x3f8;
export const EXIT_PORT = 0xf4;
export const CONVERT_PORT = 0xf8;
export const HOST_PORT = 0xfc;

export const BOOT_MAGIC = 0x3149424d4d565354n; // "TSVMMBI1"
export const BOOT_VERSION = 1;
export const MAX_RAM_RANGES = 16;
export const CMDLINE_SIZE = 512;
export const BOOT_INFO_SIZE = 952;

export const BackendId = { shared: 0, attributes: 1, memslots: 2 } as const;
export const ConvertMethod = { none: 0, vmcall: 1, vmmcall: 2, doorbell: 3 } as const;
export const RAM_PRIVATE = 1;

export interface RamRange {
  base: bigint;
  size: bigint;
  flags: number;
}

export interface BootInfo {
  cpuCount: number;
  guestEntry: bigint;
  freeBase: bigint;
  ram: RamRange[];
  backend: number;
  sharedBit: number;
  convertMethod: number;
  cmdline: string;
}

export function encodeBootInfo(info: BootInfo): Buffer {
  if (info.ram.length > MAX_RAM_RANGES) throw new RangeError(`at most ${MAX_RAM_RANGES} RAM ranges`);
  const cmd = Buffer.from(info.cmdline, "utf8");
  if (cmd.length >= CMDLINE_SIZE) throw new RangeError(`the guest command line is limited to ${CMDLINE_SIZE - 1} bytes`);
  const b = Buffer.alloc(BOOT_INFO_SIZE);
  b.writeBigUInt64LE(BOOT_MAGIC, 0);
  b.writeUInt32LE(BOOT_VERSION, 8);
  b.writeUInt32LE(info.cpuCount, 12);
  b.writeBigUInt64LE(info.guestEntry, 16);
  b.writeBigUInt64LE(info.freeBase, 24);
  b.writeUInt32LE(info.ram.length, 32);
  b.writeUInt32LE(info.backend, 36);
  b.writeUInt32LE(info.sharedBit, 40);
  b.writeUInt32LE(info.convertMethod, 44);
  b.writeUInt16LE(CONVERT_PORT, 48);
  b.writeUInt16LE(EXIT_PORT, 50);
  b.writeUInt16LE(CONSOLE_PORT, 52);
  info.ram.forEach((r, i) => {
    const o = 56 + i * 24;
    b.writeBigUInt64LE(r.base, o);
    b.writeBigUInt64LE(r.size, o + 8);
    b.writeUInt32LE(r.flags, o + 16);
  });
  cmd.copy(b, 440);
  return b;
}
