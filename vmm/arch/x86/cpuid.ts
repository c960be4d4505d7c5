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

/**
 * CPUID for a PC guest (multiboot, Linux): the supported CPUID with this vCPU's APIC ID and a
 * topology of `cpus` single-threaded cores in one package, as the leaves Linux reads describe it
 * (1, 4, 0xb/0x1f on Intel; 0x80000008, 0x8000001e on AMD). No hypercall features.
 */
export function pcCpuidFor(index: number, cpus: number, supported: CpuidEntry[]): CpuidEntry[] {
  const coreBits = cpus > 1 ? Math.ceil(Math.log2(cpus)) : 0;
  return cpuidFor(index, supported, false).map((c) => {
    switch (c.function) {
      case 0x1:
        // EBX[23:16]: logical processors per package; EDX bit 28 (HTT) says that field is valid.
        c.ebx = ((c.ebx & 0xff00ffff) | ((cpus & 0xff) << 16)) >>> 0;
        c.edx = (c.edx | (1 << 28)) >>> 0;
        break;
      case 0x4:
        // EAX[31:26]: cores per package - 1 (every cache subleaf)
        if (c.eax & 0x1f) c.eax = ((c.eax & 0x03ffffff) | ((cpus - 1) << 26)) >>> 0;
        break;
      case 0xb:
      case 0x1f:
        // Level 0: SMT (1 thread per core); level 1: cores (shift = bits of the core id).
        if (c.index === 0) Object.assign(c, { eax: 0, ebx: 1, ecx: (1 << 8) | 0 });
        else if (c.index === 1) Object.assign(c, { eax: coreBits, ebx: cpus, ecx: (2 << 8) | 1 });
        else Object.assign(c, { eax: 0, ebx: 0, ecx: c.index });
        c.edx = index;
        break;
      case 0x80000008:
        // ECX[7:0]: cores - 1; ECX[15:12]: APIC ID bits of the core id
        c.ecx = ((c.ecx & ~0xf0ff) | (coreBits << 12) | ((cpus - 1) & 0xff)) >>> 0;
        break;
      case 0x8000001e:
        // EAX: extended APIC ID; EBX[7:0]: core id, EBX[15:8]: threads per core - 1
        c.eax = index;
        c.ebx = ((c.ebx & ~0xffff) | (index & 0xff)) >>> 0;
        break;
    }
    return c;
  });
}
