// CPUID: what the host's KVM supports, made per-vCPU, and the facts tsvmm reads from it.
import type { CpuidEntry } from "../../kvm/structs";

/** KVM_FEATURE_HC_MAP_GPA_RANGE: a bit of leaf 0x40000001 EAX */
const KVM_FEATURE_HC_MAP_GPA_RANGE = 16;

export function isAmd(cpuid: CpuidEntry[]): boolean {
  const leaf0 = cpuid.find((e) => e.function === 0);
  return leaf0?.ebx === 0x68747541; // "Auth"enticAMD
}

export function physicalAddressBits(cpuid: CpuidEntry[]): number {
  return (cpuid.find((e) => e.function === 0x80000008)?.eax ?? 36) & 0xff;
}

/** The supported CPUID, made per-vCPU: APIC IDs, and no hypercall feature we have not enabled. */
export function cpuidFor(index: number, supported: CpuidEntry[], hypercall: boolean): CpuidEntry[] {
  return supported.map((e) => {
    const c = { ...e };
    if (c.function === 1) c.ebx = ((c.ebx & 0x00ffffff) | (index << 24)) >>> 0;
    if (c.function === 0xb || c.function === 0x1f) c.edx = index;
    // Advertised only once KVM_CAP_EXIT_HYPERCALL is enabled (the kernel's Documentation/virt/kvm/x86/hypercalls.rst).
    if (c.function === 0x40000001)
      c.eax = hypercall ? c.eax | (1 << KVM_FEATURE_HC_MAP_GPA_RANGE) : c.eax & ~(1 << KVM_FEATURE_HC_MAP_GPA_RANGE);
    return c;
  });
}
