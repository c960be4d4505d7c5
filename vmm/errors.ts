// Errors and exit statuses. Every error the VMM reports names the operation, the errno and a fix.
import type { NativeSyscallError } from "./native";

/** Process exit statuses; 0..63 belong to the guest (guest/include/tsvmm/abi.h). */
export const ExitStatus = {
  OK: 0,
  USAGE: 64,
  BAD_IMAGE: 65,
  HOST_UNSUPPORTED: 69,
  INTERNAL: 70,
  GUEST_EXCEPTION: 71,
  TRIPLE_FAULT: 72,
  KVM_INTERNAL_ERROR: 73,
  UNHANDLED_EXIT: 74,
  MEMORY_FAULT: 75,
  BAD_HYPERCALL: 76,
  /** a PC guest reset the machine (i8042 0xfe, port 0xcf9, KVM_SYSTEM_EVENT_RESET) */
  GUEST_RESET: 79,
  /** a PC guest panicked (a panic line on the console, KVM_SYSTEM_EVENT_CRASH) */
  GUEST_PANIC: 80,
  TIMEOUT: 124,
  INTERRUPTED: 130,
} as const;

/** A failure with a status and a message meant for a person. */
export class TsvmmError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly hint?: string,
  ) {
    super(message);
    this.name = "TsvmmError";
  }

  describe(): string {
    return this.hint ? `${this.message}\n  hint: ${this.hint}` : this.message;
  }
}

export class BadImageError extends TsvmmError {
  constructor(image: string, problem: string) {
    super(`${image}: ${problem}; nothing was started`, ExitStatus.BAD_IMAGE);
  }
}

export class UsageError extends TsvmmError {
  constructor(message: string, hint?: string) {
    super(message, ExitStatus.USAGE, hint);
  }
}

export function isSyscallError(err: unknown): err is NativeSyscallError {
  return err instanceof Error && typeof (err as NativeSyscallError).errno === "number" && "operation" in err;
}

const HOST_HINTS: Record<string, string> = {
  ENOENT: "there is no /dev/kvm: load kvm_intel or kvm_amd (CONFIG_KVM), or run inside `tsvmm lab`",
  EACCES: "you may not open /dev/kvm: add your user to the kvm group or fix the device's ACL",
  EPERM: "you may not open /dev/kvm: add your user to the kvm group or fix the device's ACL",
};

/** Turn a native syscall failure into a TsvmmError with a hint where the cause is environmental. */
export function fromSyscall(err: NativeSyscallError, context: string, status: number = ExitStatus.INTERNAL): TsvmmError {
  const hint = err.operation.startsWith("open") ? HOST_HINTS[err.code] : undefined;
  const wrapped = new TsvmmError(`${context}: ${err.message}`, hint ? ExitStatus.HOST_UNSUPPORTED : status, hint);
  wrapped.cause = err;
  return wrapped;
}
