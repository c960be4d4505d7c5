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
import { isMainThread } from "node:worker_threads";

export interface NativeSyscallError extends Error {
  syscall: string;
  operation: string;
  errno: number;
  code: string;
  args: Record<string, number | bigint | string>;
}

/** `code` of the non-syscall errors the addon throws. */
export type NativeStateErrorCode =
  /** the object was closed (or openVcpu was given a handle no open vCPU has) */
  | "ERR_TSVMM_CLOSED"
  /** a vCPU ioctl (getRegs, setRegs, getSregs, setSregs, setCpuid,
   *  setGuestDebug, getMpState, setMpState, setMsrs) while the vCPU may be inside
   *  KVM_RUN: it would block the caller until KVM_RUN returns. Allowed before the first
   *  runUntilExit(), from the thread that calls it (between two calls), after pause() and after stop(). */
  | "ERR_TSVMM_VCPU_RUNNING";

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

/** Numbers per region in setUserMemoryRegions2's records, whole and below 2^53: slot, guestPhysAddr,
 *  memorySize, userspaceAddr, guestMemfd, guestMemfdOffset, createFlags (of a released guest_memfd) */
export const REGION_RECORD = 7;
export const RELEASED_GUEST_MEMFD = -2;

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
  /** Several KVM_SET_USER_MEMORY_REGION2 in order, in one call: REGION_RECORD numbers per region;
   *  guestMemfd -1 = none, RELEASED_GUEST_MEMFD = a guest_memfd of memorySize
   *  created with createFlags, bound and closed at once (every guest access then faults). Stops at
   *  the first failure, the regions before it applied, and throws it. */
  setUserMemoryRegions2(records: Float64Array): void;
  /** KVM_SET_USER_MEMORY_REGION (v1, for kernels without USER_MEMORY2; guestMemfd fields ignored) */
  setUserMemoryRegion(region: MemoryRegion): void;
  /** KVM_SET_MEMORY_ATTRIBUTES */
  setMemoryAttributes(gpa: bigint, size: bigint, attributes: bigint): void;
  /** Give convertMemory (here and on every NativeVcpu, from any thread) the attributes backend's
   *  files: the VM keeps dups of the guest_memfd (private side) and the memfd (shared side) until
   *  its last vCPU is gone. Once. */
  shareMemoryFiles(privateFd: number, sharedFd: number): void;
  /** One conversion of [gpa, gpa + size) (numbers, whole pages): KVM_SET_MEMORY_ATTRIBUTES to
   *  private or shared, then, with `discard`, fallocate(PUNCH_HOLE) of [offset, offset + size) in
   *  the file of the side the pages left (shareMemoryFiles). Throws what failed. */
  convertMemory(gpa: number, offset: number, size: number, toPrivate: boolean, discard: boolean): void;
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

/** How the run loop answers conversions (NativeVcpu.answerConversions): the attributes backend's
 *  apply on the map's pages and the tally's cells, as vmm/memory/convertNow.ts does. */
export interface NativeConversionPlan {
  /** PageStateMap.buffer: the lock word, the private-page count, a byte per page */
  map: Uint8Array;
  /** [0]: 0 while the machine wants conversions in JavaScript */
  allowed: Int32Array;
  /** This thread's row of the tally (ConversionCounters) */
  tally: Float64Array;
  /** Cells of `tally`: hypercall-to-private, hypercall-to-shared, doorbell-to-private,
   *  doorbell-to-shared, conversions, discarded bytes, answered on a vCPU thread */
  cells: Int32Array;
  /** The GPA of the map's first page, and the always-shared limit below which nothing becomes private */
  base: number;
  sharedLimit: number;
  /** The conversion doorbell's port (a 32-bit OUT with the request in RAX, RBX, RCX, RDX) */
  doorbellPort: number;
  /** Punch the file the pages left */
  discard: boolean;
}

/** What NativeVcpu.runUntilExit() returns besides an exit (>= 0). */
export const VcpuRunEnd = {
  /** stop() was called (now or before): the vCPU never runs again */
  STOPPED: -1,
  /** KVM_RUN returned EINTR because JavaScript set kvm_run.immediate_exit itself (the pending
   *  exit is completed, the guest did not run); clear it before the next runUntilExit() */
  INTERRUPTED: -2,
  /** A conversion was answered in the run loop (answerConversions) while another thread waited
   *  for the page-state map's lock: wake one waiter (PageStateMap.wakeWaiter), then call again */
  ANSWERED_WAKE: -3,
} as const;

export interface NativeVcpuStats {
  /** KVM_RUN returns (all exits, including EINTR and retried stray signals) */
  runs: number;
  /** exits answered natively (fast ports, and the conversions below) */
  nativeExits: number;
  /** conversion requests answered in the run loop (answerConversions) */
  conversions: number;
  /** exits runUntilExit() returned to JavaScript */
  exits: number;
}

/**
 * A vCPU. The thread that calls runUntilExit() ("the runner", a worker_thread in tsvmm) enters KVM_RUN
 * itself and handles each exit synchronously: no thread crossing per exit. Any other thread may
 * pause(), stop() and, while paused, read and write registers. Another thread gets its own object
 * for the same vCPU with openVcpu(handle); the fd and mapping are released with the last one.
 */
export interface NativeVcpu {
  readonly index: number;
  /** -1 once closed */
  readonly fd: number;
  /** Pass to openVcpu() in another thread (worker_threads) to run or inspect this vCPU there */
  readonly handle: number;
  /** The vCPU's kvm_run mapping; detached on close. Touch it only from the runner between two
   *  runUntilExit()s, before the first, or while paused. */
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
  /** KVM_PRE_FAULT_MEMORY until the whole range is mapped in KVM's page tables (6.11+,
   *  KVM_CAP_PRE_FAULT_MEMORY); throws with the GPA it stopped at. Only while paused. */
  preFaultMemory(gpa: bigint, size: bigint): void;
  /** KVM_SET_MSRS; returns how many it set (KVM stops at the first MSR it refuses) */
  setMsrs(msrs: Array<{ index: number; value: bigint }>): number;
  /** kvm_run.kvm_valid_regs set before every KVM_RUN (KVM_CAP_SYNC_REGS) */
  setSyncRegs(mask: number): void;
  /** NativeVm.irqLine on this vCPU's VM, from any thread (a device answered on the vCPU thread
   *  raises its interrupt with it) */
  irqLine(irq: number, level: number): void;
  /** NativeVm.convertMemory on this vCPU's VM, from any thread (a conversion on the vCPU thread) */
  convertMemory(gpa: number, offset: number, size: number, toPrivate: boolean, discard: boolean): void;
  /**
   * Answer the guest's conversion requests inside runUntilExit() from now on, by this plan (null:
   * stop). Only the runner's object uses it. A request it does not answer (plan.allowed[0] is 0,
   * another hypercall, a request the checks refuse, a failed ioctl, the map's lock still held at a
   * pause or stop or after 20 ms) comes back as the exit it is.
   */
  answerConversions(plan: NativeConversionPlan | null): void;
  /** Append console output to the VM's console buffer, the one the native fast path fills: from
   *  any thread, in the order of the calls (onConsole delivers it) */
  console(bytes: Buffer): void;
  /** Replace the VM's fast-port table (NativeVm.setFastPorts, reachable from the runner's thread) */
  setFastPorts(ports: FastPorts): void;
  /**
   * Blocking: KVM_RUN in the calling thread, re-entered after every exit the fast ports answer,
   * until an exit needs policy. Returns that exit's errno (0, or EFAULT/EHWPOISON when KVM_RUN
   * returned -1 with exit_reason KVM_EXIT_MEMORY_FAULT; read the exit from `run`), or a
   * VcpuRunEnd. While paused it waits inside. Throws the KVM_RUN failure for any other errno.
   * Never call it on a thread with an event loop to keep (the main thread).
   */
  runUntilExit(): number;
  /**
   * Keep the vCPU out of KVM_RUN until unpause(): kicks it out (immediate_exit + signal) if it is
   * inside and waits up to timeoutMs (default 1000) for it to leave. Returns false if it has not
   * left yet (the pause still counts). Pauses nest; each needs its unpause().
   */
  pause(timeoutMs?: number): boolean;
  unpause(): void;
  /** runUntilExit() returns VcpuRunEnd.STOPPED now (kicking the vCPU out of KVM_RUN) and ever after.
   *  Waits like pause() for the vCPU to be outside KVM_RUN (false: not within timeoutMs);
   *  idempotent. */
  stop(timeoutMs?: number): boolean;
  stats(): NativeVcpuStats;
  /** stop() + drop this thread's object (the last one of any thread unmaps `run` and closes the
   *  fd); idempotent */
  close(): void;
}

export interface NativeAddon {
  Kvm: new (devicePath: string) => NativeKvm;
  Memfd: new (name: string, size: bigint) => NativeMemfd;
  /** This thread's object for the vCPU with `handle` (NativeVcpu.handle, from another thread) */
  openVcpu(handle: number): NativeVcpu;
  /** stop() every vCPU of the process, without waiting. loadAddon() calls it when the process
   *  exits: Node then joins worker threads, and one inside KVM_RUN would never return. */
  stopAllVcpus(): void;
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
      const loaded = require(candidate) as NativeAddon;
      if (isMainThread) process.once("exit", () => loaded.stopAllVcpus());
      addon = loaded;
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
