import { test } from "node:test";
import assert from "node:assert/strict";
import { tsvmm } from "../support/cli";
import { requireKvm } from "../support/host";

test("caps --json reports the probe and a verdict", { timeout: 30000 }, async (t) => {
  if (!requireKvm(t)) return;
  const r = await tsvmm(["caps", "--json"]);
  assert.equal(r.status, 0, r.stderr);
  const { probe, verdict } = JSON.parse(r.stdout);
  assert.equal(probe.apiVersion, 12);
  assert.ok(["kvm_intel", "kvm_amd", "kvm_pvm", "unknown"].includes(probe.vendorModule));
  for (const k of ["vmTypes", "guestMemfd", "guestMemfdFlags", "memoryAttributes", "userMemory2", "memoryFaultInfo", "exitHypercall", "syncRegs", "nrMemslots"])
    assert.equal(typeof probe.system[k], "number", k);
  assert.ok(probe.vmTypes.default, "the default VM type is always probed");
  assert.ok(["native", "emulated", "unknown"].includes(verdict.execution));
  assert.ok(verdict.lines.length >= 3);
});

test("caps prints a readable report that ends in a verdict", { timeout: 30000 }, async (t) => {
  if (!requireKvm(t)) return;
  const r = await tsvmm(["caps"]);
  assert.equal(r.status, 0, r.stderr);
  for (const k of ["vendor module", "GUEST_MEMFD_FLAGS", "MEMORY_ATTRIBUTES", "EXIT_HYPERCALL", "SYNC_REGS", "NR_MEMSLOTS", "backend memslots", "Private memory"])
    assert.ok(r.stdout.includes(k), k);
});

test("caps on a missing device names the problem and the fix (69)", { timeout: 30000 }, async () => {
  const r = await tsvmm(["caps", "--device", "/dev/no-such-kvm"]);
  assert.equal(r.status, 69, r.stderr);
  assert.match(r.stderr, /ENOENT/);
  assert.match(r.stderr, /hint: .*(CONFIG_KVM|tsvmm lab)/);
});
