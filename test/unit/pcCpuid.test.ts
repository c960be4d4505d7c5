import { test } from "node:test";
import assert from "node:assert/strict";
import { pcCpuidFor } from "../../vmm/arch/x86/cpuid";
import type { CpuidEntry } from "../../vmm/kvm/structs";
import { consoleEvent } from "../../vmm/boot/pcGuest";

const e = (fn: number, index: number, regs: Partial<CpuidEntry> = {}): CpuidEntry => ({ function: fn, index, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0, ...regs });
const supported = [
  e(0x1, 0, { ebx: 0x00010800, edx: 0x0789fbff }),
  e(0x4, 0, { eax: 0x121 }),
  e(0x4, 1, { eax: 0 }),
  e(0xb, 0),
  e(0xb, 1),
  e(0xb, 2),
  e(0x40000001, 0, { eax: 1 << 16 }),
  e(0x80000008, 0, { eax: 0x3030, ecx: 0 }),
];
const leaf = (entries: CpuidEntry[], fn: number, index = 0) => entries.find((x) => x.function === fn && x.index === index)!;

test("PC guest CPUID: APIC id, logical count and HTT in leaf 1; topology in 4, 0xb and 0x80000008", () => {
  const v3 = pcCpuidFor(3, 6, supported);
  assert.equal(leaf(v3, 1).ebx >>> 24, 3);
  assert.equal((leaf(v3, 1).ebx >> 16) & 0xff, 6);
  assert.ok(leaf(v3, 1).edx & (1 << 28));
  assert.equal(leaf(v3, 4).eax >>> 26, 5, "cores per package - 1");
  assert.equal(leaf(v3, 4, 1).eax, 0, "the terminating cache subleaf stays empty");
  assert.deepEqual([leaf(v3, 0xb).ebx, leaf(v3, 0xb).ecx, leaf(v3, 0xb).edx], [1, 0x100, 3]);
  assert.deepEqual([leaf(v3, 0xb, 1).eax, leaf(v3, 0xb, 1).ebx, leaf(v3, 0xb, 1).ecx, leaf(v3, 0xb, 1).edx], [3, 6, 0x201, 3]);
  assert.deepEqual([leaf(v3, 0xb, 2).ebx, leaf(v3, 0xb, 2).ecx], [0, 2]);
  assert.equal(leaf(v3, 0x80000008).ecx, (3 << 12) | 5);
  assert.equal(leaf(v3, 0x40000001).eax & (1 << 16), 0, "no hypercall feature for PC guests");
  assert.equal(leaf(pcCpuidFor(0, 1, supported), 0xb, 1).eax, 0, "one vCPU: no core id bits");
  assert.equal(supported[0].ebx, 0x00010800, "the supported list is not modified");
});

test("console lines that end a PC guest: Linux's power-down message and a panic", () => {
  assert.equal(consoleEvent("[    5.123456] reboot: Power down"), "power-off");
  assert.equal(consoleEvent("reboot: Power off not available: System halted instead"), "power-off");
  assert.equal(consoleEvent("[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs"), "panic");
  assert.equal(consoleEvent("reboot: Restarting system"), undefined);
});
