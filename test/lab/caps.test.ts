// `tsvmm caps --json` on the lab's real KVM.
import { test } from "node:test";
import assert from "node:assert/strict";
import { labCli, onLabKernel } from "./support";

interface Caps {
  probe: {
    vendorModule: string;
    tdp: boolean | null;
    system: { vmTypes: number; memoryAttributes: number; guestMemfdFlags: number; exitHypercall: number; memoryFaultInfo: number; preFaultMemory: number };
    vmTypes: Record<string, { memoryAttributes?: number; guestMemfdFlags?: number; error?: string }>;
  };
  verdict: {
    execution: string;
    hypercallExit: boolean;
    memoryFaultExit: boolean;
    preFault: { available: boolean };
    backends: Record<string, { available: boolean; reason: string }>;
  };
}

let cached: Promise<Caps> | undefined;
function caps(): Promise<Caps> {
  cached ??= labCli(["caps", "--json"]).then((r) => {
    assert.equal(r.status, 0, `tsvmm caps --json failed (${r.status}): ${r.stderr}`);
    return JSON.parse(r.stdout) as Caps;
  });
  return cached;
}

test("caps: kvm_amd with nested paging, guests run natively", { timeout: 240_000 }, async () => {
  const { probe, verdict } = await caps();
  assert.equal(probe.vendorModule, "kvm_amd");
  assert.equal(probe.tdp, true, "npt on");
  assert.equal(verdict.execution, "native");
  assert.ok(probe.system.memoryFaultInfo > 0, "KVM_CAP_MEMORY_FAULT_INFO");
  assert.equal(verdict.memoryFaultExit, true);
  assert.equal(verdict.hypercallExit, true, "KVM_HC_MAP_GPA_RANGE reaches userspace");
  assert.equal(probe.system.preFaultMemory, 1, "KVM_CAP_PRE_FAULT_MEMORY (6.11+, npt on)");
  assert.equal(verdict.preFault.available, true);
});

onLabKernel("sw-protected")("caps on the sw-protected kernel: VM type 1 with KVM_MEMORY_ATTRIBUTE_PRIVATE", { timeout: 240_000 }, async () => {
  const { probe, verdict } = await caps();
  assert.ok(probe.system.vmTypes & (1 << 1), `KVM_CAP_VM_TYPES=${probe.system.vmTypes} includes 1`);
  const sw = probe.vmTypes["sw-protected"];
  assert.ok(sw && !sw.error, `a VM of type 1 can be created: ${JSON.stringify(sw)}`);
  assert.ok((sw.memoryAttributes ?? 0) & 8, `VM-scope KVM_CAP_MEMORY_ATTRIBUTES=${sw.memoryAttributes} has PRIVATE (8)`);
  assert.equal(verdict.backends.attributes.available, true, verdict.backends.attributes.reason);
});

onLabKernel("stock")("caps on the stock kernel: no VM type 1, guest_memfd for the memslots backend", { timeout: 240_000 }, async () => {
  const { probe, verdict } = await caps();
  assert.equal(probe.system.vmTypes & (1 << 1), 0, "Debian's kernel has no CONFIG_KVM_SW_PROTECTED_VM");
  assert.equal(verdict.backends.attributes.available, false);
  assert.equal(verdict.backends.memslots.available, true, verdict.backends.memslots.reason);
});
