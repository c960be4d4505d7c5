import { test } from "node:test";
import assert from "node:assert/strict";
import { translate } from "../../vmm/debug/pageWalk";

const longMode = { cr0: 0x80000011n, cr3: 0x10000n, cr4: 0x20n, efer: 0x500n };

test("paging off: identity", () => {
  assert.deepEqual(translate(0x123456n, { cr0: 0x11n, cr3: 0n, cr4: 0n, efer: 0n }, () => undefined), { gpa: 0x123456n });
});

test("4-level walk through 4K and 2M pages, not-present and unreadable entries", () => {
  const mem = new Map<bigint, bigint>([
    [0x10000n, 0x11000n | 3n], // PML4[0]
    [0x11000n, 0x12000n | 3n], // PDPT[0]
    [0x12000n + 8n * 0n, 0x13000n | 3n], // PD[0] -> PT
    [0x13000n + 8n * 0x100n, 0x7f000n | 3n], // PT[0x100]: 0x100000 -> 0x7f000
    [0x12000n + 8n * 1n, 0x400000n | 0x83n], // PD[1]: 2M page at 0x200000 -> 0x400000
    [0x12000n + 8n * 3n, 0x666000n | 3n], // PD[3] -> a table the host cannot read
  ]);
  const read = (gpa: bigint) => (gpa === 0x666000n + 8n * 0n ? undefined : mem.get(gpa) ?? 0n);
  assert.deepEqual(translate(0x100123n, longMode, read), { gpa: 0x7f123n });
  assert.deepEqual(translate(0x212345n, longMode, read), { gpa: 0x412345n });
  const missing = translate(0x400000n, longMode, read);
  assert.ok("error" in missing && /not mapped \(PD entry not present\)/.test(missing.error));
  const unreadable = translate(0x600000n, longMode, read);
  assert.ok("error" in unreadable && /PT entry at 0x666000 is not readable/.test(unreadable.error));
});
