// uAPI numbers from the kernel's include/uapi/linux/kvm.h (Linux 7.3) that tsvmm uses; the native
// side defines the same ones in native/src/kvm_uapi.h.

export const KVM_API_VERSION = 12;

export const Cap = {
  NR_VCPUS: 9,
  NR_MEMSLOTS: 10,
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
export const Errno = { EINVAL: 22 } as const;

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

export const IoDirection = { IN: 0, OUT: 1 } as const;
