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
  BAD_GUEST_STATUS: 77,
  /** stdout or the --trace file stopped accepting writes (other than a closed pipe) */
  OUTPUT_FAILED: 78,
  /** a PC guest reset the machine (i8042 0xfe, port 0xcf9, KVM_SYSTEM_EVENT_RESET) */
  GUEST_RESET: 79,
  /** a PC guest panicked (a panic line on the console, KVM_SYSTEM_EVENT_CRASH) */
  GUEST_PANIC: 88,
  TIMEOUT: 124,
  /** 128 + the signal's number, as a shell reports a process the signal killed */
  HANGUP: 129,
  INTERRUPTED: 130,
  /** stdout was closed (EPIPE), e.g. `tsvmm run hello | head -1` */
  STDOUT_CLOSED: 141,
  TERMINATED: 143,
} as const;

/** The settings of a run as the domain names them. Messages write them as {memSize}, ...; each
 *  front end shows its own spelling (the CLI its flags, cli/flags.ts). */
export type Setting = "memSize" | "cpus" | "cmdline" | "private" | "backend" | "sharedBit" | "prefault";
export type SettingNames = Record<Setting, string>;

/** The names of runGuest's options (vmm/run.ts) */
export const API_SETTING_NAMES: SettingNames = {
  memSize: "memSize",
  cpus: "cpus",
  cmdline: "cmdline",
  private: "privateMemory.private",
  backend: "privateMemory.backend",
  sharedBit: "privateMemory.sharedBit",
  prefault: "privateMemory.prefault",
};

const nameSettings = (text: string, names: SettingNames) => text.replace(/\{(\w+)\}/g, (all, s: string) => names[s as Setting] ?? all);

/** A failure with a status and a message meant for a person. */
export class TsvmmError extends Error {
  /** The message and hint as written, with {setting} placeholders */
  private readonly template: { message: string; hint?: string };

  constructor(
    message: string,
    readonly status: number,
    hint?: string,
  ) {
    super(nameSettings(message, API_SETTING_NAMES));
    this.name = "TsvmmError";
    this.template = { message, hint };
  }

  get hint(): string | undefined {
    return this.template.hint === undefined ? undefined : nameSettings(this.template.hint, API_SETTING_NAMES);
  }

  /** Message and hint, with the settings named as `names` spells them */
  describe(names: SettingNames = API_SETTING_NAMES): string {
    const { message, hint } = this.template;
    return hint === undefined ? nameSettings(message, names) : `${nameSettings(message, names)}\n  hint: ${nameSettings(hint, names)}`;
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

const NO_KVM_ACCESS = "you may not open /dev/kvm: add your user to the kvm group or fix the device's ACL";

/** Failures whose cause is the host's set-up, by operation and errno code */
const HOST_HINTS: Array<{ operation: RegExp; code: string; hint: string }> = [
  { operation: /^open /, code: "ENOENT", hint: "there is no /dev/kvm: load kvm_intel or kvm_amd (CONFIG_KVM), or run inside `tsvmm lab`" },
  { operation: /^open /, code: "EACCES", hint: NO_KVM_ACCESS },
  { operation: /^open /, code: "EPERM", hint: NO_KVM_ACCESS },
  {
    operation: /^KVM_CREATE_GUEST_MEMFD$/,
    code: "EACCES",
    hint:
      "KVM itself does not return EACCES here: a Linux security module probably refused guest_memfd's " +
      "anonymous inode (SELinux without a policy rule for it, as reported against other VMMs). Look for the " +
      "denial (`ausearch -m avc -ts recent`, or dmesg) and allow it in the policy",
  },
];

/** Turn a native syscall failure into a TsvmmError with a hint where the cause is environmental. */
export function fromSyscall(err: NativeSyscallError, context: string, status: number = ExitStatus.INTERNAL): TsvmmError {
  const hint = HOST_HINTS.find((h) => h.operation.test(err.operation) && h.code === err.code)?.hint;
  const wrapped = new TsvmmError(`${context}: ${err.message}`, hint ? ExitStatus.HOST_UNSUPPORTED : status, hint);
  wrapped.cause = err;
  return wrapped;
}
