// Mirror of guest/include/tsvmm/abi.h: the layout and boot-information page the firmware and
// guests rely on. Change both together.
import { UsageError } from "../errors";

export const BOOT_INFO_GPA = 0x1000;
export const FIRMWARE_BASE = 0x10000;
export const STACKS_BASE = 0x80000;
export const STACK_SIZE = 0x4000;
export const MAX_CPUS = 32;
export const GUEST_BASE = 0x100000;

/** The largest status a guest may write to EXIT_PORT; the firmware also writes these two */
export const GUEST_STATUS_MAX = 63;
export const FIRMWARE_STATUSES: readonly number[] = [70 /* bad boot page, no long mode */, 71 /* guest exception */];

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

/** The guest command line as the boot page stores it (NUL-terminated); refuses one that does not fit. */
export function encodeCmdline(cmdline: string): Buffer {
  const cmd = Buffer.from(cmdline, "utf8");
  if (cmd.length >= CMDLINE_SIZE)
    throw new UsageError(`{cmdline} is ${cmd.length} bytes; the guest command line is limited to ${CMDLINE_SIZE - 1} bytes (UTF-8)`);
  return cmd;
}

export function encodeBootInfo(info: BootInfo): Buffer {
  if (info.ram.length > MAX_RAM_RANGES) throw new RangeError(`at most ${MAX_RAM_RANGES} RAM ranges`);
  const cmd = encodeCmdline(info.cmdline);
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

/** Host requests (struct tsvmm_host_request): the guest's side of the conversion tests asks the VMM */
export const HostOp = { CHECK_SHARED: 1, CHECK_PRIVATE: 2, PUNCH_PRIVATE: 3, COUNT_PRIVATE: 4, TEST_SLOT_CREATE: 5, TEST_SLOT_BREAK: 6 } as const;
/** How TEST_SLOT_BREAK breaks the test slot (in the request's `expect`) */
export const HostBreak = { DELETE: 1, NO_GMEM: 2, RELEASE: 3 } as const;
export const HOST_FLAG_FILL = 1;
export const HOST_REQUEST_SIZE = 48;

export interface HostRequest {
  op: number;
  gpa: bigint;
  size: bigint;
  expect: number;
  fill: number;
  flags: number;
}

export interface HostAnswer {
  /** 0 ok, -1 the check failed, >0 an errno */
  result: number;
  /** the first mismatching GPA, or a count */
  found: bigint;
  /** the byte found there */
  value: bigint;
}

export function decodeHostRequest(b: Buffer, at: number): HostRequest {
  return {
    op: b.readUInt32LE(at),
    gpa: b.readBigUInt64LE(at + 8),
    size: b.readBigUInt64LE(at + 16),
    expect: b[at + 24],
    fill: b[at + 25],
    flags: b[at + 26],
  };
}

/** Write the VMM's answer into the request at `at` (result, found, value; the rest stays). */
export function encodeHostAnswer(b: Buffer, at: number, a: HostAnswer): void {
  b.writeInt32LE(a.result, at + 4);
  b.writeBigUInt64LE(a.found, at + 32);
  b.writeBigUInt64LE(a.value, at + 40);
}
