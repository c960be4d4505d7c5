import { test } from "node:test";
import assert from "node:assert/strict";
import { hideXsave, xsaveSize } from "../../vmm/arch/x86/xsave";
import type { CpuidEntry } from "../../vmm/kvm/structs";

const e = (fn: number, index: number, regs: Partial<CpuidEntry> = {}): CpuidEntry => ({ function: fn, index, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0, ...regs });
// What the nested lab's KVM reports: x87, SSE and AVX (256 bytes at 576)
const lab = [e(1, 0, { ecx: 0xf7f83203 }), e(7, 0, { ebx: 0x9801ab }), e(0xd, 0, { eax: 7, ebx: 0x340, ecx: 0x340 }), e(0xd, 1, { eax: 5 }), e(0xd, 2, { eax: 0x100, ebx: 0x240 })];

test("the XSAVE size follows the enabled features' offsets and sizes", () => {
  assert.equal(xsaveSize(lab, 3n), 576);
  assert.equal(xsaveSize(lab, 7n), 832);
});

test("hiding XSAVE clears it and the features that need it, and empties leaf 0xD", () => {
  const hidden = hideXsave(lab);
  const leaf1 = hidden.find((c) => c.function === 1)!;
  assert.equal(leaf1.ecx & (1 << 26), 0);
  assert.equal(leaf1.ecx & (1 << 28), 0, "AVX");
  assert.equal(leaf1.ecx & 0x3203, 0x3203 & ~(1 << 12), "other leaf 1 features stay (FMA goes)");
  assert.equal(hidden.find((c) => c.function === 7)!.ebx & (1 << 5), 0, "AVX2");
  assert.ok(hidden.filter((c) => c.function === 0xd).every((c) => c.eax === 0 && c.ebx === 0 && c.ecx === 0));
  assert.equal(lab[0].ecx, 0xf7f83203, "the input is not modified");
});
