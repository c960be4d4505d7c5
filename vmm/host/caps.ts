// What the host's KVM offers, and what tsvmm can do with it. probeHost() asks the kernel;
// assessHost() is pure and turns the answers into a verdict.
import * as fs from "node:fs";
import { memslotBudget } from "../memory/backend";
import { loadAddon, NativeKvm } from "../native";
import { Cap, EXIT_HYPERCALL_MAP_GPA_RANGE, KVM_API_VERSION, MEMORY_ATTRIBUTE_PRIVATE, VM_TYPE_NAMES } from "../kvm/uapi";
import { decodeCpuid } from "../kvm/structs";
import { isAmd, physicalAddressBits } from "../arch/x86/cpuid";
import { chooseSharedRam, RamBacking } from "../memory/shared";
import { fromSyscall, isSyscallError } from "../errors";

export type VendorModule = "kvm_intel" | "kvm_amd" | "kvm_pvm" | "unknown";

export interface VmScopeCaps {
  guestMemfd: number;
  guestMemfdFlags: number;
  memoryAttributes: number;
  exitHypercall: number;
  userMemory2: number;
}

export interface HostProbe {
  device: string;
  vendorModule: VendorModule;
  /** Two-dimensional paging module parameter (ept/npt), when the vendor module has one */
  tdp: boolean | null;
  /** This machine is itself a VM (the CPU's hypervisor flag): its KVM is nested */
  nested: boolean;
  apiVersion: number;
  system: {
    vmTypes: number;
    guestMemfd: number;
    guestMemfdFlags: number;
    memoryAttributes: number;
    userMemory2: number;
    memoryFaultInfo: number;
    exitHypercall: number;
    syncRegs: number;
    nrMemslots: number;
    immediateExit: number;
    userSpaceMsr: number;
    preFaultMemory: number;
    maxVcpus: number;
    /** KVM_CAP_SET_GUEST_DEBUG */
    setGuestDebug: number;
    /** KVM_CAP_SET_GUEST_DEBUG2: the KVM_GUESTDBG_* control bits accepted (0 on kernels before 5.14) */
    guestDebugControls: number;
  };
  /** VM-scope answers for every VM type the host lists */
  vmTypes: Record<string, VmScopeCaps | { error: string }>;
  /** From KVM_GET_SUPPORTED_CPUID */
  cpu: { amd: boolean; physicalAddressBits: number };
}

export type Backend = "attributes" | "memslots";

export interface Verdict {
  canRun: boolean;
  execution: "native" | "emulated" | "unknown";
  executionBasis: string;
  /** The backing of RAM that is not private, decided here once for the whole run */
  ramBacking: RamBacking;
  ramBackingReason: string;
  /** KVM_SET_USER_MEMORY_REGION2 is available (used for a memfd too) */
  memoryRegion2: boolean;
  /** The CPU's guest-physical address width (bounds --shared-bit) */
  physicalAddressBits: number;
  /** AMD CPUs take vmmcall for hypercalls, Intel ones vmcall */
  amd: boolean;
  backends: Record<Backend, { available: boolean; reason: string }>;
  hypercallExit: boolean;
  memoryFaultExit: boolean;
  /** KVM_PRE_FAULT_MEMORY (--prefault): the reason when it is missing */
  preFault: { available: boolean; reason: string };
  /** What the debugger (--monitor, --gdb, addr= breakpoints) can use here */
  debugging: { guestDebug: boolean; line: string; refusal?: string; watchRefusal?: string };
  lines: string[];
}

function runsInVm(): boolean {
  try {
    return /^flags\s*:.*\bhypervisor\b/m.test(fs.readFileSync("/proc/cpuinfo", "utf8"));
  } catch {
    return false;
  }
}

function detectVendor(): { vendorModule: VendorModule; tdp: boolean | null } {
  const param = (mod: string, name: string): boolean | null => {
    try {
      const v = fs.readFileSync(`/sys/module/${mod}/parameters/${name}`, "utf8").trim();
      return v === "Y" || v === "1";
    } catch {
      return null;
    }
  };
  if (fs.existsSync("/sys/module/kvm_pvm")) return { vendorModule: "kvm_pvm", tdp: null };
  if (fs.existsSync("/sys/module/kvm_intel")) return { vendorModule: "kvm_intel", tdp: param("kvm_intel", "ept") };
  if (fs.existsSync("/sys/module/kvm_amd")) return { vendorModule: "kvm_amd", tdp: param("kvm_amd", "npt") };
  return { vendorModule: "unknown", tdp: null };
}

/** Open the KVM device; a failure names the device and the likely fix (status 69 where environmental). */
export function openKvm(device = "/dev/kvm"): NativeKvm {
  try {
    return new (loadAddon().Kvm)(device);
  } catch (err) {
    throw isSyscallError(err) ? fromSyscall(err, `cannot open ${device}`) : err;
  }
}

export function probeHost(device = "/dev/kvm", kvm?: NativeKvm): HostProbe {
  const own = !kvm;
  const k = kvm ?? new (loadAddon().Kvm)(device);
  try {
    const c = (cap: number) => k.checkExtension(cap);
    const system = {
      vmTypes: c(Cap.VM_TYPES),
      guestMemfd: c(Cap.GUEST_MEMFD),
      guestMemfdFlags: c(Cap.GUEST_MEMFD_FLAGS),
      memoryAttributes: c(Cap.MEMORY_ATTRIBUTES),
      userMemory2: c(Cap.USER_MEMORY2),
      memoryFaultInfo: c(Cap.MEMORY_FAULT_INFO),
      exitHypercall: c(Cap.EXIT_HYPERCALL),
      syncRegs: c(Cap.SYNC_REGS),
      nrMemslots: c(Cap.NR_MEMSLOTS),
      immediateExit: c(Cap.IMMEDIATE_EXIT),
      userSpaceMsr: c(Cap.X86_USER_SPACE_MSR),
      preFaultMemory: c(Cap.PRE_FAULT_MEMORY),
      maxVcpus: c(Cap.MAX_VCPUS),
      setGuestDebug: c(Cap.SET_GUEST_DEBUG),
      guestDebugControls: c(Cap.SET_GUEST_DEBUG2),
    };
    const vmTypes: HostProbe["vmTypes"] = {};
    const mask = system.vmTypes || 1;
    for (let type = 0; type < 32; type++) {
      if (!(mask & (1 << type))) continue;
      const name = VM_TYPE_NAMES[type] ?? `type-${type}`;
      try {
        const vm = k.createVm(type);
        try {
          vmTypes[name] = {
            guestMemfd: vm.checkExtension(Cap.GUEST_MEMFD),
            guestMemfdFlags: vm.checkExtension(Cap.GUEST_MEMFD_FLAGS),
            memoryAttributes: vm.checkExtension(Cap.MEMORY_ATTRIBUTES),
            exitHypercall: vm.checkExtension(Cap.EXIT_HYPERCALL),
            userMemory2: vm.checkExtension(Cap.USER_MEMORY2),
          };
        } finally {
          vm.close();
        }
      } catch (err) {
        vmTypes[name] = { error: (err as Error).message };
      }
    }
    const cpuid = decodeCpuid(k.supportedCpuid());
    const cpu = { amd: isAmd(cpuid), physicalAddressBits: physicalAddressBits(cpuid) };
    return { device, ...detectVendor(), nested: runsInVm(), apiVersion: k.apiVersion(), system, vmTypes, cpu };
  } finally {
    if (own) k.close();
  }
}

/** What to do when this KVM cannot give private memory: run in the lab, or (inside it) its other kernel. */
export function privateMemoryHint(lab = process.env.TSVMM_LAB): string {
  if (lab === "stock") return "this is the lab's stock kernel: run it in the lab's sw-protected kernel instead (tsvmm lab --kernel sw-protected -- tsvmm run ...)";
  if (lab) return `this is the lab's ${lab} kernel: compare with tsvmm lab --kernel stock, or see vmm/lab/kernel/sw-protected.config`;
  return "run it in the nested lab: tsvmm lab -- tsvmm run ...";
}

export function assessHost(p: HostProbe): Verdict {
  const lines: string[] = [];
  let execution: Verdict["execution"] = "unknown";
  let executionBasis = "no vendor module found under /sys/module";
  if (p.vendorModule === "kvm_pvm") {
    execution = "emulated";
    executionBasis =
      "kvm_pvm: guests run, but every instruction is emulated and the guest only sees each slot's userspace_addr";
  } else if (p.vendorModule === "kvm_intel" || p.vendorModule === "kvm_amd") {
    const param = p.vendorModule === "kvm_intel" ? "ept" : "npt";
    execution = p.tdp === false ? "emulated" : "native";
    executionBasis =
      p.tdp === false
        ? `${p.vendorModule} with ${param}=N: shadow paging, no guest_memfd faults`
        : `${p.vendorModule} with ${param}=Y: hardware virtualization with two-dimensional paging`;
  }

  const defaultVm = p.vmTypes["default"];
  const defaultFlags = defaultVm && !("error" in defaultVm) ? defaultVm.guestMemfdFlags : 0;
  const memoryRegion2 = p.system.userMemory2 > 0;
  const ramBacking = chooseSharedRam(memoryRegion2, defaultFlags);
  const gmemRam = ramBacking === "guest_memfd";
  const ramBackingReason = gmemRam
    ? "guest_memfd with MMAP|INIT_SHARED on a default VM (KVM_CAP_GUEST_MEMFD_FLAGS = " + defaultFlags + ")"
    : "KVM_CAP_GUEST_MEMFD_FLAGS lacks MMAP|INIT_SHARED on a default VM (needs Linux 6.18+): RAM is a memfd";

  const real = execution === "native";
  const sw = p.vmTypes["sw-protected"];
  const swAttrs = sw && !("error" in sw) ? BigInt(sw.memoryAttributes) & MEMORY_ATTRIBUTE_PRIVATE : 0n;
  const attributes = {
    available: real && swAttrs !== 0n,
    reason: !real
      ? `private memory needs a KVM that runs guests natively with nested/two-dimensional paging; this host is ${execution} (${p.vendorModule}). Try \`tsvmm lab\``
      : !sw
        ? "VM type 1 (KVM_X86_SW_PROTECTED_VM) is not offered: the kernel needs CONFIG_KVM_SW_PROTECTED_VM=y and the TDP MMU (try `tsvmm lab --kernel sw-protected`)"
        : swAttrs === 0n
          ? "VM type 1 exists but KVM_CAP_MEMORY_ATTRIBUTES lacks PRIVATE"
          : "VM type 1 with KVM_SET_MEMORY_ATTRIBUTES(PRIVATE)",
  };
  const memslots = {
    available: real && gmemRam,
    reason: !real
      ? `private memory needs a KVM that runs guests natively; on this host (${p.vendorModule}) the guest reads memory through userspace_addr, so a page could not be kept from the host. Try \`tsvmm lab\``
      : !gmemRam
        ? "guest_memfd MMAP|INIT_SHARED is missing on a default VM (needs Linux 6.18+)"
        : "default VM with guest_memfd-only memslots (MMAP with and without INIT_SHARED)",
  };
  const hypercallExit = real && (BigInt(p.system.exitHypercall) & EXIT_HYPERCALL_MAP_GPA_RANGE) !== 0n;
  const memoryFaultExit = real && p.system.memoryFaultInfo > 0;
  const canRun = p.apiVersion === KVM_API_VERSION;

  lines.push(
    canRun
      ? `tsvmm can boot its test guests here (${execution} execution, RAM backed by ${ramBacking}).`
      : `tsvmm cannot run here: KVM API version ${p.apiVersion}, expected ${KVM_API_VERSION}.`,
  );
  lines.push(
    attributes.available || memslots.available
      ? `Private memory: ${[attributes.available && "attributes", memslots.available && "memslots"].filter(Boolean).join(" and ")} backend available.`
      : `Private memory: not available. ${memslots.reason}.`,
  );
  if (memslots.available) {
    const { backendSlots } = memslotBudget(p.system.nrMemslots);
    lines.push(
      `The memslots backend may use ${backendSlots} memslots (KVM_CAP_NR_MEMSLOTS ${p.system.nrMemslots}, one kept for the test slot): one per run of equal state per view, so about ${backendSlots >> 1} alternating single-page conversions (${backendSlots >> 2} with --shared-bit); a request beyond that is refused.`,
    );
  }
  lines.push(
    hypercallExit
      ? "Conversions by KVM_HC_MAP_GPA_RANGE hypercall reach tsvmm."
      : real
        ? "KVM_CAP_EXIT_HYPERCALL lacks KVM_HC_MAP_GPA_RANGE: guests convert through the port doorbell."
        : "Hypercalls never reach userspace on this KVM (the vCPU would spin): guests use the port doorbell.",
  );
  lines.push(
    memoryFaultExit
      ? "KVM_EXIT_MEMORY_FAULT (exit 39) can be produced and handled here."
      : "This KVM never produces KVM_EXIT_MEMORY_FAULT; backing failures come back as MMIO exits.",
  );
  lines.push(
    real
      ? "Multiboot kernels (tsvmm run FILE) and Linux (tsvmm run --kernel bzImage) run natively on the PC platform (in-kernel irqchip and PIT)."
      : "Multiboot kernels run here (the multiboot test kernel in well under a second), but Linux (--kernel) is impractical: every instruction is emulated (a boot takes minutes) and KVM's emulator has no protected-mode iret, so interrupt handlers cannot return. Boot Linux on a real KVM or in `tsvmm lab --cpus 1` (the two-CPU lab stalls Linux guests now and then, under QEMU too).",
  );
  const preFault = p.system.preFaultMemory
    ? { available: true, reason: "KVM_PRE_FAULT_MEMORY maps a range into KVM's page tables ahead of the guest (--prefault)" }
    : { available: false, reason: "KVM_CAP_PRE_FAULT_MEMORY is 0: KVM_PRE_FAULT_MEMORY needs Linux 6.11+ with two-dimensional paging (ept/npt)" };
  if (attributes.available || memslots.available)
    lines.push(preFault.available ? "--prefault can map converted-to-private ranges ahead of the guest (KVM_PRE_FAULT_MEMORY)." : `--prefault is not available: ${preFault.reason}.`);
  const debugging = assessDebugging(p);
  lines.push(debugging.line);
  return {
    canRun,
    execution,
    executionBasis,
    ramBacking,
    ramBackingReason,
    memoryRegion2,
    physicalAddressBits: p.cpu.physicalAddressBits,
    amd: p.cpu.amd,
    backends: { attributes, memslots },
    hypercallExit,
    memoryFaultExit,
    preFault,
    debugging,
    lines,
  };
}

/** Guest debugging as measured on each kind of KVM (reference/host-kvm.md and the debug tests). */
function assessDebugging(p: HostProbe): Verdict["debugging"] {
  if (!p.system.setGuestDebug)
    return {
      guestDebug: false,
      refusal: "this KVM lacks KVM_SET_GUEST_DEBUG",
      watchRefusal: "this KVM lacks KVM_SET_GUEST_DEBUG",
      line: "Debugging: no KVM_SET_GUEST_DEBUG: event breakpoints and pause work; single-step, addr= breakpoints and watchpoints are refused.",
    };
  const controls = p.system.guestDebugControls ? ` (controls 0x${p.system.guestDebugControls.toString(16)})` : "";
  if (p.vendorModule === "kvm_pvm") {
    // Measured 2026-11-27: DR7 write and read/write watchpoints on .bss words that the guest
    // writes with mov and lock xadd never fired; KVM's instruction emulator, which runs every
    // guest instruction here, checks the debug registers for instruction addresses only.
    const watchRefusal = "data watchpoints never fire on kvm_pvm (measured: it emulates every instruction, and KVM's emulator checks debug registers for instruction breakpoints only)";
    return {
      guestDebug: true,
      watchRefusal,
      line: `Debugging: KVM_SET_GUEST_DEBUG${controls}: single-step and 4 debug-register instruction breakpoints (gdb's break and hbreak); measured on kvm_pvm: a step over an instruction that made an I/O exit runs one more instruction (its trap is lost), int3 is an emulation failure, so it is never used, and ${watchRefusal.replace(" on kvm_pvm", "")}, so watch and gdb's hardware watchpoints are refused (gdb's software watchpoints, set can-use-hw-watchpoints 0, single-step and work).`,
    };
  }
  if (p.nested) {
    // Measured in tsvmm's lab (kvm_amd nested in QEMU TCG), long mode: single-step stopped
    // trapping after 16 instructions, a DR0 execute breakpoint never fired, int3 reached the guest.
    const refusal = "guest debugging is unreliable on a nested KVM (measured in tsvmm's lab: single-step stops trapping after a few instructions, debug-register breakpoints never fire)";
    return { guestDebug: false, refusal, watchRefusal: refusal, line: `Debugging: KVM_SET_GUEST_DEBUG${controls} exists, but ${refusal}: event breakpoints and pause work; single-step, addr= and watchpoints are refused.` };
  }
  return { guestDebug: true, line: `Debugging: KVM_SET_GUEST_DEBUG${controls}: single-step and 4 debug registers for instruction breakpoints (gdb's break and hbreak) and watchpoints (watch, gdb's watch, rwatch, awatch).` };
}
