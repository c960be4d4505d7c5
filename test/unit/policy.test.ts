import { test } from "node:test";
import assert from "node:assert/strict";
import { resolvePcMemory, resolvePrivateMemory } from "../../vmm/memory/policy";
import { parseRanges } from "../../vmm/cli/parse";
import { CLI_FLAGS } from "../../vmm/cli/flags";
import type { Verdict } from "../../vmm/host/caps";
import type { ElfImage } from "../../vmm/machine/elf";
import type { Layout } from "../../vmm/machine/layout";
import { TsvmmError, UsageError } from "../../vmm/errors";

const layout: Layout = { ramSize: 64n << 20n, ram: [{ base: 0n, size: 64n << 20n }], cpus: 1, regions: [], freeBase: 0x106000n };
const guest = (wantsPrivate: boolean) => ({ name: "g", entry: 0n, segments: [], wantsPrivate, symbols: [] }) as ElfImage;
const verdict = (attributes: boolean, memslots: boolean, hypercallExit = true, preFault = true): Verdict => ({
  canRun: true, execution: "native", executionBasis: "", ramBacking: "guest_memfd", ramBackingReason: "", memoryRegion2: true,
  physicalAddressBits: 48, amd: false, debugging: { guestDebug: true, line: "" },
  backends: { attributes: { available: attributes, reason: "needs CONFIG_KVM_SW_PROTECTED_VM" }, memslots: { available: memslots, reason: "needs a native KVM" } },
  hypercallExit, memoryFaultExit: true, lines: [],
  preFault: { available: preFault, reason: preFault ? "" : "KVM_CAP_PRE_FAULT_MEMORY is 0: KVM_PRE_FAULT_MEMORY needs Linux 6.11+" },
});

test("guests that convert get RAM above the image private on the best backend", () => {
  const pm = resolvePrivateMemory({}, guest(true), layout, verdict(true, true))!;
  assert.equal(pm.backend, "attributes");
  assert.deepEqual(pm.ranges, [{ start: 0x106000n, end: 64n << 20n }]);
  assert.equal(pm.convertMethod, "hypercall");
  assert.equal(pm.onFault, "convert");
  assert.equal(resolvePrivateMemory({}, guest(true), layout, verdict(false, true))!.backend, "memslots");
  assert.equal(resolvePrivateMemory({}, guest(true), layout, verdict(false, true, false))!.convertMethod, "doorbell");
});

test("--prefault is passed on where KVM can pre-fault, and refused naming the capability where not", () => {
  assert.equal(resolvePrivateMemory({}, guest(true), layout, verdict(true, true))!.prefault, false);
  assert.equal(resolvePrivateMemory({ prefault: true }, guest(true), layout, verdict(true, true))!.prefault, true);
  assert.throws(
    () => resolvePrivateMemory({ prefault: true }, guest(true), layout, verdict(true, true, true, false)),
    (e: unknown) => e instanceof TsvmmError && e.status === 69 && /^--prefault: KVM_CAP_PRE_FAULT_MEMORY is 0/.test(e.describe(CLI_FLAGS)),
  );
  assert.ok(resolvePrivateMemory({ prefault: true }, guest(false), layout, verdict(true, true)), "asking for it asks for private memory");
  assert.throws(() => resolvePrivateMemory({ prefault: true, private: "none" }, guest(true), layout, verdict(true, true)), /needs private memory/);
});

test("other guests stay shared unless asked", () => {
  assert.equal(resolvePrivateMemory({}, guest(false), layout, verdict(true, true)), undefined);
  assert.equal(resolvePrivateMemory({ private: "none" }, guest(true), layout, verdict(true, true)), undefined);
  assert.ok(resolvePrivateMemory({ backend: "memslots" }, guest(false), layout, verdict(true, true)));
});

test("--shared-bit picks memslots and refuses attributes with the reason", () => {
  assert.equal(resolvePrivateMemory({ sharedBit: 40 }, guest(true), layout, verdict(true, true))!.backend, "memslots");
  assert.throws(() => resolvePrivateMemory({ sharedBit: 40, backend: "attributes" }, guest(true), layout, verdict(true, true)), (e: unknown) => e instanceof UsageError && /guest_memfd-only slot ignores them/.test(e.hint!));
  assert.throws(() => resolvePrivateMemory({ sharedBit: 40, private: "none" }, guest(true), layout, verdict(true, true)), /needs private memory/);
});

test("a host without private memory is refused with the lab as the way out (69)", () => {
  assert.throws(() => resolvePrivateMemory({}, guest(true), layout, verdict(false, false)), (e: unknown) => e instanceof TsvmmError && e.status === 69 && /tsvmm lab/.test(e.hint!));
  assert.throws(() => resolvePrivateMemory({ backend: "attributes" }, guest(true), layout, verdict(false, true)), /privateMemory.backend attributes: needs CONFIG_KVM_SW_PROTECTED_VM/);
});

test("--private ranges must be whole pages above the image and inside RAM", () => {
  const ok = resolvePrivateMemory({ private: parseRanges("--private", "2M-4M,0x800000+1M") as never }, guest(false), layout, verdict(true, true))!;
  assert.deepEqual(ok.ranges, [{ start: 2n << 20n, end: 4n << 20n }, { start: 0x800000n, end: 0x900000n }]);
  assert.throws(() => resolvePrivateMemory({ private: [{ start: 0x1000n, end: 0x2000n }] }, guest(false), layout, verdict(true, true)), /must lie inside \[0x106000/);
  assert.throws(() => resolvePrivateMemory({ private: [{ start: 0x200800n, end: 0x300000n }] }, guest(false), layout, verdict(true, true)), /whole 4 KiB pages/);
  assert.throws(() => resolvePrivateMemory({ private: [{ start: 60n << 20n, end: 70n << 20n }] }, guest(false), layout, verdict(true, true)), /must lie inside/);
  assert.equal(parseRanges("--private", "ALL"), "all");
  assert.throws(() => parseRanges("--private", "2M..4M"), /is not a range/);
});

test("--shared-bit lies above 4 GiB and below the CPU's physical address width", () => {
  assert.equal(resolvePrivateMemory({ sharedBit: 32 }, guest(true), layout, verdict(false, true))!.sharedBit, 32);
  assert.equal(resolvePrivateMemory({ sharedBit: 47 }, guest(true), layout, verdict(false, true))!.sharedBit, 47);
  for (const bit of [31, 48, 63])
    assert.throws(
      () => resolvePrivateMemory({ sharedBit: bit }, guest(true), layout, verdict(false, true)),
      (e: unknown) =>
        e instanceof UsageError &&
        e.message === `privateMemory.sharedBit ${bit} is out of range` &&
        e.describe(CLI_FLAGS).startsWith(`--shared-bit ${bit} is out of range\n  hint: use 32 to 47`),
    );
});

test("--convert-via picks the doorbell on a KVM with hypercalls, and refuses the hypercall where it cannot exit (69)", () => {
  assert.equal(resolvePrivateMemory({ convertVia: "doorbell" }, guest(true), layout, verdict(true, true))!.convertMethod, "doorbell");
  assert.equal(resolvePrivateMemory({ convertVia: "hypercall" }, guest(true), layout, verdict(true, true))!.convertMethod, "hypercall");
  assert.throws(
    () => resolvePrivateMemory({ convertVia: "hypercall" }, guest(true), layout, verdict(false, true, false)),
    (e: unknown) => e instanceof TsvmmError && e.status === 69 && /--convert-via doorbell/.test(e.hint!),
  );
});

test("--discard defaults to always (today's behaviour) and passes never through", () => {
  assert.equal(resolvePrivateMemory({}, guest(true), layout, verdict(true, true))!.discard, "always");
  assert.equal(resolvePrivateMemory({ discard: "never" }, guest(true), layout, verdict(true, true))!.discard, "never");
});

test("multiboot and Linux guests: plain shared RAM unless --backend names one, then all of RAM shared on it", () => {
  const pc: Layout = { ramSize: 256n << 20n, ram: [{ base: 0n, size: 256n << 20n }], cpus: 1, regions: [], freeBase: 0n };
  assert.equal(resolvePcMemory({}, pc, verdict(true, true)), undefined);
  assert.equal(resolvePcMemory({ backend: "auto", private: "none" }, pc, verdict(true, true)), undefined);
  for (const backend of ["attributes", "memslots"] as const) {
    const pm = resolvePcMemory({ backend }, pc, verdict(true, true))!;
    assert.equal(pm.backend, backend);
    assert.deepEqual(pm.ranges, [], "nothing private at the start");
    assert.equal(pm.sharedBit, 0);
  }
  const describe = (e: unknown) => (e instanceof TsvmmError ? `${e.status} ${e.describe(CLI_FLAGS)}` : String(e));
  assert.throws(() => resolvePcMemory({ backend: "memslots" }, pc, verdict(true, false)), (e: unknown) => /^69 private memory is not available here: --backend memslots: needs a native KVM/.test(describe(e)));
  for (const req of [{ private: "all" as const }, { sharedBit: 40 }, { prefault: true }])
    assert.throws(() => resolvePcMemory(req, pc, verdict(true, true)), (e: unknown) => e instanceof UsageError && /is for tsvmm's own test guests/.test(describe(e)));
  const above4G: Layout = { ...pc, ramSize: 4n << 30n, ram: [{ base: 0n, size: 3n << 30n }, { base: 4n << 30n, size: 1n << 30n }] };
  assert.throws(() => resolvePcMemory({ backend: "attributes" }, above4G, verdict(true, true)), (e: unknown) => e instanceof UsageError && /--mem 4096 MiB needs RAM above 4 GiB/.test(describe(e)));
});
