// Guest-virtual to guest-physical translation by walking the guest's page tables, the way the
// CPU does (x86-64 4-level paging), reading the tables through a callback. Pure logic.
import type { Sregs } from "../kvm/structs";

const PRESENT = 1n;
const PAGE_SIZE_BIT = 0x80n;
const ADDR_MASK = 0x000ffffffffff000n;

export type Translation = { gpa: bigint } | { error: string };

/** read64 returns undefined when the table entry cannot be read (private or outside RAM). */
export function translate(gva: bigint, sregs: Pick<Sregs, "cr0" | "cr3" | "cr4" | "efer">, read64: (gpa: bigint) => bigint | undefined): Translation {
  const paging = (sregs.cr0 & 0x80000000n) !== 0n;
  if (!paging) return { gpa: gva & 0xffffffffn };
  const longMode = (sregs.efer & 0x400n) !== 0n;
  if (!longMode) return { error: "32-bit paging is not walked (the test guests run in long mode)" };
  if (sregs.cr4 & 0x1000n) return { error: "5-level paging (LA57) is not walked" };
  let table = sregs.cr3 & ADDR_MASK;
  const names = ["PML4", "PDPT", "PD", "PT"];
  for (let level = 0; level < 4; level++) {
    const shift = BigInt(39 - 9 * level);
    const index = (gva >> shift) & 0x1ffn;
    const entry = read64(table + index * 8n);
    if (entry === undefined) return { error: `${names[level]} entry at 0x${(table + index * 8n).toString(16)} is not readable by the host` };
    if (!(entry & PRESENT)) return { error: `0x${gva.toString(16)} is not mapped (${names[level]} entry not present)` };
    if (level > 0 && level < 3 && entry & PAGE_SIZE_BIT) {
      const pageMask = (1n << shift) - 1n;
      return { gpa: (entry & ADDR_MASK & ~pageMask) | (gva & pageMask) };
    }
    table = entry & ADDR_MASK;
  }
  return { gpa: table | (gva & 0xfffn) };
}
