// Guest-physical layout: where the boot page, firmware, stacks and guest go, checked for overlap
// against each other and against RAM before anything is created.
import { BadImageError, UsageError } from "../errors";
import { BOOT_INFO_GPA, MAX_CPUS, STACKS_BASE, STACK_SIZE } from "./abi";
import type { ElfImage } from "./elf";
import { PAGE } from "../memory/pageState";
import { hex } from "../format";

export const MIN_RAM = 2n << 20n;
/** RAM stays below the 32-bit MMIO hole, inside the firmware's 4 GiB identity map. */
export const MAX_RAM = 3n << 30n;
/** PC guests (multiboot, Linux): RAM above 3 GiB continues at 4 GiB, after the platform's hole
 *  [3 GiB, 4 GiB) (IOAPIC, HPET, local APIC, the VMX TSS and identity-map pages). */
export const PC_MAX_RAM = 1n << 40n;
export const HIGH_RAM_BASE = 4n << 30n;

export interface RamRange {
  base: bigint;
  size: bigint;
}

export interface Region {
  name: string;
  start: bigint;
  end: bigint;
}

export interface Layout {
  ramSize: bigint;
  /** Where the RAM is in guest-physical space: one range, or two around the 32-bit hole */
  ram: RamRange[];
  cpus: number;
  regions: Region[];
  freeBase: bigint;
}

export const alignUp = (v: bigint, a: bigint) => ((v + a - 1n) / a) * a;

function checkSizes(ramSize: bigint, cpus: number, maxRam: bigint, range: string): void {
  if (ramSize < MIN_RAM || ramSize > maxRam) throw new UsageError(`{memSize} ${ramSize} bytes is out of range`, `use between 2M and ${range}`);
  if (ramSize % PAGE !== 0n) throw new UsageError(`{memSize} must be a multiple of 4 KiB`);
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > MAX_CPUS)
    throw new UsageError(`{cpus} ${cpus} is out of range`, `use 1 to ${MAX_CPUS}`);
}

/** The RAM ranges of `ramSize` bytes: up to 3 GiB from 0, the rest from 4 GiB. */
export function ramRanges(ramSize: bigint): RamRange[] {
  if (ramSize <= MAX_RAM) return [{ base: 0n, size: ramSize }];
  return [{ base: 0n, size: MAX_RAM }, { base: HIGH_RAM_BASE, size: ramSize - MAX_RAM }];
}

/** The layout of a PC guest (multiboot, Linux): its loader places the images; RAM may exceed 3 GiB. */
export function computePcLayout(ramSize: bigint, cpus: number): Layout {
  checkSizes(ramSize, cpus, PC_MAX_RAM, "1T (above 3G RAM continues at 4 GiB)");
  return { ramSize, ram: ramRanges(ramSize), cpus, regions: [], freeBase: 0n };
}

export function computeLayout(ramSize: bigint, cpus: number, firmware: ElfImage, guest: ElfImage): Layout {
  checkSizes(ramSize, cpus, MAX_RAM, "3G (multiboot and Linux guests: more)");

  const fixed: Region[] = [
    { name: "boot-information page", start: BigInt(BOOT_INFO_GPA), end: BigInt(BOOT_INFO_GPA) + PAGE },
    { name: "vCPU stacks", start: BigInt(STACKS_BASE), end: BigInt(STACKS_BASE + MAX_CPUS * STACK_SIZE) },
  ];
  const images: Region[] = [];
  for (const image of [firmware, guest]) {
    for (const s of image.segments) {
      const region = { name: `${image.name} segment at ${hex(s.gpa)}`, start: s.gpa, end: s.gpa + s.memSize };
      if (region.end > ramSize)
        throw new BadImageError(image.name, `segment [${hex(region.start)}, ${hex(region.end)}) lies outside RAM (${hex(ramSize)} bytes; raise {memSize})`);
      for (const other of [...fixed, ...images]) {
        if (region.start < other.end && other.start < region.end)
          throw new BadImageError(
            image.name,
            `segment [${hex(region.start)}, ${hex(region.end)}) overlaps the ${other.name} at [${hex(other.start)}, ${hex(other.end)})`,
          );
      }
      images.push(region);
    }
  }
  const guestEnd = guest.segments.reduce((m, s) => (s.gpa + s.memSize > m ? s.gpa + s.memSize : m), 0n);
  const freeBase = alignUp(guestEnd, PAGE);
  if (freeBase >= ramSize) throw new BadImageError(guest.name, `leaves no free RAM (raise {memSize})`);
  return { ramSize, ram: ramRanges(ramSize), cpus, regions: [...fixed, ...images].sort((a, b) => (a.start < b.start ? -1 : 1)), freeBase };
}
