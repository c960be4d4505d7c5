// Whether this KVM keeps CPUID leaf 0xD consistent with the guest's XCR0, and how to hide XSAVE
// from a guest where it does not. Measured: in the nested lab (KVM under QEMU TCG), after a guest
// enables AVX state with XSETBV, CPUID.(0xD,0).EBX still reports the x87/SSE-only size (576, not
// 832), and Linux stops with "XSAVE consistency problem" (QEMU inside the lab shows the same).
// A 13-instruction probe guest asks the KVM itself; on a correct KVM nothing is hidden.
import type { NativeKvm } from "../../native";
import { loadAddon } from "../../native";
import type { CpuidEntry } from "../../kvm/structs";
import { encodeCpuid } from "../../kvm/structs";
import { enterFlat32 } from "./reset";
import { startVcpuThread } from "../../machine/threads";
import type { VcpuThreadData, VcpuThreadMessage } from "../../machine/vcpuThread";
import { ExitMailbox } from "../../machine/exitMailbox";

const XSAVE = 1 << 26;
const LEGACY_AREA = 576; // x87/SSE legacy area + XSAVE header
const PROBE_GPA = 0x1000;
const PROBE_PORT = 0xf4;
/** Generous: in the nested lab under load a VM takes seconds to get going */
const PROBE_LIMIT_MS = 15000;

/** The XSAVE area size CPUID's subleaves give for the features in `xcr0` */
export function xsaveSize(cpuid: CpuidEntry[], xcr0: bigint): number {
  let size = LEGACY_AREA;
  for (let i = 2; i < 64; i++) {
    if (!(xcr0 & (1n << BigInt(i)))) continue;
    const e = cpuid.find((c) => c.function === 0xd && c.index === i);
    if (e) size = Math.max(size, e.ebx + e.eax);
  }
  return size;
}

/** XCR0 a guest may enable: CPUID.(0xD,0).EDX:EAX, or undefined without XSAVE state beyond SSE */
function supportedXcr0(cpuid: CpuidEntry[]): bigint | undefined {
  const leaf1 = cpuid.find((c) => c.function === 1);
  const d0 = cpuid.find((c) => c.function === 0xd && c.index === 0);
  if (!leaf1 || !(leaf1.ecx & XSAVE) || !d0) return undefined;
  const xcr0 = (BigInt(d0.edx >>> 0) << 32n) | BigInt(d0.eax >>> 0);
  return xcr0 > 3n ? xcr0 : undefined;
}

/** The probe: CR4.OSXSAVE, XSETBV(xcr0 low word), CPUID(0xD, 0), out EBX to PROBE_PORT. */
function probeCode(xcr0Low: number): Buffer {
  const imm = Buffer.alloc(4);
  imm.writeUInt32LE(xcr0Low >>> 0);
  return Buffer.from([
    0x0f, 0x20, 0xe0, // mov %cr4, %eax
    0x0d, 0x00, 0x00, 0x04, 0x00, // or $0x40000 (OSXSAVE), %eax
    0x0f, 0x22, 0xe0, // mov %eax, %cr4
    0x31, 0xc9, // xor %ecx, %ecx
    0x31, 0xd2, // xor %edx, %edx
    0xb8, ...imm, // mov $xcr0, %eax
    0x0f, 0x01, 0xd1, // xsetbv
    0xb8, 0x0d, 0x00, 0x00, 0x00, // mov $0xd, %eax
    0x31, 0xc9, // xor %ecx, %ecx
    0x0f, 0xa2, // cpuid
    0x89, 0xd8, // mov %ebx, %eax
    0xe7, PROBE_PORT, // out %eax, $0xf4
    0xf4, // hlt
  ]);
}

/**
 * Run the probe in a throwaway VM: true when CPUID.(0xD,0).EBX follows XCR0 (or there is nothing
 * to check), false when it does not, with what was seen.
 */
export async function xsaveConsistent(kvm: NativeKvm, cpuid: CpuidEntry[]): Promise<{ ok: boolean; detail: string; inconclusive?: boolean }> {
  const xcr0 = supportedXcr0(cpuid);
  if (xcr0 === undefined) return { ok: true, detail: "no XSAVE state beyond SSE" };
  const want = xsaveSize(cpuid, xcr0);
  const vm = kvm.createVm(0);
  const ram = new (loadAddon().Memfd)("tsvmm-xsave-probe", 0x10000n);
  const vcpu = vm.createVcpu(0);
  try {
    Buffer.from(ram.map()).set(probeCode(Number(xcr0 & 0xffffffffn)), PROBE_GPA);
    vm.setUserMemoryRegion({ slot: 0, flags: 0, guestPhysAddr: 0n, memorySize: ram.size, userspaceAddr: ram.address, guestMemfd: -1, guestMemfdOffset: 0n });
    vcpu.setCpuid(encodeCpuid(cpuid));
    enterFlat32(vcpu, { rip: BigInt(PROBE_GPA) });
    // On a vCPU thread (KVM_RUN blocks): it hands over the probe's first exit with the vCPU paused.
    const seen = await new Promise<number | string>((resolve) => {
      const limit = setTimeout(() => resolve("no answer"), PROBE_LIMIT_MS);
      const view = new DataView(vcpu.run);
      const exits = new ExitMailbox(1);
      exits.watch(1, () => {
        clearTimeout(limit);
        exits.stop();
        // KVM_EXIT_IO (2) at PROBE_PORT carries EBX; anything else is a failed probe.
        if (view.getUint32(8, true) === 2 && view.getUint16(34, true) === PROBE_PORT) resolve(view.getUint32(Number(view.getBigUint64(40, true)), true));
        else resolve(`exit reason ${view.getUint32(8, true)}`);
      });
      const data: VcpuThreadData = { handle: vcpu.handle, exits: exits.buffer };
      startVcpuThread(data, {
        error: (err) => resolve(err.message),
        message: (m: VcpuThreadMessage) => {
          clearTimeout(limit);
          resolve(m.error);
        },
        done: () => exits.stop(), // vcpu.close() below stops the vCPU; the thread goes back to the pool
      });
    });
    if (typeof seen === "string") return { ok: true, inconclusive: true, detail: `the XSAVE probe was inconclusive (${seen}): XSAVE left visible` };
    const detail = `XCR0=0x${xcr0.toString(16)}: CPUID.(0xD,0).EBX=${seen}, the subleaves add up to ${want}`;
    return { ok: seen === want, detail };
  } finally {
    vcpu.close();
    vm.close();
    ram.close();
  }
}

// Leaf 1 ECX: FMA, XSAVE, OSXSAVE, AVX, F16C; leaf 7 EBX: AVX2 and the AVX-512 family.
const LEAF1_ECX_XSAVE_USERS = (1 << 12) | XSAVE | (1 << 27) | (1 << 28) | (1 << 29);
const LEAF7_EBX_AVX = (1 << 5) | (1 << 16) | (1 << 17) | (1 << 21) | (1 << 26) | (1 << 27) | (1 << 28) | (1 << 30) | (1 << 31);

/** The CPUID without XSAVE and the features that need it (leaf 0xD emptied). */
export function hideXsave(cpuid: CpuidEntry[]): CpuidEntry[] {
  return cpuid.map((c) => {
    const e = { ...c };
    if (e.function === 1) e.ecx = (e.ecx & ~LEAF1_ECX_XSAVE_USERS) >>> 0;
    if (e.function === 7 && e.index === 0) e.ebx = (e.ebx & ~LEAF7_EBX_AVX) >>> 0;
    if (e.function === 0xd) Object.assign(e, { eax: 0, ebx: 0, ecx: 0, edx: 0 });
    return e;
  });
}
