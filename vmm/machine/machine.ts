// A VM assembled from a resolved configuration: RAM, vCPUs and devices, and its lifecycle
// (create, run, quiesce, finish, close); its vCPUs run on worker threads (vcpuThread.ts). What each exit does is in exits.ts.
import type { NativeKvm, NativeVm } from "../native";
import { Cap, EXIT_HYPERCALL_MAP_GPA_RANGE, SyncRegs, VmType } from "../kvm/uapi";
import { CpuidEntry, decodeCpuid, encodeCpuid } from "../kvm/structs";
import { ExitStatus, fromSyscall, isSyscallError, UsageError } from "../errors";
import {
  BackendId,
  BOOT_INFO_GPA,
  CONSOLE_PORT,
  ConvertMethod,
  encodeBootInfo,
  encodeCmdline,
  EXIT_PORT,
  FIRMWARE_STATUSES,
  GUEST_STATUS_MAX,
  MAX_RAM_RANGES,
  RAM_PRIVATE,
} from "./abi";
import type { ElfImage } from "./elf";
import type { Layout } from "./layout";
import { RamBacking, SharedRam } from "../memory/shared";
import { MemoryBackend, memslotBudget } from "../memory/backend";
import { MemslotsBackend } from "../memory/memslots";
import { AttributesBackend } from "../memory/attributes";
import { MAP_GPA_RANGE_ENCRYPTED, PAGE, PAGE_SHIFT, PageStateMap } from "../memory/pageState";
import { ConversionEngine, ConversionEvent, formatEvent } from "../memory/engine";
import type { PrivateMemoryOptions } from "../memory/options";
import { TestSlot } from "../memory/testSlot";
import { PortBus } from "../devices/bus";
import { Serial8250 } from "../devices/serial";
import { DebugExit } from "../devices/debugExit";
import { cpuidFor } from "../arch/x86/cpuid";
import { resetVcpu, setTss } from "../arch/x86/reset";
import { ExitContext, handleExit, Outcome } from "./exits";
import { VcpuState } from "./vcpu";
import { LongTimer, setLongTimeout } from "../timers";
import { hex } from "../format";
import type { VcpuThreadData, VcpuThreadMessage } from "./vcpuThread";
import { vcpuThread } from "./threads";

export interface MachineOptions {
  /** An open KVM device; the machine owns it from here on and closes it */
  kvm: NativeKvm;
  firmware: ElfImage;
  guest: ElfImage;
  layout: Layout;
  cmdline: string;
  /** Backing of RAM that is not private (decided by assessHost) */
  ram: { backing: RamBacking; region2: boolean };
  /** Private memory; absent = all RAM shared */
  privateMemory?: PrivateMemoryOptions;
  /** AMD CPUs take vmmcall for hypercalls, Intel ones vmcall */
  amd: boolean;
  /** Guest console output, in order */
  onConsole: (bytes: Uint8Array) => void;
  /** Run-log lines for a person (stderr in the CLI) */
  log?: (line: string) => void;
  /** Structured events (NDJSON with --trace) */
  trace?: (event: Record<string, unknown>) => void;
}

/** Why a run is stopped from outside (a signal, an output that failed), with the status it ends
 *  with: the reason of the AbortSignal given to Machine.run */
export interface StopRequest {
  status: number;
  reason: string;
}

export interface MachineResult {
  status: number;
  /** One line: why the VM ended */
  reason: string;
  /** Registers and context for failures */
  report?: string;
  seconds: number;
  exits: { total: number; native: number; typescript: number };
  ramBacking: RamBacking | "attributes" | "memslots";
  /** Conversion counts by source and outcome, and the summary lines (private memory only) */
  conversions?: { tally: Record<string, number>; summary: string[] };
}

export class Machine {
  readonly layout: Layout;
  private kvm?: NativeKvm;
  private vm?: NativeVm;
  private memory?: MemoryBackend;
  private engine?: ConversionEngine;
  private testSlot?: TestSlot;
  private testSlotId = 0;
  private map?: PageStateMap;
  private readonly vcpus: VcpuState[] = [];
  private readonly bus = new PortBus();
  private readonly exitContext: ExitContext;
  readonly serial: Serial8250;
  private result?: MachineResult;
  private resolveRun?: (r: MachineResult) => void;
  private timer?: LongTimer;
  private startTime = 0;
  /** vCPU worker threads still running */
  private threads = 0;
  private lastLine = "";
  private currentLine = "";
  private seq = 0;

  constructor(private readonly opts: MachineOptions) {
    encodeCmdline(opts.cmdline); // refused before any VM exists
    this.layout = opts.layout;
    this.kvm = opts.kvm;
    this.serial = new Serial8250(CONSOLE_PORT, (bytes) => this.console(bytes));
    this.bus.register(CONSOLE_PORT, 8, this.serial);
    this.bus.register(EXIT_PORT, 4, new DebugExit((status) => this.guestExit(status)));
    const machine = this;
    this.exitContext = {
      vcpus: this.vcpus,
      bus: this.bus,
      get conversions() {
        return machine.conversions;
      },
      get ended() {
        return machine.result !== undefined;
      },
      finish: (status, reason, report) => this.finish(status, reason, report),
      trace: (vcpu, kind, fields) => this.traceEvent(vcpu, kind, fields),
      log: (line) => this.log(line),
    };
  }

  private get cpus(): number {
    return this.layout.cpus;
  }

  get ramBacking(): MachineResult["ramBacking"] {
    return this.memory instanceof SharedRam ? this.memory.backing : (this.memory?.kind as "attributes" | "memslots");
  }

  private conversions?: ExitContext["conversions"];

  /** Create the VM, RAM and vCPUs and load the images. Throws TsvmmError on host problems. */
  create(): void {
    const kvm = this.kvm!;
    const pm = this.opts.privateMemory;
    try {
      this.vm = kvm.createVm(pm?.backend === "attributes" ? VmType.SW_PROTECTED : VmType.DEFAULT);
      const vm = this.vm;
      if (pm) this.createPrivateMemory(vm, pm);
      else this.memory = SharedRam.create(vm, this.layout.ramSize, this.opts.ram.backing, this.opts.ram.region2);
      this.log(`RAM ${this.layout.ramSize >> 20n} MiB: ${this.memory!.describe()}, ${this.cpus} vCPU${this.cpus > 1 ? "s" : ""}`);
      const cpuid = decodeCpuid(kvm.supportedCpuid());
      this.load();
      setTss(vm);
      const hypercall = pm !== undefined && pm.convertMethod !== "doorbell";
      if (hypercall) vm.enableCap(Cap.EXIT_HYPERCALL, [EXIT_HYPERCALL_MAP_GPA_RANGE]);
      for (let i = 0; i < this.cpus; i++) this.vcpus.push(this.createVcpu(i, cpuid, hypercall));
      vm.setFastPorts(this.serial.fastPorts());
      this.serial.onFastPortsChanged = () => this.vm?.setFastPorts(this.serial.fastPorts());
      vm.onConsole((bytes) => this.console(bytes));
      // The threads boot while the caller finishes its set-up; the vCPUs wait paused for run().
      for (const v of this.vcpus) this.startThread(v);
    } catch (err) {
      this.close();
      throw isSyscallError(err) ? fromSyscall(err, "cannot set up the VM") : err;
    }
  }

  private createPrivateMemory(vm: NativeVm, pm: PrivateMemoryOptions): void {
    const map = new PageStateMap(0n, this.layout.ramSize);
    for (const r of pm.ranges) map.set(map.pageOf(r.start), Number((r.end - r.start) >> PAGE_SHIFT), "private");
    if (map.runs().length > MAX_RAM_RANGES)
      throw new UsageError(`{private} makes ${map.runs().length} ranges; the boot page holds at most ${MAX_RAM_RANGES}`);
    const slots = memslotBudget(vm.checkExtension(Cap.NR_MEMSLOTS));
    this.testSlotId = slots.testSlotId;
    const ctx = { vm, map, sharedLimit: this.layout.freeBase, sharedBit: pm.sharedBit, prealloc: pm.prealloc, discard: pm.discard, slotLimit: slots.backendSlots };
    this.map = map;
    const memory = pm.backend === "attributes" ? new AttributesBackend(ctx) : new MemslotsBackend(ctx);
    this.memory = memory;
    const engine = new ConversionEngine({
      map,
      backend: memory,
      sharedLimit: this.layout.freeBase,
      sharedBit: pm.sharedBit,
      quiesce: (work) => this.quiesce(work),
      emit: (e) => this.conversionEvent(e),
      now: () => performance.now() - this.startTime,
      testSlot: () => this.testSlot,
      discard: pm.discard,
    });
    this.engine = engine;
    this.conversions = {
      engine,
      options: pm,
      hostRequests: { map, backend: memory, sharedLimit: this.layout.freeBase, testSlot: (at, create) => this.makeTestSlot(at, create) },
    };
  }

  private conversionEvent(e: ConversionEvent): void {
    this.log(formatEvent(e));
    this.opts.trace?.({ ...e, kind: "conversion", seq: this.seq++, conversion: e.seq });
  }

  private load(): void {
    const view = this.memory!.sharedView;
    for (const image of [this.opts.firmware, this.opts.guest]) {
      for (const s of image.segments) {
        const at = Number(s.gpa);
        view.set(s.data, at);
        view.fill(0, at + s.data.length, at + Number(s.memSize));
      }
    }
    const pm = this.opts.privateMemory;
    const ram = this.map
      ? this.map.runs().map((r) => ({
          base: BigInt(r.first) << PAGE_SHIFT,
          size: BigInt(r.count) << PAGE_SHIFT,
          flags: r.state === "private" ? RAM_PRIVATE : 0,
        }))
      : [{ base: 0n, size: this.layout.ramSize, flags: 0 }];
    view.set(
      encodeBootInfo({
        cpuCount: this.cpus,
        guestEntry: this.opts.guest.entry,
        freeBase: this.layout.freeBase,
        ram,
        backend: pm ? BackendId[pm.backend] : BackendId.shared,
        sharedBit: pm?.sharedBit ?? 0,
        convertMethod: !pm
          ? ConvertMethod.none
          : pm.convertMethod === "doorbell"
            ? ConvertMethod.doorbell
            : this.opts.amd
              ? ConvertMethod.vmmcall
              : ConvertMethod.vmcall,
        cmdline: this.opts.cmdline,
      }),
      BOOT_INFO_GPA,
    );
  }

  private createVcpu(index: number, supported: CpuidEntry[], hypercall: boolean): VcpuState {
    const vcpu = this.vm!.createVcpu(index);
    const state = new VcpuState(vcpu);
    vcpu.setCpuid(encodeCpuid(cpuidFor(index, supported, hypercall)));
    resetVcpu(vcpu, index, this.opts.firmware.entry, BOOT_INFO_GPA);
    vcpu.setSyncRegs(SyncRegs.REGS);
    return state;
  }

  /** A worker thread that runs KVM_RUN for `v` (vcpuThread.ts); `v` stays paused until run(). */
  private startThread(v: VcpuState): void {
    v.native.pause();
    const data: VcpuThreadData = { handle: v.native.handle, serial: this.serial.state };
    const thread = vcpuThread();
    thread.postMessage(data);
    this.threads++;
    thread.on("message", (m: VcpuThreadMessage) => this.onThreadMessage(v, m));
    thread.on("error", (err) => this.finish(ExitStatus.INTERNAL, `vCPU ${v.index} thread: ${err.message}`));
    thread.on("exit", () => {
      if (--this.threads === 0 && this.result) this.resolveRun?.(this.result);
    });
  }

  /** Run until the guest exits, fails, times out or `signal` aborts (with a StopRequest as its
   *  reason; any other reason counts as SIGINT). Never rejects for guest misbehaviour. */
  run(timeoutSeconds?: number, signal?: AbortSignal): Promise<MachineResult> {
    return new Promise((resolve) => {
      this.resolveRun = resolve;
      this.startTime = performance.now();
      this.traceEvent(-1, "start", { cpus: this.cpus, ram: Number(this.layout.ramSize), backing: this.ramBacking });
      if (timeoutSeconds && timeoutSeconds > 0)
        this.timer = setLongTimeout(() => this.timeout(timeoutSeconds), timeoutSeconds * 1000);
      if (signal) {
        const stop = () => {
          const r = signal.reason as Partial<StopRequest> | undefined;
          if (typeof r?.status === "number" && typeof r.reason === "string") this.finish(r.status, r.reason);
          else this.finish(ExitStatus.INTERRUPTED, "interrupted");
        };
        if (signal.aborted) return stop();
        signal.addEventListener("abort", stop, { once: true });
      }
      for (const v of this.vcpus) v.native.unpause();
    });
  }

  /** A vCPU thread handed us an exit (the vCPU is paused until we answer) or said something. */
  private onThreadMessage(v: VcpuState, m: VcpuThreadMessage): void {
    if ("console" in m) return this.console(m.console);
    if (this.result) return;
    if ("error" in m) return this.finish(ExitStatus.KVM_INTERNAL_ERROR, `vCPU ${v.index}: ${m.error}`, v.registerReport());
    const outcome = handleExit(this.exitContext, v, m.exit);
    if (outcome instanceof Promise)
      outcome.then(
        (o) => this.answer(v, o),
        (err) => this.finish(ExitStatus.INTERNAL, `vCPU ${v.index}: ${(err as Error).message}`, v.registerReport()),
      );
    else this.answer(v, outcome);
  }

  private answer(v: VcpuState, outcome: Outcome): void {
    if (outcome === "resume" && !this.result && !v.halted) v.native.unpause();
  }

  /** Run `work` with every vCPU out of KVM_RUN (paused natively; nested pauses are fine). */
  private async quiesce<T>(work: () => T): Promise<T> {
    for (const v of this.vcpus) v.native.pause();
    try {
      return await work();
    } finally {
      for (const v of this.vcpus) v.native.unpause();
    }
  }

  private makeTestSlot(gpa: bigint, create: boolean): TestSlot | string {
    if (this.testSlot) return this.testSlot.gpa === gpa ? this.testSlot : `the test slot is at ${hex(this.testSlot.gpa)}`;
    if (!create) return "no test slot was created";
    if (gpa % PAGE !== 0n || gpa < this.layout.ramSize || gpa >= 1n << 32n) return "it must be a page outside RAM and below 4 GiB";
    this.testSlot = new TestSlot(this.vm!, this.opts.privateMemory!.backend, gpa, this.testSlotId);
    return this.testSlot;
  }

  /** Conversions from the API (source "cli"); resolves to 0 or a positive errno. */
  convert(gpa: bigint, size: bigint, to: "private" | "shared"): Promise<number> {
    if (!this.engine) return Promise.reject(new Error("this VM has no private memory"));
    return this.engine.request("cli", -1, { gpa, pages: size >> PAGE_SHIFT, attrs: to === "private" ? MAP_GPA_RANGE_ENCRYPTED : 0n });
  }

  private console(bytes: Uint8Array): void {
    for (const b of bytes) {
      if (b === 0x0a) {
        if (this.currentLine.trim()) this.lastLine = this.currentLine;
        this.currentLine = "";
      } else if (b !== 0x0d && this.currentLine.length < 400) this.currentLine += String.fromCharCode(b);
    }
    this.opts.onConsole(bytes);
  }

  /** The last non-empty line the guest printed */
  get lastConsoleLine(): string {
    return this.currentLine.trim() ? this.currentLine : this.lastLine;
  }

  private timeout(seconds: number): void {
    if (this.result) return;
    // Bring every running vCPU out of KVM_RUN (waiting up to a second each) to report where it was.
    const running = this.vcpus.filter((v) => !v.halted);
    for (const v of running) v.native.pause();
    this.finish(ExitStatus.TIMEOUT, `timed out after ${seconds} s (--timeout)`, running.map((v) => v.registerReport()).join("\n"));
  }

  /** A status written to EXIT_PORT: the guest's own, the firmware's, or out of range. */
  private guestExit(status: number): void {
    if (status <= GUEST_STATUS_MAX || FIRMWARE_STATUSES.includes(status)) this.finish(status, `guest exited with status ${status}`);
    else
      this.finish(
        ExitStatus.BAD_GUEST_STATUS,
        `the guest wrote status ${status} (0x${status.toString(16)}) to port 0x${EXIT_PORT.toString(16)}; guests own 0 to ${GUEST_STATUS_MAX}`,
      );
  }

  /** End the run (first caller wins): stop every vCPU, deliver the rest of the console. The run's
   *  promise resolves once every vCPU thread has ended. */
  finish(status: number, reason: string, report?: string): void {
    if (this.result) return;
    const seconds = (performance.now() - this.startTime) / 1000;
    const exits = { total: 0, native: 0, typescript: 0 };
    for (const v of this.vcpus) {
      v.native.stop();
      const s = v.native.stats();
      exits.native += s.nativeExits;
      exits.total += s.runs;
      exits.typescript += s.exits;
    }
    if (this.vm) {
      const rest = this.vm.drainConsole();
      if (rest.length) this.console(rest);
    }
    this.timer?.clear();
    this.result = {
      status,
      reason,
      report,
      seconds,
      exits,
      ramBacking: this.memory ? this.ramBacking : "memfd",
      conversions: this.engine ? { tally: this.engine.tally, summary: this.engine.summary() } : undefined,
    };
    this.traceEvent(-1, "end", { status, reason });
    if (this.threads === 0) this.resolveRun?.(this.result);
  }

  private log(line: string): void {
    this.opts.log?.(line);
  }

  private traceEvent(vcpu: number, kind: string, fields: Record<string, unknown>): void {
    this.opts.trace?.({ seq: this.seq++, time: +(performance.now() - this.startTime).toFixed(3), vcpu, kind, ...fields });
  }

  /** Unclaimed ports the guest touched, for the run log */
  get unclaimedPorts(): Map<number, { reads: number; writes: number }> {
    return this.bus.unclaimed;
  }

  close(): void {
    for (const v of this.vcpus) v.native.close();
    this.vcpus.length = 0;
    this.testSlot?.close();
    this.memory?.close();
    this.vm?.close();
    this.kvm?.close();
    this.memory = undefined;
    this.vm = undefined;
    this.kvm = undefined;
  }
}
