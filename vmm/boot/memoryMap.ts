// The memory map a PC guest is given (e820 for Linux, the multiboot mmap): tsvmm's RAM ranges,
// with the legacy VGA/BIOS window [0xa0000, 0x100000) marked reserved as on a PC (a PC guest
// expects video memory and ROM there, not RAM, although tsvmm backs it with RAM).
export const E820_RAM = 1;
export const E820_RESERVED = 2;

export interface MemoryMapEntry {
  base: bigint;
  size: bigint;
  type: number;
}

export interface RamRange {
  base: bigint;
  size: bigint;
}

const LEGACY_START = 0xa0000n;
const LEGACY_END = 0x100000n;

export function pcMemoryMap(ram: RamRange[]): MemoryMapEntry[] {
  const map: MemoryMapEntry[] = [];
  for (const r of ram) {
    const end = r.base + r.size;
    if (r.base < LEGACY_START && end > LEGACY_START) {
      map.push({ base: r.base, size: LEGACY_START - r.base, type: E820_RAM });
      map.push({ base: LEGACY_START, size: (end < LEGACY_END ? end : LEGACY_END) - LEGACY_START, type: E820_RESERVED });
      if (end > LEGACY_END) map.push({ base: LEGACY_END, size: end - LEGACY_END, type: E820_RAM });
    } else map.push({ base: r.base, size: r.size, type: E820_RAM });
  }
  return map;
}
