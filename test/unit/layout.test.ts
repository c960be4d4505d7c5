import { test } from "node:test";
import assert from "node:assert/strict";
import { computeLayout, computePcLayout } from "../../vmm/machine/layout";
import { CLI_FLAGS } from "../../vmm/cli/flags";
import { parseElf } from "../../vmm/machine/elf";
import { BadImageError, UsageError } from "../../vmm/errors";
import { buildElf } from "../support/elfBuilder";

const image = (name: string, paddr: bigint, size: bigint) =>
  parseElf(name, buildElf({ entry: paddr, segments: [{ paddr, data: Buffer.from([0xf4]), memsz: size }] }));
const firmware = image("firmware", 0x10000n, 0x8000n);
const guest = image("guest", 0x100000n, 0x3456n);

test("places the guest and computes the first free page above it", () => {
  const l = computeLayout(64n << 20n, 2, firmware, guest);
  assert.equal(l.freeBase, 0x104000n);
  assert.deepEqual(l.regions.map((r) => r.name), [
    "boot-information page",
    "firmware segment at 0x10000",
    "vCPU stacks",
    "guest segment at 0x100000",
  ]);
});

test("refuses images that overlap the boot page, stacks or firmware, or leave RAM", () => {
  assert.throws(() => computeLayout(64n << 20n, 1, firmware, image("g", 0x80000n, 0x1000n)), (e: unknown) => e instanceof BadImageError && /overlaps the vCPU stacks/.test(e.message));
  assert.throws(() => computeLayout(64n << 20n, 1, firmware, image("g", 0x1000n, 0x10n)), /overlaps the boot-information page/);
  assert.throws(() => computeLayout(64n << 20n, 1, firmware, image("g", 0x12000n, 0x10n)), /overlaps the firmware segment/);
  assert.throws(() => computeLayout(4n << 20n, 1, firmware, image("g", 0x300000n, 0x200000n)), /lies outside RAM .*raise memSize/);
});

test("refuses RAM sizes and vCPU counts out of range", () => {
  // The domain names the setting; the CLI shows its flag.
  const refused = (pattern: RegExp) => (e: unknown) => e instanceof UsageError && pattern.test(e.describe(CLI_FLAGS));
  assert.throws(() => computeLayout(1n << 20n, 1, firmware, guest), (e: unknown) => e instanceof UsageError && /^memSize 1048576 bytes is out of range/.test(e.message));
  assert.throws(() => computeLayout(1n << 20n, 1, firmware, guest), refused(/^--mem 1048576 bytes is out of range/));
  assert.throws(() => computeLayout(4n << 30n, 1, firmware, guest), refused(/^--mem /));
  assert.throws(() => computeLayout((64n << 20n) + 5n, 1, firmware, guest), refused(/^--mem must be a multiple of 4 KiB/));
  assert.throws(() => computeLayout(64n << 20n, 0, firmware, guest), refused(/^--cpus 0 /));
  assert.throws(() => computeLayout(64n << 20n, 33, firmware, guest), refused(/^--cpus 33 /));
  assert.throws(() => computePcLayout(2n << 40n, 1), refused(/^--mem /));
});

test("PC guests: RAM above 3 GiB continues at 4 GiB, after the platform's hole", () => {
  assert.deepEqual(computePcLayout(3n << 30n, 1).ram, [{ base: 0n, size: 3n << 30n }]);
  assert.deepEqual(computePcLayout(5n << 30n, 2).ram, [
    { base: 0n, size: 3n << 30n },
    { base: 4n << 30n, size: 2n << 30n },
  ]);
  assert.deepEqual(computeLayout(64n << 20n, 1, firmware, guest).ram, [{ base: 0n, size: 64n << 20n }]);
});
