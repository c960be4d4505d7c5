// A VM assembled from a resolved configuration: RAM, vCPUs and devices, and its lifecycle
// (create, run, quiesce, finish, close); its vCPUs run on worker threads (vcpuThread.ts). What each exit does is in exits.ts.
import type { NativeKvm, NativeVm } from "../native";
import { Cap, EXIT_HYPERCALL_MAP_GPA_RANGE, MpState, PIT_SPEAKER_DUMMY, SyncRegs, VmType } from "../kvm/uapi";
import { CpuidEntry, decodeCpuid, decodeRegs, encodeCpuid, encodeGuestDebug, encodeRegs, Regs, Sregs } from "../kvm/structs";
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
import { ConversionCounters } from "../memory/counters";
import type { VcpuConversionsData } from "./vcpuConversions";
import type { PrivateMemoryOptions } from "../memory/options";
import { TestSlot } from "../memory/testSlot";
import { PortBus, UnclaimedAccesses } from "../devices/bus";
import { Serial8250 } from "../devices/serial";
import { DebugExit } from "../devices/debugExit";
import { cpuidFor, pcCpuidFor } from "../arch/x86/cpuid";
import { resetVcpu, setIdentityMap, setTss } from "../arch/x86/reset";
import { pcMsrDefaults } from "../arch/x86/msrs";
import { hideXsave } from "../arch/x86/xsave";
import { attachPcPlatform } from "../arch/x86/platform/platform";
import { consoleEvent, PcGuest } from "../boot/pcGuest";
import { ExitContext, handleExit, Outcome } from "./exits";
import { VcpuState } from "./vcpu";
import { LongTimer, monotonicMs, setLongTimeout } from "../timers";
import { hex } from "../format";
import { RunFacts, startClock, startFields } from "../trace/writer";
import type { VcpuThreadData, VcpuThreadMessage } from "./vcpuThread";
import { startVcpuThread } from "./threads";
import { ExitMailbox } from "./exitMailbox";

export interface MachineOptions {
  /** An open KVM device; the machine owns it from here on and closes it */
  kvm: NativeKvm;
  /** What boots: tsvmm's firmware and one of its test guests, or a PC guest (multiboot, Linux) */
  boot: TsvmmBoot | PcGuest;
  layout: Layout;
  cmdline: string;
  /** Backing of RAM that is not private (decided by assessHost) */
  ram: { backing: RamBacking; region2: boolean };
  /** Private memory; absent = all RAM shared */
  privateMemory?: PrivateMemoryOptions;
  /** AMD CPUs take vmmcall for hypercalls, Intel ones vmcall */
  amd: boolean;
  /** PC guests: hide XSAVE from CPUID (this KVM does not keep leaf 0xD consistent with XCR0) */
  hideXsave?: boolean;
  /** Guest console output, in order */
  onConsole: (bytes: Uint8Array) => void;
  /** Run-log lines for a person (stderr in the CLI) */
  log?: (line: string) => void;
  /** Structured events (NDJSON with --trace) */
  trace?: (event: Record<string, unknown>) => void;
  /** Every conversion-engine event, as it happens (programs that time or count conversions) */
  onConversion?: (e: ConversionEvent) => void;
}

export interface TsvmmBoot {
  kind: "tsvmm";
  firmware: ElfImage;
  guest: ElfImage;
}

/** IRQ of COM1 on a PC */
const COM1_IRQ = 4;
/** How often a PC guest is checked for every vCPU halted with interrupts off */
const HALT_CHECK_MS = 1000;
/** After a panic line, let the rest of the panic report reach the console */
const PANIC_GRACE_MS = 300;

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
  /** Conversion counts by source and outcome, and the summary lines (private memory only);
   *  onVcpuThreads: how many of them the vCPU threads answered themselves, inRunLoop: how many of
   *  those inside the native run loop (NativeVcpu.answerConversions) */
  conversions?: { tally: Record<string, number>; summary: string[]; onVcpuThreads: number; inRunLoop: number };
}

/** What a debugger front end (vmm/control) hears from the machine. */
export interface MachineObserver {
  /** Every exit that reaches TypeScript, before the exit switch handles it */
  exit(vcpu: number, reason: number): void;
  /** Every conversion-engine event (conversions, refusals, memory faults) */
  conversion(e: ConversionEvent): void;
  /** KVM_EXIT_DEBUG: the vCPU stays paused until resumeAll() or runOne() lets it go */
  debugExit(vcpu: number, info: { exception: number; pc: bigint; dr6: bigint; dr7: bigint }): void;
  /** The run ended */
  end(result: MachineResult): void;
  /** An exit that would end the run (--on-fault stop); true = the debugger pauses the VM instead */
  pauseInsteadOfEnding(vcpu: number, why: string): boolean;
}

/** A vCPU as a debugger sees it */
export type VcpuRunState = "running" | "paused" | "halted";

export class Machine {
  readonly layout: Layout;
  private kvm?: NativeKvm;
  private vm?: NativeVm;
  private memory?: MemoryBackend;
  private engine?: ConversionEngine;
  private testSlot?: TestSlot;
  private testSlotId = 0;
  private map?: PageStateMap;
  /** a debugger asked for every vCPU to stay paused (pauseAll) until resumeAll */
  private pauseRequested = false;
  /** run() let the vCPUs go */
  private running = false;
  private debugObserver?: MachineObserver;
  /** What the vCPU threads need to answer conversions themselves (attributes backend) */
  private threadConversions?: VcpuConversionsData;
  private endWaiters: Array<() => void> = [];
  /** The vCPU threads' exits for this machine, and per vCPU what is in flight */
  private readonly exits: ExitMailbox;
  private readonly vcpus: VcpuState[] = [];
  private readonly bus = new PortBus();
  private readonly exitContext: ExitContext;
  readonly serial: Serial8250;
  private result?: MachineResult;
  private resolveRun?: (r: MachineResult) => void;
  private timer?: LongTimer;
  private haltCheck?: NodeJS.Timeout;
  /** Consecutive halt checks that found every vCPU halted with interrupts off */
  private haltedChecks = 0;
  /** A PC guest printed its power-down message / a panic */
  private poweringOff = false;
  private panicked = false;
  private stopListening?: () => void;
  private startTime = 0;
  /** vCPU worker threads still running this machine's vCPUs */
  private threads = 0;
  /** the threadId of each vCPU's worker thread (threads.ts lends them from its pool), by vCPU */
  readonly threadIds: number[] = [];
  private lastLine = "";
  private currentLine = "";
  private seq = 0;

  constructor(private readonly opts: MachineOptions) {
    if (opts.boot.kind === "tsvmm") encodeCmdline(opts.cmdline); // refused before any VM exists
    this.layout = opts.layout;
    this.exits = new ExitMailbox(opts.layout.cpus);
    this.kvm = opts.kvm;
    const pc = this.pc;
    this.serial = new Serial8250(CONSOLE_PORT, (bytes) => this.console(bytes), pc ? (level) => this.vm?.irqLine(COM1_IRQ, level) : undefined);
    this.bus.register(CONSOLE_PORT, 8, this.serial);
    if (pc) attachPcPlatform(this.bus, { cpus: opts.layout.cpus, ramSize: opts.layout.ramSize, onReset: (how) => this.guestReset(how) });
    this.bus.register(EXIT_PORT, 4, new DebugExit((status) => this.guestExit(status)));
    const machine = this;
    this.exitContext = {
      vcpus: this.vcpus,
      bus: this.bus,
      unclaimedMmio: opts.boot.kind === "tsvmm" ? undefined : new UnclaimedAccesses(),
      get conversions() {
        return machine.conversions;
      },
      get ended() {
        return machine.result !== undefined;
      },
      finish: (status, reason, report) => this.finish(status, reason, report),
      pauseInsteadOfEnding: (v, why) => {
        if (!this.observer?.pauseInsteadOfEnding(v.index, why)) return false;
        v.held = true;
        return true;
      },
      debugExit: (v, info) => {
        if (!this.observer) return undefined;
        v.held = true;
        this.observer.debugExit(v.index, info);
        return "stay";
      },
      trace: (vcpu, kind, fields) => this.traceEvent(vcpu, kind, fields),
      log: (line) => this.log(line),
    };
  }

  /** A debugger front end (vmm/control) that hears every exit and conversion */
  get observer(): MachineObserver | undefined {
    return this.debugObserver;
  }

  set observer(o: MachineObserver | undefined) {
    this.debugObserver = o;
    this.allowThreadConversions();
  }

  /** Let the vCPU threads answer conversions themselves while nobody needs to see each one (the
   *  engine would answer them quietly too); else they go to the engine here. */
  private allowThreadConversions(): void {
    const share = this.threadConversions;
    if (!share || !this.engine) return;
    const quiet = this.engine.answersQuietly("hypercall", this.opts.privateMemory!.onHypercall);
    Atomics.store(new Int32Array(share.allowed), 0, quiet ? 1 : 0);
  }

  /** The PC guest, or undefined for tsvmm's own guests */
  private get pc(): PcGuest | undefined {
    return this.opts.boot.kind === "tsvmm" ? undefined : this.opts.boot;
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
      else this.memory = SharedRam.create(vm, this.layout.ram, this.opts.ram.backing, this.opts.ram.region2);
      this.log(`RAM ${this.layout.ramSize >> 20n} MiB: ${this.memory!.describe()}, ${this.cpus} vCPU${this.cpus > 1 ? "s" : ""}`);
      const cpuid = decodeCpuid(kvm.supportedCpuid());
      this.load();
      setTss(vm);
      if (this.pc) {
        // The PC platform: PIC, IOAPIC and local APICs, and the PIT, in the kernel (before any vCPU).
        setIdentityMap(vm);
        vm.createIrqchip();
        vm.createPit2(PIT_SPEAKER_DUMMY);
        this.log(this.pc.summary);
      }
      const hypercall = pm !== undefined && pm.convertMethod !== "doorbell";
      if (hypercall) vm.enableCap(Cap.EXIT_HYPERCALL, [EXIT_HYPERCALL_MAP_GPA_RANGE]);
      for (let i = 0; i < this.cpus; i++) this.vcpus.push(this.createVcpu(i, cpuid, hypercall));
      vm.setFastPorts(this.serial.fastPorts());
      this.serial.onFastPortsChanged = () => this.serial.publishFastPorts((ports) => this.vm?.setFastPorts(ports));
      vm.onConsole((bytes) => this.console(bytes));
      // The threads boot while the caller finishes its set-up; the vCPUs wait paused for run().
      for (const v of this.vcpus) this.startThread(v);
      this.exits.watch(this.cpus, (index, result) => this.onThreadExit(this.vcpus[index], result));
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
    const counters = new ConversionCounters(this.cpus + 1);
    const engine = new ConversionEngine({
      counters,
      map,
      backend: memory,
      sharedLimit: this.layout.freeBase,
      sharedBit: pm.sharedBit,
      quiesce: (work) => this.quiesce(work),
      emit: (e) => this.conversionEvent(e),
      listening: () => this.opts.log !== undefined || this.opts.trace !== undefined || this.opts.onConversion !== undefined || this.observer !== undefined,
      now: () => monotonicMs() - this.startTime,
      testSlot: () => this.testSlot,
      discard: pm.discard,
      preFault: pm.prefault ? (vcpu, gpa, size) => this.vcpus[vcpu].native.preFaultMemory(gpa, size) : undefined,
    });
    this.engine = engine;
    if (memory instanceof AttributesBackend)
      this.threadConversions = {
        map: map.buffer,
        base: map.base,
        size: map.size,
        sharedLimit: this.layout.freeBase,
        discard: pm.discard === "always",
        counters: counters.buffer,
        allowed: new SharedArrayBuffer(4),
      };
    this.allowThreadConversions();
    this.conversions = {
      engine,
      options: pm,
      hostRequests: { map, backend: memory, sharedLimit: this.layout.freeBase, testSlot: (at, create) => this.makeTestSlot(at, create) },
    };
  }

  private conversionEvent(e: ConversionEvent): void {
    if (this.opts.log) this.log(formatEvent(e));
    this.opts.onConversion?.(e);
    this.observer?.conversion(e);
    this.opts.trace?.({ ...e, kind: "conversion", seq: this.seq++, conversion: e.seq });
  }

  private load(): void {
    const view = this.memory!.sharedView;
    const boot = this.opts.boot;
    if (boot.kind !== "tsvmm") {
      for (const w of boot.writes) {
        view.set(w.data, w.gpa);
        if (w.memSize) view.fill(0, w.gpa + w.data.length, w.gpa + w.memSize);
      }
      return;
    }
    for (const image of [boot.firmware, boot.guest]) {
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
        guestEntry: boot.guest.entry,
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
    const boot = this.opts.boot;
    if (boot.kind === "tsvmm") {
      vcpu.setCpuid(encodeCpuid(cpuidFor(index, supported, hypercall)));
      resetVcpu(vcpu, index, boot.firmware.entry, BOOT_INFO_GPA);
    } else {
      vcpu.setCpuid(encodeCpuid(pcCpuidFor(index, this.cpus, this.opts.hideXsave ? hideXsave(supported) : supported)));
      const msrs = pcMsrDefaults();
      const set = vcpu.setMsrs(msrs);
      if (set < msrs.length) this.log(`vCPU ${index}: KVM refused MSR 0x${msrs[set].index.toString(16)} (left at its reset value)`);
      // The boot vCPU enters the kernel; the others wait for INIT/SIPI from it, as on a PC.
      if (index === 0) boot.enter(vcpu);
      else vcpu.setMpState(MpState.UNINITIALIZED);
    }
    vcpu.setSyncRegs(SyncRegs.REGS);
    return state;
  }

  /** A worker thread that runs KVM_RUN for `v` (vcpuThread.ts); `v` stays paused until run(). */
  private startThread(v: VcpuState): void {
    v.native.pause();
    const data: VcpuThreadData = {
      handle: v.native.handle,
      serial: this.serial.state,
      serialIrq: this.pc ? COM1_IRQ : undefined,
      exits: this.exits.buffer,
      conversions: this.threadConversions,
    };
    const index = v.index; // v.native may be closed by the time a thread fails
    this.threads++;
    this.threadIds.push(
      startVcpuThread(data, {
        message: (m: VcpuThreadMessage) => this.onThreadError(v, m.error),
        error: (err) => this.finish(ExitStatus.INTERNAL, `vCPU ${index} thread: ${err.message}`),
        done: () => {
          if (--this.threads > 0) return;
          this.exits.stop();
          if (this.result) this.resolveRun?.(this.result);
        },
      }),
    );
  }

  /** Run until the guest exits, fails, times out or `signal` aborts (with a StopRequest as its
   *  reason; any other reason counts as SIGINT). Never rejects for guest misbehaviour. */
  run(timeoutSeconds?: number, signal?: AbortSignal): Promise<MachineResult> {
    return new Promise((resolve) => {
      this.resolveRun = resolve;
      const pm = this.opts.privateMemory;
      const facts: RunFacts = {
        guest: this.opts.boot.kind === "tsvmm" ? this.opts.boot.guest.name : this.opts.boot.name,
        cpus: this.cpus,
        ram: this.layout.ramSize,
        backing: this.ramBacking,
        backend: pm?.backend ?? "shared",
        sharedBit: pm?.sharedBit ?? 0,
        sharedLimit: this.layout.freeBase,
        pages: this.map?.runs(),
      };
      this.startTime = monotonicMs();
      this.traceEvent(-1, "start", startFields(facts, startClock()));
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
        // one signal may serve many machines in a process: a finished one lets go of it
        this.stopListening = () => signal.removeEventListener("abort", stop);
      }
      // A debugger's pauseAll() before run() keeps the start pause as its own.
      for (const v of this.vcpus) {
        if (this.pauseRequested) v.debugPaused = true;
        else v.native.unpause();
      }
      this.running = true;
      if (this.pc) this.haltCheck = setInterval(() => this.checkHalted(), HALT_CHECK_MS).unref();
    });
  }

  /**
   * With an in-kernel irqchip HLT never exits: a PC guest whose vCPUs all halted with interrupts
   * off (or never started) can never continue. Look every HALT_CHECK_MS and end such a run.
   */
  private checkHalted(): void {
    if (this.result || this.paused) return;
    const IF = 0x200n;
    // Decided and reported while every vCPU is out of KVM_RUN (the registers are readable then).
    this.quiesce(() => {
      const stuck = this.vcpus.every((v) => {
        const mp = v.native.getMpState();
        if (mp === MpState.UNINITIALIZED) return true;
        const r = v.native.getRegs();
        return mp === MpState.HALTED && (decodeRegs(new DataView(r.buffer, r.byteOffset, r.byteLength)).rflags & IF) === 0n;
      });
      if (!stuck || this.result) {
        this.haltedChecks = 0;
        return;
      }
      // The power-down message may still be on its way (the native console pump, a vCPU thread's
      // message): take what is buffered, and report a stuck guest only when the next check agrees.
      this.drainConsole();
      if (this.poweringOff) return this.finish(ExitStatus.OK, "guest powered off (every vCPU halted after the kernel's power-down message)");
      if (++this.haltedChecks < 2) return;
      this.finish(
        ExitStatus.UNHANDLED_EXIT,
        "every vCPU halted with interrupts off (or never started): nothing can wake them",
        this.vcpus.map((v) => v.registerReport()).join("\n"),
      );
    });
  }

  /** A reset request from the guest (i8042, 0xcf9): the VM ends, it does not restart. */
  private guestReset(how: string): void {
    if (this.poweringOff) this.finish(ExitStatus.OK, `guest powered off (then reset: ${how})`);
    else if (this.panicked) this.finish(ExitStatus.GUEST_PANIC, `guest panicked, then reset: ${how}`);
    else this.finish(ExitStatus.GUEST_RESET, `guest reset: ${how}`);
  }

  /** A vCPU thread handed us an exit through the mailbox (errno as runUntilExit() returned it);
   *  the vCPU is paused until we answer. */
  private onThreadExit(v: VcpuState, result: number): void {
    this.exits.received(v.index);
    if (this.result) return;
    this.observer?.exit(v.index, v.kvmRun.exitReason);
    let outcome: Outcome;
    try {
      outcome = handleExit(this.exitContext, v, result);
    } catch (err) {
      return this.finish(ExitStatus.INTERNAL, `vCPU ${v.index}: ${(err as Error).message}`, v.registerReport());
    }
    this.answer(v, outcome);
  }

  /** A vCPU thread's KVM_RUN failed (posted as a message); the vCPU is paused. */
  private onThreadError(v: VcpuState, error: string): void {
    this.exits.received(v.index);
    if (!this.result) this.finish(ExitStatus.KVM_INTERNAL_ERROR, `vCPU ${v.index}: ${error}`, v.registerReport());
  }

  /** Unpause the vCPU for a "resume" (unless a debugger holds it or it halted); tell runOne. */
  private answer(v: VcpuState, outcome: Outcome): void {
    if (outcome === "resume" && !this.result && !v.halted && !v.held) v.native.unpause();
    for (const handled of v.exitWaiters.splice(0)) handled();
  }

  /** Run `work` with every vCPU out of KVM_RUN (paused natively; nested pauses are fine: a vCPU
   *  paused already, e.g. by the exit being handled, is not kicked again). */
  private quiesce<T>(work: () => T): T {
    for (const v of this.vcpus) v.native.pause();
    try {
      return work();
    } finally {
      for (const v of this.vcpus) v.native.unpause();
    }
  }

  // ---- the debugger's surface (vmm/control uses only these) ----
  // A debugger's stop is one native pause per vCPU (debugPaused), on top of any pause the vCPU
  // already has (an exit being handled, a quiesce); an exit a debugger keeps unanswered (held)
  // keeps its own pause. resumeAll() and runOne() undo both.

  get cpuCount(): number {
    return this.vcpus.length;
  }

  get ended(): MachineResult | undefined {
    return this.result;
  }

  /** Stop every vCPU outside KVM_RUN and keep them there until resumeAll(). Before run(): the
   *  vCPUs will not start until resumeAll(). */
  async pauseAll(): Promise<void> {
    this.pauseRequested = true;
    if (!this.running || this.result) return; // run() keeps them paused
    for (const v of this.vcpus) {
      if (v.debugPaused || v.halted) continue;
      v.debugPaused = true;
      if (!v.native.pause()) this.log(`vCPU ${v.index}: still inside KVM_RUN 1 s after the debugger's pause`);
    }
    // An exit posted before the pause (its vCPU paused itself) is handled first: a debugger
    // stopped at it holds it, as if it had come before the stop.
    for (const v of this.vcpus) {
      while (this.exits.inFlight(v.index) > 0 && !this.result)
        await new Promise<void>((handled) => {
          v.exitWaiters.push(handled);
          this.endWaiters.push(handled);
        });
    }
  }

  get paused(): boolean {
    return this.pauseRequested;
  }

  resumeAll(): void {
    this.pauseRequested = false;
    for (const v of this.vcpus) this.release(v);
  }

  /** Undo the debugger's pause and answer a held exit */
  private release(v: VcpuState): void {
    if (v.debugPaused) {
      v.debugPaused = false;
      v.native.unpause();
    }
    if (v.held) {
      v.held = false;
      if (!v.halted && !this.result) v.native.unpause();
    }
  }

  vcpuState(index: number): VcpuRunState {
    const v = this.vcpuAt(index);
    return v.halted ? "halted" : v.debugPaused || v.held ? "paused" : "running";
  }

  /** Let one stopped vCPU run while the others stay paused, until it is held again (its next
   *  debug exit, e.g. after a single step), halts, or the run ends. */
  async runOne(index: number): Promise<void> {
    const v = this.vcpuAt(index);
    if (v.halted || !(v.held || v.debugPaused)) throw new Error(`vCPU ${index} is ${v.halted ? "halted" : "not stopped by the debugger"}`);
    const stopped = new Promise<void>((resolve) => {
      const check = () => (v.held || v.halted || this.result ? resolve() : v.exitWaiters.push(check));
      v.exitWaiters.push(check);
      this.endWaiters.push(resolve);
    });
    this.release(v);
    await stopped;
  }

  private vcpuAt(index: number): VcpuState {
    const v = this.vcpus[index];
    if (!v) throw new RangeError(`no vCPU ${index} (this VM has ${this.vcpus.length})`);
    return v;
  }

  /** Registers of a paused vCPU */
  registers(index: number): { regs: Regs; sregs: Sregs } {
    return this.vcpuAt(index).registers();
  }

  setRegisters(index: number, regs: Regs): void {
    this.vcpuAt(index).native.setRegs(encodeRegs(regs));
  }

  /** KVM_SET_GUEST_DEBUG on a paused (or not yet started) vCPU */
  setGuestDebug(index: number, control: number, debugreg: readonly bigint[]): void {
    this.vcpuAt(index).native.setGuestDebug(encodeGuestDebug(control, debugreg));
  }

  /** 0, or the shared-view bit of the aliased layout */
  get sharedBit(): number {
    return this.opts.privateMemory?.sharedBit ?? 0;
  }

  /** RAM as the host sees it (only shared pages may be read), its page states, its size */
  get memoryView(): { shared: Buffer; map?: PageStateMap; ramSize: bigint } {
    return { shared: this.memory!.sharedView, map: this.map, ramSize: this.layout.ramSize };
  }

  /** Discard the private backing of pages (monitor/API punch), in order with conversions */
  async punch(gpa: bigint, size: bigint): Promise<bigint> {
    if (!this.engine) throw new Error("this VM has no private memory");
    const map = this.map!;
    return this.engine.hostOperation(() => this.memory!.punchPrivate(map.pageOf(gpa), Number(size >> PAGE_SHIFT)));
  }

  private makeTestSlot(gpa: bigint, create: boolean): TestSlot | string {
    if (this.testSlot) return this.testSlot.gpa === gpa ? this.testSlot : `the test slot is at ${hex(this.testSlot.gpa)}`;
    if (!create) return "no test slot was created";
    if (gpa % PAGE !== 0n || gpa < this.layout.ramSize || gpa >= 1n << 32n) return "it must be a page outside RAM and below 4 GiB";
    this.testSlot = new TestSlot(this.vm!, this.opts.privateMemory!.backend, gpa, this.testSlotId);
    return this.testSlot;
  }

  /** Host-initiated conversions (source "cli", "monitor" or "api"); resolves to 0 or a positive errno. */
  async convert(gpa: bigint, size: bigint, to: "private" | "shared", source: "cli" | "monitor" | "api" = "cli"): Promise<number> {
    if (!this.engine) throw new Error("this VM has no private memory");
    return this.engine.request(source, -1, { gpa, pages: size >> PAGE_SHIFT, attrs: to === "private" ? MAP_GPA_RANGE_ENCRYPTED : 0n });
  }

  private console(bytes: Uint8Array): void {
    for (const b of bytes) {
      if (b === 0x0a) {
        if (this.currentLine.trim()) this.lastLine = this.currentLine;
        if (this.pc) this.consoleLine(this.currentLine);
        this.currentLine = "";
      } else if (b !== 0x0d && this.currentLine.length < 400) this.currentLine += String.fromCharCode(b);
    }
    this.opts.onConsole(bytes);
  }

  /** What a PC guest's console says about how it ends (power-off, panic) */
  private consoleLine(line: string): void {
    const event = consoleEvent(line);
    if (event === "power-off") this.poweringOff = true;
    if (event !== "panic" || this.panicked) return;
    this.panicked = true;
    if (this.poweringOff) return; // Linux without ACPI panics ("Attempted to kill init") after powering off
    setTimeout(() => this.finish(ExitStatus.GUEST_PANIC, `guest panic: ${line.trim()}`), PANIC_GRACE_MS).unref();
  }

  /** Deliver the console bytes the native fast path holds now (in order with the pump's). */
  private drainConsole(): void {
    const rest = this.vm?.drainConsole();
    if (rest?.length) this.console(rest);
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
   *  promise resolves once every vCPU thread has closed its vCPU. */
  finish(status: number, reason: string, report?: string): void {
    if (this.result) return;
    const seconds = (monotonicMs() - this.startTime) / 1000;
    const exits = { total: 0, native: 0, typescript: 0 };
    let inRunLoop = 0;
    for (const v of this.vcpus) {
      v.native.stop();
      const s = v.native.stats();
      inRunLoop += s.conversions;
      exits.native += s.nativeExits;
      exits.total += s.runs;
      exits.typescript += s.exits;
    }
    this.drainConsole();
    this.timer?.clear();
    if (this.haltCheck) clearInterval(this.haltCheck);
    this.stopListening?.();
    this.result = {
      status,
      reason,
      report,
      seconds,
      exits,
      ramBacking: this.memory ? this.ramBacking : "memfd",
      conversions: this.engine ? { tally: this.engine.tally, summary: this.engine.summary(), onVcpuThreads: this.engine.counters.onVcpuThreads, inRunLoop } : undefined,
    };
    for (const ended of this.endWaiters.splice(0)) ended();
    this.traceEvent(-1, "end", { status, reason });
    this.observer?.end(this.result);
    if (this.threads === 0) this.resolveRun?.(this.result);
  }

  private log(line: string): void {
    this.opts.log?.(line);
  }

  private traceEvent(vcpu: number, kind: string, fields: Record<string, unknown>): void {
    this.opts.trace?.({ seq: this.seq++, time: +(monotonicMs() - this.startTime).toFixed(3), vcpu, kind, ...fields });
  }

  /** Unclaimed ports the guest touched, for the run log */
  get unclaimedPorts(): UnclaimedAccesses {
    return this.bus.unclaimed;
  }

  /** Unclaimed MMIO addresses a PC guest touched, for the run log (empty for tsvmm's guests) */
  get unclaimedMmio(): UnclaimedAccesses {
    return this.exitContext.unclaimedMmio ?? new UnclaimedAccesses();
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
