import { test } from "node:test";
import assert from "node:assert/strict";
import { assessHost, HostProbe } from "../../vmm/host/caps";

const system = {
  vmTypes: 1, guestMemfd: 1, guestMemfdFlags: 3, memoryAttributes: 0, userMemory2: 1, memoryFaultInfo: 1,
  exitHypercall: 0x1000, syncRegs: 7, nrMemslots: 32764, immediateExit: 1, userSpaceMsr: 1, preFaultMemory: 0, maxVcpus: 1024, setGuestDebug: 1, guestDebugControls: 0x1f0003,
};
const vmDefault = { guestMemfd: 1, guestMemfdFlags: 3, memoryAttributes: 0, exitHypercall: 0x1000, userMemory2: 1 };

// Measured on this project's development machines (host-kvm.md).
const cpu = { amd: true, physicalAddressBits: 48 };
const pvm: HostProbe = { device: "/dev/kvm", vendorModule: "kvm_pvm", tdp: null, nested: true, apiVersion: 12, system, vmTypes: { default: vmDefault }, cpu };
// The nested lab with the sw-protected kernel.
const labSw: HostProbe = {
  device: "/dev/kvm", vendorModule: "kvm_amd", tdp: true, nested: true, apiVersion: 12,
  system: { ...system, vmTypes: 3, memoryAttributes: 8 },
  vmTypes: { default: vmDefault, "sw-protected": { ...vmDefault, guestMemfdFlags: 1, memoryAttributes: 8 } },
  cpu,
};

test("kvm_pvm: runs guests emulated on guest_memfd RAM, refuses private memory and points to the lab", () => {
  const v = assessHost(pvm);
  assert.equal(v.canRun, true);
  assert.equal(v.execution, "emulated");
  assert.equal(v.ramBacking, "guest_memfd");
  assert.equal(v.backends.attributes.available, false);
  assert.equal(v.backends.memslots.available, false);
  assert.match(v.backends.memslots.reason, /tsvmm lab/);
  assert.equal(v.hypercallExit, false);
  assert.equal(v.memoryFaultExit, false);
  assert.match(v.lines.join("\n"), /never produces KVM_EXIT_MEMORY_FAULT/);
});

test("the lab's sw-protected kernel offers both backends, hypercall and memory-fault exits", () => {
  const v = assessHost(labSw);
  assert.equal(v.execution, "native");
  assert.equal(v.backends.attributes.available, true);
  assert.equal(v.backends.memslots.available, true);
  assert.equal(v.hypercallExit, true);
  assert.equal(v.memoryFaultExit, true);
});

test("caps states the memslots backend's slot budget where that backend is available", () => {
  const v = assessHost({ ...labSw, system: { ...labSw.system, nrMemslots: 32764 } });
  assert.match(v.lines.join("\n"), /memslots backend may use 32763 memslots \(KVM_CAP_NR_MEMSLOTS 32764, one kept for the test slot\).*about 16381 .*\(8190 with --shared-bit\)/);
});

test("a stock kernel: memslots only, and the attributes refusal names the kernel option", () => {
  const v = assessHost({ ...labSw, system: { ...labSw.system, vmTypes: 1 }, vmTypes: { default: vmDefault } });
  assert.equal(v.backends.memslots.available, true);
  assert.equal(v.backends.attributes.available, false);
  assert.match(v.backends.attributes.reason, /CONFIG_KVM_SW_PROTECTED_VM/);
});

test("a kernel before 6.18 falls back to memfd RAM", () => {
  const v = assessHost({ ...labSw, vmTypes: { default: { ...vmDefault, guestMemfdFlags: 0 } } });
  assert.equal(v.ramBacking, "memfd");
  assert.match(v.ramBackingReason, /6\.18/);
  assert.equal(v.backends.memslots.available, false);
});

test("RAM is guest_memfd only with both MMAP and INIT_SHARED and the REGION2 ioctl", () => {
  assert.equal(assessHost({ ...labSw, vmTypes: { default: { ...vmDefault, guestMemfdFlags: 1 } } }).ramBacking, "memfd");
  assert.equal(assessHost({ ...labSw, vmTypes: { default: { ...vmDefault, guestMemfdFlags: 7 } } }).ramBacking, "guest_memfd");
  const old = assessHost({ ...labSw, system: { ...labSw.system, userMemory2: 0 } });
  assert.equal(old.ramBacking, "memfd");
  assert.equal(old.memoryRegion2, false);
  assert.equal(assessHost(labSw).physicalAddressBits, 48);
});

test("guest debugging: measured limits on kvm_pvm, refused on a nested KVM and without the capability", () => {
  const onPvm = assessHost(pvm).debugging;
  assert.equal(onPvm.guestDebug, true);
  assert.match(onPvm.line, /int3 is an emulation failure/);
  assert.match(onPvm.watchRefusal!, /data watchpoints never fire on kvm_pvm/);
  assert.match(onPvm.line, /watchpoints are refused/);
  const nestedAmd = assessHost({ ...pvm, vendorModule: "kvm_amd", tdp: true }).debugging;
  assert.equal(nestedAmd.guestDebug, false);
  assert.match(nestedAmd.refusal!, /nested KVM/);
  assert.equal(nestedAmd.watchRefusal, nestedAmd.refusal, "watchpoints are refused for the same reason");
  const none = assessHost({ ...pvm, system: { ...pvm.system, setGuestDebug: 0 } }).debugging;
  assert.equal(none.guestDebug, false);
  assert.match(none.refusal!, /lacks KVM_SET_GUEST_DEBUG/);
});
