// The one typed declaration of the native addon (native/src). Everything the C++ side exposes is
// listed here; policy lives in TypeScript. Structs cross the boundary as raw little-endian bytes
// (Buffer) laid out exactly as in <linux/kvm.h>; vmm/kvm/structs.ts encodes and decodes them.
//
// Errors: every failed syscall throws an Error with
//   { syscall: "ioctl" | "mmap" | "fallocate" | ..., operation: "KVM_CREATE_VM" | ...,
//     errno: number, code: "EINVAL" | ..., args: Record<string, number | bigint | string> }
// and a message "KVM_CREATE_VM(type=1) failed: EINVAL (Invalid argument)". Opening the device is
// the same: operation "open /dev/kvm", message "open /dev/kvm failed: ENOENT (...)".
// Misuse that is not a syscall throws an Error with only `code` (NativeStateErrorCode), and a bad
// argument a TypeError/RangeError.
import * as path from "node:path";

export interface NativeSyscallError extends Error {
  syscall: string;
  operation: string;
  errno: number;
  code: string;
  args: Record<string, number | bigint | string>;
}

/** `code` of the non-syscall errors the addon throws. */
export type NativeStateErrorCode =
  /** the object was closed */
  | "ERR_TSVMM_CLOSED"
  /** a vCPU ioctl (getRegs, setRegs, getSregs, setSregs, setCpuid, setGuestDebug) while the vCPU thread may be
   *  inside KVM_RUN: it would block the JS thread until KVM_RUN returns. Allowed before start(),
   *  after stop(), and while parked (between an event and resume()). */
  | "ERR_TSVMM_VCPU_RUNNING"
  /** start() on a started vCPU */
  | "ERR_TSVMM_VCPU_STARTED"
  /** resume() without a delivered, unanswered event */
  | "ERR_TSVMM_VCPU_NOT_PARKED";

export interface NativeKvm {
  readonly fd: number;
  /** KVM_GET_API_VERSION */
  apiVersion(): number;
  /** KVM_CHECK_EXTENSION on /dev/kvm (system scope) */
  checkExtension(cap: number): number;
  /** KVM_GET_VCPU_MMAP_SIZE */
  vcpuMmapSize(): number;
  /** KVM_GET_SUPPORTED_CPUID: the kvm_cpuid_entry2 array (40 bytes per entry), without the header */
  supportedCpuid(): Buffer;
  /** KVM_CREATE_VM(type) */
  createVm(type: number): NativeVm;
  close(): void;
}

export interface MemoryRegion {
  slot: number;
  flags: number;
  guestPhysAddr: bigint;
  memorySize: bigint;
  userspaceAddr: bigint;
  /** -1 when the slot has no guest_memfd */
  guestMemfd: number;
  guestMemfdOffset: bigint;
}

/** Port accesses the vCPU threads answer without a round trip to JavaScript. */
export interface FastPorts {
  /** 1-byte writes to this port are console output (batched to onConsole); -1 disables */
  consoleOut: number;
  /** 1-byte reads of these ports return `value` */
  reads: Array<{ port: number; value: number }>;
}

export interface NativeVm {
  readonly fd: number;
  /** KVM_CHECK_EXTENSION on the VM fd (VM scope) */
  checkExtension(cap: number): number;
  /** KVM_ENABLE_CAP with up to 4 args */
  enableCap(cap: number, args: bigint[]): void;
  /** KVM_SET_TSS_ADDR */
  setTssAddr(addr: number): void;
  /** KVM_SET_IDENTITY_MAP_ADDR */
  setIdentityMapAddr(addr: bigint): void;
  /** KVM_CREATE_IRQCHIP: PIC, IOAPIC and a local APIC per vCPU, in the kernel. Before any
   *  createVcpu(); vCPUs other than 0 then start in KVM_MP_STATE_UNINITIALIZED (waiting for SIPI). */
  createIrqchip(): void;
  /** KVM_CREATE_PIT2 (after createIrqchip); flags 1 = KVM_PIT_SPEAKER_DUMMY */
  createPit2(flags: number): void;
  /** KVM_IRQ_LINE: drive input `irq` of the in-kernel PIC/IOAPIC to `level` (0 or 1) */
  irqLine(irq: number, level: number): void;
  /** KVM_CREATE_GUEST_MEMFD; the fd is close-on-exec */
  createGuestMemfd(size: bigint, flags: bigint): NativeGuestMemfd;
  /** KVM_SET_USER_MEMORY_REGION2 (memorySize 0 deletes) */
  setUserMemoryRegion2(region: MemoryRegion): void;
  /** KVM_SET_USER_MEMORY_REGION (v1, for kernels without USER_MEMORY2; guestMemfd fields ignored) */
  setUserMemoryRegion(region: MemoryRegion): void;
  /** KVM_SET_MEMORY_ATTRIBUTES */
  setMemoryAttributes(gpa: bigint, size: bigint, attributes: bigint): void;
  /** KVM_CREATE_VCPU(index) */
  createVcpu(index: number): NativeVcpu;
  /** Replace the fast-port table (atomically with respect to running vCPUs). */
  setFastPorts(ports: FastPorts): void;
  /**
   * Console bytes written to FastPorts.consoleOut by any vCPU arrive here in batches, in order,
   * on the JS thread: the first byte after a quiet period is delivered at once, later ones in
   * batches at most every 1 ms while the guest keeps printing (one JS wake-up per batch, not per
   * byte). Call once, before starting vCPUs (a second call replaces the callback).
   * Bytes written before there is a callback are kept and delivered when it is set. This alone
   * does not keep the process alive (running vCPUs do).
   */
  onConsole(callback: (bytes: Buffer) => void): void;
  /** Synchronously take the console bytes not yet delivered (used at exit so none are lost). */
  drainConsole(): Buffer;
  /** Close the VM fd and release the console callback (drainConsole() still works); vCPUs must
   *  be closed first. Idempotent. */
  close(): void;
}

/** A shared mapping of a whole file; detached (byteLength 0) once unmapped. */
export interface NativeMappedFile {
  readonly fd: number;
  readonly size: bigint;
  /** mmap(PROT_READ|PROT_WRITE, MAP_SHARED) of the whole file; returns the same mapping on repeat */
  map(): ArrayBuffer;
  /** Host address of the mapping (for userspace_addr); 0n when unmapped */
  readonly address: bigint;
  unmap(): void;
  /**
   * fallocate(KEEP_SIZE) to allocate or fallocate(PUNCH_HOLE|KEEP_SIZE) to discard; retried on
   * EINTR; page-aligned offset and length.
   */
  fallocate(mode: "allocate" | "punch", offset: bigint, length: bigint): void;
  /** Bytes actually populated: while mapped, the pages mincore() finds in the file's page cache
   *  (this counts guest_memfd, which keeps no st_blocks); unmapped, st_blocks * 512. */
  allocatedBytes(): bigint;
  /** unmap + close(fd); idempotent */
  close(): void;
}

export interface NativeGuestMemfd extends NativeMappedFile {
  readonly flags: bigint;
}

/** memfd_create(name, MFD_CLOEXEC) + ftruncate(size) */
export type NativeMemfd = NativeMappedFile;

export type VcpuEvent =
  /** KVM_RUN returned an exit that needs policy; read it from `run`. errno is 0, or EFAULT/EHWPOISON
   *  when KVM_RUN returned -1 with exit_reason KVM_EXIT_MEMORY_FAULT. */
  | { kind: "exit"; errno: number }
  /** kick() was honoured; the vCPU is outside KVM_RUN */
  | { kind: "paused" }
  /** KVM_RUN failed (errno other than EINTR, and not a memory-fault exit) */
  | { kind: "error"; error: NativeSyscallError };

export interface NativeVcpuStats {
  /** KVM_RUN returns (all exits, including EINTR and retried stray signals) */
  runs: number;
  /** exits answered natively (fast ports) */
  nativeExits: number;
  /** events delivered to JavaScript */
  events: number;
}

export interface NativeVcpu {
  readonly index: number;
  readonly fd: number;
  /** The vCPU's kvm_run mapping; detached on close. Touch it only while the vCPU is parked
   *  (between an event and resume()), or before start(). */
  readonly run: ArrayBuffer;
  getRegs(): Buffer; // struct kvm_regs (144 bytes)
  setRegs(regs: Buffer): void;
  getSregs(): Buffer; // struct kvm_sregs (312 bytes)
  setSregs(sregs: Buffer): void;
  /** KVM_SET_CPUID2 with these kvm_cpuid_entry2 bytes (40 bytes per entry) */
  setCpuid(entries: Buffer): void;
  /** KVM_SET_GUEST_DEBUG with a struct kvm_guest_debug (72 bytes: control, pad, debugreg[8]);
   *  a debug event then arrives as a KVM_EXIT_DEBUG exit (kvm_run.debug.arch). */
  setGuestDebug(debug: Buffer): void;
  /** KVM_GET_MP_STATE (KVM_MP_STATE_*: 0 runnable, 1 uninitialized, 3 halted, ...) */
  getMpState(): number;
  /** KVM_SET_MP_STATE */
  setMpState(state: number): void;
  /** KVM_SET_MSRS; returns how many it set (KVM stops at the first MSR it refuses) */
  setMsrs(msrs: Array<{ index: number; value: bigint }>): number;
  /** kvm_run.kvm_valid_regs set before every KVM_RUN (KVM_CAP_SYNC_REGS) */
  setSyncRegs(mask: number): void;
  /** Start the vCPU thread. Each event parks the thread until resume() or stop(). A started vCPU
   *  keeps the process alive until stop()/close(). start() again after stop() starts a new thread.
   *  If JS sets kvm_run.immediate_exit (byte 1 of `run`) while parked, the next resume() completes
   *  the pending exit without running the guest and reports {kind:"paused"}. */
  start(onEvent: (event: VcpuEvent) => void): void;
  /** Re-enter KVM_RUN after an event. Answers exactly one event that has been delivered to
   *  onEvent; otherwise throws ERR_TSVMM_VCPU_NOT_PARKED. */
  resume(): void;
  /** Ask a running vCPU to leave KVM_RUN (immediate_exit + signal); it reports {kind:"paused"}.
   *  A no-op for a parked vCPU. If an exit races with the kick, that exit's event answers it (no
   *  extra "paused"): either way the next event leaves the vCPU parked. */
  kick(): void;
  /** End the thread (kicking it if needed) and join it; idempotent. Events still queued for
   *  onEvent are dropped. */
  stop(): void;
  stats(): NativeVcpuStats;
  /** stop() + munmap(run) + close(fd); idempotent */
  close(): void;
}

export interface NativeAddon {
  Kvm: new (devicePath: string) => NativeKvm;
  Memfd: new (name: string, size: bigint) => NativeMemfd;
  /** errno name for a number, e.g. 22 -> "EINVAL"; "ERRNO_<n>" for numbers without a name */
  errnoName(errno: number): string;
}

const searched = [
  path.join(__dirname, "..", "..", "build", "native", "Release", "tsvmm.node"),
  path.join(__dirname, "..", "build", "native", "Release", "tsvmm.node"),
];

let addon: NativeAddon | undefined;

export function loadAddon(): NativeAddon {
  if (addon) return addon;
  const failures: string[] = [];
  for (const candidate of searched) {
    try {
      addon = require(candidate) as NativeAddon;
      return addon;
    } catch (err) {
      failures.push(`  ${candidate}: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  throw new Error(
    `tsvmm: the native addon is not built. Looked in:\n${failures.join("\n")}\n` +
      `Build it with \`npm run build:native\` (needs cmake and a C++ compiler).`,
  );
}
