// uAPI numbers from the kernel's include/uapi/linux/kvm.h (Linux 7.3) that tsvmm uses; the native
// side defines the same ones in native/src/kvm_uapi.h.

export const KVM_API_VERSION = 12;

export const Cap = {
  IRQCHIP: 0,
  NR_VCPUS: 9,
  PIT2: 33,
  NR_MEMSLOTS: 10,
  SET_GUEST_DEBUG: 23,
  MAX_VCPUS: 66,
  SYNC_REGS: 74,
  IMMEDIATE_EXIT: 136,
  X86_USER_SPACE_MSR: 188,
  EXIT_HYPERCALL: 201,
  USER_MEMORY2: 231,
  MEMORY_FAULT_INFO: 232,
  MEMORY_ATTRIBUTES: 233,
  GUEST_MEMFD: 234,
  VM_TYPES: 235,
  PRE_FAULT_MEMORY: 236,
  SET_GUEST_DEBUG2: 195,
  GUEST_MEMFD_FLAGS: 244,
} as const;

export const VmType = {
  DEFAULT: 0,
  SW_PROTECTED: 1,
  SEV: 2,
  SEV_ES: 3,
  SNP: 4,
  TDX: 5,
} as const;

export const VM_TYPE_NAMES = ["default", "sw-protected", "sev", "sev-es", "snp", "tdx"];

export const GuestMemfdFlag = { MMAP: 1n, INIT_SHARED: 2n } as const;
export const MemFlag = { LOG_DIRTY_PAGES: 1, READONLY: 2, GUEST_MEMFD: 4 } as const;
export const MEMORY_ATTRIBUTE_PRIVATE = 8n;
export const MEMORY_EXIT_FLAG_PRIVATE = 8n;
export const HC_MAP_GPA_RANGE = 12;
/** KVM_CAP_EXIT_HYPERCALL's argument: the hypercalls that exit to userspace */
export const EXIT_HYPERCALL_MAP_GPA_RANGE = 1n << BigInt(HC_MAP_GPA_RANGE);
/** <linux/kvm_para.h>: a hypercall KVM does not know */
export const KVM_ENOSYS = 1000;
/** <asm-generic/errno-base.h> numbers tsvmm hands to guests */
export const Errno = { EFAULT: 14, EINVAL: 22 } as const;

export const SystemEvent = { SHUTDOWN: 1, RESET: 2, CRASH: 3 } as const;

export const MpState = { RUNNABLE: 0, UNINITIALIZED: 1, INIT_RECEIVED: 2, HALTED: 3, SIPI_RECEIVED: 4 } as const;
export const PIT_SPEAKER_DUMMY = 1;

export const SyncRegs = { REGS: 1, SREGS: 2, EVENTS: 4 } as const;

export const Exit = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  NMI: 16,
  INTERNAL_ERROR: 17,
  SYSTEM_EVENT: 24,
  X86_RDMSR: 29,
  X86_WRMSR: 30,
  MEMORY_FAULT: 39,
} as const;

const exitNames = new Map<number, string>(Object.entries(Exit).map(([name, n]) => [n, `KVM_EXIT_${name}`]));

export function exitName(reason: number): string {
  return exitNames.get(reason) ?? `exit reason ${reason}`;
}

export const InternalError = {
  EMULATION: 1,
  SIMUL_EX: 2,
  DELIVERY_EV: 3,
  UNEXPECTED_EXIT_REASON: 4,
} as const;

/** KVM_SET_GUEST_DEBUG control bits (x86) */
export const GuestDebug = {
  ENABLE: 0x1,
  SINGLESTEP: 0x2,
  USE_SW_BP: 0x10000,
  USE_HW_BP: 0x20000,
  INJECT_DB: 0x40000,
  INJECT_BP: 0x80000,
  BLOCKIRQ: 0x100000,
} as const;

export const IoDirection = { IN: 0, OUT: 1 } as const;
