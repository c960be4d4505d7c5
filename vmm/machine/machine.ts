// A VM assembled from a firmware image and a guest image: RAM, vCPUs, devices, and the policy
// for every exit the native run loop hands to TypeScript.
import { loadAddon, NativeKvm, NativeVcpu, NativeVm, VcpuEvent } from "../native";
import { Cap, Exit, exitName, HC_MAP_GPA_RANGE, InternalError, IoDirection, SyncRegs, VmType } from "../kvm/uapi";
import { CpuidEntry, decodeCpuid, decodeRegs, decodeSregs, encodeCpuid, encodeRegs, encodeSregs, Regs, Sregs } from "../kvm/structs";
import { KvmRunView } from "../kvm/run";
import { ExitStatus, fromSyscall, isSyscallError, UsageError } from "../errors";
import { BackendId, BOOT_INFO_GPA, CONSOLE_PORT, CONVERT_PORT, ConvertMethod, encodeBootInfo, EXIT_PORT, HOST_PORT, MAX_RAM_RANGES, RAM_PRIVATE } from "./abi";
import type { ElfImage } from "./elf";
import { computeLayout, Layout } from "./layout";
import { RamBacking, SharedRam } from "../memory/shared";
import type { MemoryBackend } from "../memory/backend";
import { MemslotsBackend } from "../memory/memslots";
import { AttributesBackend } from "../memory/attributes";
import { PAGE_SHIFT, PageStateMap } from "../memory/pageState";
import { ConversionEngine, ConversionEvent, FaultPolicy, formatEvent, HypercallPolicy } from "../memory/engine";
import { handleHostRequest } from "../memory/hostRequests";
import { TestSlot } from "../memory/testSlot";
import { PortBus } from "../devices/bus";
import { Serial8250 } from "../devices/serial";
import { DebugExit } from "../devices/debugExit";
import { formatRegisters } from "./report";

export interface MachineOptions {
  firmware: ElfImage;
  guest: ElfImage;
  memSize: bigint;
  cpus: number;
  cmdline: string;
  device?: string;
  /** Guest console output, in order */
  onConsole: (bytes: Uint8Array) => void;
  /** Run-log lines for a person (stderr in the CLI) */
  log?: (line: string) => void;
  /** Structured events (NDJSON with --trace) */
  trace?: (event: Record<string, unknown>) => void;
  /** Private memory; absent = all RAM shared */
  privateMemory?: PrivateMemoryOptions;
}

export interface PrivateMemoryOptions {
  backend: "attributes" | "memslots";
  /** GPA ranges [start, end) that start private; each must lie at or above the layout's freeBase */
  ranges: Array<{ start: bigint; end: bigint }>;
  /** 0 = no aliased layout */
  sharedBit: number;
  onFault: FaultPolicy;
  onHypercall: HypercallPolicy;
  prealloc: boolean;
  /** How the guest asks for conversions: a hypercall KVM delivers (vmcall or vmmcall by CPU
   *  vendor), or the port doorbell */
  convertMethod: "hypercall" | "doorbell";
}

export interface RunResult {
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

type Outcome = "continue" | "park" | "stop";

const TSS_ADDR = 0xfffbd000;
const KVM_FEATURE_HC_MAP_GPA_RANGE = 16;

class VcpuState {
  /** halted, or stopped by --on-fault deny: never resumed again */
  halted = false;
  /** outside KVM_RUN, waiting for us */
  parked = false;
  readonly run: KvmRunView;
  onParked?: () => void;

  constructor(readonly native: NativeVcpu) {
    this.run = new KvmRunView(native.run);
  }
}

export class Machine {
  readonly layout: Layout;
  private kvm?: NativeKvm;
  private vm?: NativeVm;
  private memory?: MemoryBackend;
  private engine?: ConversionEngine;
  private testSlot?: TestSlot;
  private map?: PageStateMap;
  /** closed while vCPUs must stay out of KVM_RUN (memslot re-layout, timeout report) */
  private gate?: Promise<void>;
  private openGate?: () => void;
  private readonly vcpus: VcpuState[] = [];
  private readonly bus = new PortBus();
  readonly serial: Serial8250;
  private result?: RunResult;
  private resolveRun?: (r: RunResult) => void;
  private timer?: NodeJS.Timeout;
  private startTime = 0;
  private typescriptExits = 0;
  private lastLine = "";
  private currentLine = "";
  private seq = 0;

  constructor(private readonly opts: MachineOptions) {
    this.layout = computeLayout(opts.memSize, opts.cpus, opts.firmware, opts.guest);
    this.serial = new Serial8250(CONSOLE_PORT, (bytes) => this.console(bytes));
    this.bus.register(CONSOLE_PORT, 8, this.serial);
    this.bus.register(EXIT_PORT, 4, new DebugExit((status) => this.finish(status & 0xff, `guest exited with status ${status}`)));
  }

  get ramBacking(): RunResult["ramBacking"] {
    return this.memory instanceof SharedRam ? this.memory.backing : (this.memory?.kind as "attributes" | "memslots");
  }

  /** Create the VM, RAM and vCPUs and load the images. Throws TsvmmError on host problems. */
  create(): void {
    const addon = loadAddon();
    const device = this.opts.device ?? "/dev/kvm";
    try {
      this.kvm = new addon.Kvm(device);
    } catch (err) {
      throw isSyscallError(err) ? fromSyscall(err, `cannot open ${device}`) : err;
    }
    const kvm = this.kvm;
    const pm = this.opts.privateMemory;
    try {
      this.vm = kvm.createVm(pm?.backend === "attributes" ? VmType.SW_PROTECTED : VmType.DEFAULT);
      const vm = this.vm;
      if (pm) this.createPrivateMemory(vm, pm);
      else {
        const region2 = kvm.checkExtension(Cap.USER_MEMORY2) > 0;
        const flags = region2 ? vm.checkExtension(Cap.GUEST_MEMFD_FLAGS) : 0;
        this.memory = SharedRam.create(vm, this.layout.ramSize, (flags & 3) === 3 ? "guest_memfd" : "memfd", region2);
      }
      this.log(`RAM ${this.layout.ramSize >> 20n} MiB: ${this.memory!.describe()}, ${this.opts.cpus} vCPU${this.opts.cpus > 1 ? "s" : ""}`);
      const cpuid = decodeCpuid(kvm.supportedCpuid());
      this.load(cpuid);
      try {
        vm.setTssAddr(TSS_ADDR);
      } catch {
        // Only VMX needs a TSS for real-mode emulation; other KVMs may refuse it harmlessly.
      }
      const hypercall = pm !== undefined && pm.convertMethod !== "doorbell";
      if (hypercall) vm.enableCap(Cap.EXIT_HYPERCALL, [1n << BigInt(HC_MAP_GPA_RANGE)]);
      for (let i = 0; i < this.opts.cpus; i++) this.vcpus.push(this.createVcpu(i, cpuid, hypercall));
      vm.setFastPorts(this.serial.fastPorts());
      this.serial.onFastPortsChanged = () => this.vm?.setFastPorts(this.serial.fastPorts());
      vm.onConsole((bytes) => this.console(bytes));
    } catch (err) {
      this.close();
      throw isSyscallError(err) ? fromSyscall(err, "cannot set up the VM") : err;
    }
  }

  private createPrivateMemory(vm: NativeVm, pm: PrivateMemoryOptions): void {
    if (pm.sharedBit) {
      const bits = physicalAddressBits(decodeCpuid(this.kvm!.supportedCpuid()));
      if (pm.sharedBit < 32 || pm.sharedBit >= bits)
        throw new UsageError(`--shared-bit ${pm.sharedBit} is out of range`, `use 32 to ${bits - 1}: above the 4 GiB identity map and below this CPU's ${bits} physical address bits`);
    }
    const map = new PageStateMap(0n, this.layout.ramSize);
    for (const r of pm.ranges) map.set(map.pageOf(r.start), Number((r.end - r.start) >> PAGE_SHIFT), "private");
    if (map.runs().length > MAX_RAM_RANGES)
      throw new UsageError(`--private makes ${map.runs().length} ranges; the boot page holds at most ${MAX_RAM_RANGES}`);
    const ctx = { vm, map, sharedLimit: this.layout.freeBase, sharedBit: pm.sharedBit, prealloc: pm.prealloc };
    this.map = map;
    this.memory = pm.backend === "attributes" ? new AttributesBackend(ctx) : new MemslotsBackend(ctx);
    this.engine = new ConversionEngine({
      map,
      backend: this.memory,
      sharedLimit: this.layout.freeBase,
      sharedBit: pm.sharedBit,
      quiesce: (work) => this.quiesce(work),
      emit: (e) => this.conversionEvent(e),
      now: () => performance.now() - this.startTime,
      testSlot: () => this.testSlot,
    });
  }

  private conversionEvent(e: ConversionEvent): void {
    this.log(formatEvent(e));
    this.opts.trace?.({ ...e, kind: "conversion", seq: this.seq++, conversion: e.seq });
  }

  private load(cpuid: CpuidEntry[]): void {
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
        cpuCount: this.opts.cpus,
        guestEntry: this.opts.guest.entry,
        freeBase: this.layout.freeBase,
        ram,
        backend: pm ? BackendId[pm.backend] : BackendId.shared,
        sharedBit: pm?.sharedBit ?? 0,
        convertMethod: !pm ? ConvertMethod.none : pm.convertMethod === "doorbell" ? ConvertMethod.doorbell : isAmd(cpuid) ? ConvertMethod.vmmcall : ConvertMethod.vmcall,
        cmdline: this.opts.cmdline,
      }),
      BOOT_INFO_GPA,
    );
  }

  private createVcpu(index: number, supported: CpuidEntry[], hypercall: boolean): VcpuState {
    const vcpu = this.vm!.createVcpu(index);
    const state = new VcpuState(vcpu);
    vcpu.setCpuid(encodeCpuid(cpuidFor(index, supported, hypercall)));
    // The vCPU starts at the firmware entry in 32-bit protected mode with flat segments and
    // paging off (the PVH entry state): no real-mode code, no reset vector. See abi.h.
    const sregsBuf = vcpu.getSregs();
    const s = decodeSregs(new DataView(sregsBuf.buffer, sregsBuf.byteOffset, sregsBuf.byteLength));
    const flat = (selector: number, type: number) => ({
      base: 0n, limit: 0xffffffff, selector, type, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0,
    });
    s.cs = flat(0x08, 0x0b);
    s.ds = s.es = s.fs = s.gs = s.ss = flat(0x10, 0x03);
    // A busy 32/64-bit TSS: VMX refuses long mode with the reset value (16-bit TSS).
    s.tr = { base: 0n, limit: 0x67, selector: 0x18, type: 0x0b, present: 1, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0 };
    s.cr0 = 0x11n; // PE | ET
    s.cr3 = 0n;
    s.cr4 = 0n;
    s.efer = 0n;
    vcpu.setSregs(encodeSregs(sregsBuf, s));
    vcpu.setRegs(encodeRegs({ rip: this.opts.firmware.entry, rbx: BigInt(BOOT_INFO_GPA), rsi: BigInt(index), rflags: 2n }));
    vcpu.setSyncRegs(SyncRegs.REGS);
    return state;
  }

  /** Run until the guest exits, fails, times out or `signal` aborts. Never rejects for guest misbehaviour. */
  run(timeoutSeconds?: number, signal?: AbortSignal): Promise<RunResult> {
    return new Promise((resolve) => {
      this.resolveRun = resolve;
      this.startTime = performance.now();
      this.traceEvent(-1, "start", { cpus: this.opts.cpus, ram: Number(this.layout.ramSize), backing: this.ramBacking });
      if (timeoutSeconds && timeoutSeconds > 0)
        this.timer = setTimeout(() => void this.timeout(timeoutSeconds), timeoutSeconds * 1000);
      if (signal) {
        if (signal.aborted) return this.finish(ExitStatus.INTERRUPTED, "interrupted before start");
        signal.addEventListener("abort", () => this.finish(ExitStatus.INTERRUPTED, "interrupted (SIGINT)"), { once: true });
      }
      for (const v of this.vcpus) v.native.start((event) => this.onEvent(v, event));
    });
  }

  private onEvent(v: VcpuState, event: VcpuEvent): void {
    if (this.result) return;
    v.parked = true;
    v.onParked?.();
    v.onParked = undefined;
    switch (event.kind) {
      case "paused":
        void this.resume(v);
        return;
      case "error":
        this.finish(ExitStatus.KVM_INTERNAL_ERROR, `vCPU ${v.native.index}: ${event.error.message}`, this.registerReport(v));
        return;
      case "exit": {
        this.typescriptExits++;
        const outcome = this.handleExit(v, event.errno);
        if (outcome instanceof Promise)
          outcome.then(
            (o) => {
              if (o === "continue") void this.resume(v);
            },
            (err) => this.finish(ExitStatus.INTERNAL, `vCPU ${v.native.index}: ${(err as Error).message}`, this.registerReport(v)),
          );
        else if (outcome === "continue") void this.resume(v);
        return;
      }
    }
  }

  /** Re-enter KVM_RUN, once no re-layout or report needs every vCPU outside it. */
  private async resume(v: VcpuState): Promise<void> {
    while (this.gate) await this.gate;
    if (this.result || v.halted || !v.parked) return;
    v.parked = false;
    v.native.resume();
  }

  /** Run `work` with every vCPU out of KVM_RUN (kicked ones report "paused" and wait). */
  private async quiesce<T>(work: () => T): Promise<T> {
    while (this.gate) await this.gate;
    this.gate = new Promise<void>((open) => (this.openGate = open));
    try {
      await Promise.all(
        this.vcpus
          .filter((v) => !v.parked && !this.result)
          .map(
            (v) =>
              new Promise<void>((parked) => {
                v.onParked = parked;
                v.native.kick();
              }),
          ),
      );
      return work();
    } finally {
      const open = this.openGate!;
      this.gate = undefined;
      open();
    }
  }

  /** The exit switch: every exit the native loop does not answer itself lands here. */
  private handleExit(v: VcpuState, errno: number): Outcome | Promise<Outcome> {
    const run = v.run;
    const index = v.native.index;
    const reason = run.exitReason;
    switch (reason) {
      case Exit.IO: {
        const io = run.io;
        if (this.engine && io.direction === IoDirection.OUT && io.size === 4 && io.count === 1) {
          if (io.port === CONVERT_PORT) return this.doorbell(v);
          if (io.port === HOST_PORT) return this.hostRequest(v);
        }
        return this.handleIo(v);
      }
      case Exit.HYPERCALL:
        return this.hypercall(v);
      case Exit.HLT:
        v.halted = true;
        this.traceEvent(index, "halt", {});
        if (this.vcpus.every((x) => x.halted))
          this.finish(
            ExitStatus.UNHANDLED_EXIT,
            "every vCPU halted without writing the exit port (no interrupts are delivered, so none can continue)",
            this.registerReport(v),
          );
        return "park";
      case Exit.SHUTDOWN:
        this.finish(ExitStatus.TRIPLE_FAULT, `vCPU ${index}: triple fault (KVM_EXIT_SHUTDOWN)`, this.registerReport(v));
        return "stop";
      case Exit.INTERNAL_ERROR: {
        const { suberror, data } = run.internal;
        const what = suberror === InternalError.EMULATION ? "emulation failure" : `internal error, suberror ${suberror}`;
        const extra = data.length ? ` data=[${data.map((d) => "0x" + d.toString(16)).join(", ")}]` : "";
        this.finish(ExitStatus.KVM_INTERNAL_ERROR, `vCPU ${index}: KVM ${what} (KVM_EXIT_INTERNAL_ERROR)${extra}`, this.registerReport(v));
        return "stop";
      }
      case Exit.FAIL_ENTRY: {
        const { reason: hw } = run.failEntry;
        this.finish(ExitStatus.KVM_INTERNAL_ERROR, `vCPU ${index}: VM entry failed, hardware reason 0x${hw.toString(16)}`, this.registerReport(v));
        return "stop";
      }
      case Exit.MMIO: {
        const m = run.mmio;
        this.finish(
          ExitStatus.UNHANDLED_EXIT,
          `vCPU ${index}: ${m.isWrite ? "wrote" : "read"} ${m.len} bytes at GPA 0x${m.physAddr.toString(16)}, which is neither RAM nor a device (KVM_EXIT_MMIO)`,
          this.registerReport(v),
        );
        return "stop";
      }
      case Exit.SYSTEM_EVENT: {
        const e = run.systemEvent;
        this.finish(ExitStatus.UNHANDLED_EXIT, `vCPU ${index}: KVM_EXIT_SYSTEM_EVENT type ${e.type}`, this.registerReport(v));
        return "stop";
      }
      case Exit.MEMORY_FAULT:
        return this.memoryFault(v, errno);
      default:
        this.finish(ExitStatus.UNHANDLED_EXIT, `vCPU ${index}: unhandled ${exitName(reason)} (exit reason ${reason})`, this.registerReport(v));
        return "stop";
    }
  }

  /** KVM_EXIT_HYPERCALL: only KVM_HC_MAP_GPA_RANGE is enabled; hypercall.ret is always set. */
  private async hypercall(v: VcpuState): Promise<Outcome> {
    const { nr, args } = v.run.hypercall;
    if (nr !== BigInt(HC_MAP_GPA_RANGE) || !this.engine) {
      v.run.hypercallRet = BigInt(-1000 /* -KVM_ENOSYS */);
      this.finish(ExitStatus.BAD_HYPERCALL, `vCPU ${v.native.index}: unexpected hypercall nr ${nr} (only KVM_HC_MAP_GPA_RANGE = 12 is enabled)`, this.registerReport(v));
      return "stop";
    }
    const ret = await this.engine.request("hypercall", v.native.index, { gpa: args[0], pages: args[1], attrs: args[2] }, this.opts.privateMemory!.onHypercall);
    v.run.hypercallRet = BigInt(ret);
    return "continue";
  }

  /** The port doorbell: the hypercall's registers through a 32-bit `out` to CONVERT_PORT. */
  private async doorbell(v: VcpuState): Promise<Outcome> {
    const r = v.run.syncRegs;
    if (r.rax !== BigInt(HC_MAP_GPA_RANGE)) {
      v.run.setSyncReg("rax", 1000n);
      this.finish(ExitStatus.BAD_HYPERCALL, `vCPU ${v.native.index}: doorbell with RAX=${r.rax} (only KVM_HC_MAP_GPA_RANGE = 12 exists)`, this.registerReport(v));
      return "stop";
    }
    const ret = await this.engine!.request("doorbell", v.native.index, { gpa: r.rbx, pages: r.rcx, attrs: r.rdx }, this.opts.privateMemory!.onHypercall);
    v.run.setSyncReg("rax", BigInt(ret));
    return "continue";
  }

  /** A host request (abi.h): the VMM's side of the conversion tests. */
  private async hostRequest(v: VcpuState): Promise<Outcome> {
    const io = v.run.io;
    const gpa = BigInt(new DataView(v.run.ioData(io.dataOffset, 4).slice().buffer).getUint32(0, true));
    // Serialised with conversions, so a check never sees a half-done one.
    const what = await this.engine!.hostOperation(() =>
      handleHostRequest({ map: this.map!, backend: this.memory!, sharedLimit: this.layout.freeBase, testSlot: (at, create) => this.makeTestSlot(at, create) }, gpa),
    );
    this.traceEvent(v.native.index, "host-request", { what });
    return "continue";
  }

  private async memoryFault(v: VcpuState, errno: number): Promise<Outcome> {
    const f = v.run.memoryFault;
    const index = v.native.index;
    const name = loadAddon().errnoName(errno);
    const describe = `KVM_EXIT_MEMORY_FAULT gpa=0x${f.gpa.toString(16)} size=0x${f.size.toString(16)} flags=0x${f.flags.toString(16)} (${name})`;
    if (!this.engine) {
      this.traceEvent(index, "memory-fault", { gpa: "0x" + f.gpa.toString(16), size: Number(f.size), flags: Number(f.flags), errno: name });
      this.finish(ExitStatus.MEMORY_FAULT, `vCPU ${index}: ${describe}; this VM has no private memory to convert`, this.registerReport(v));
      return "stop";
    }
    const outcome = await this.engine.fault(index, f, name, this.opts.privateMemory!.onFault);
    if (outcome.action === "retry") return "continue";
    if (outcome.action === "deny") {
      // --on-fault deny: this vCPU stops with a report; the others go on.
      this.log(`vCPU ${index} stopped: ${describe}: ${outcome.reason}\n${this.registerReport(v)}`);
      v.halted = true;
      if (this.vcpus.every((x) => x.halted))
        this.finish(ExitStatus.MEMORY_FAULT, `every vCPU stopped; the last: ${describe}: ${outcome.reason}`);
      return "park";
    }
    this.finish(ExitStatus.MEMORY_FAULT, `vCPU ${index}: ${describe}: ${outcome.reason}`, this.registerReport(v));
    return "stop";
  }

  private makeTestSlot(gpa: bigint, create: boolean): TestSlot | string {
    if (this.testSlot) return this.testSlot.gpa === gpa ? this.testSlot : `the test slot is at 0x${this.testSlot.gpa.toString(16)}`;
    if (!create) return "no test slot was created";
    if (gpa % 4096n !== 0n || gpa < this.layout.ramSize || gpa >= 1n << 32n) return "it must be a page outside RAM and below 4 GiB";
    this.testSlot = new TestSlot(this.vm!, this.opts.privateMemory!.backend, gpa);
    return this.testSlot;
  }

  /** Conversions from the API (source "cli"); resolves to 0 or a positive errno. */
  convert(gpa: bigint, size: bigint, to: "private" | "shared"): Promise<number> {
    if (!this.engine) return Promise.reject(new Error("this VM has no private memory"));
    return this.engine.request("cli", -1, { gpa, pages: size >> PAGE_SHIFT, attrs: to === "private" ? 0x10n : 0n });
  }

  private handleIo(v: VcpuState): Outcome {
    const io = v.run.io;
    const data = v.run.ioData(io.dataOffset, io.size * io.count);
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    for (let i = 0; i < io.count && !this.result; i++) {
      const o = i * io.size;
      if (io.direction === IoDirection.IN) {
        const value = this.bus.read(io.port, io.size);
        if (io.size === 1) view.setUint8(o, value);
        else if (io.size === 2) view.setUint16(o, value, true);
        else view.setUint32(o, value, true);
      } else {
        const value = io.size === 1 ? view.getUint8(o) : io.size === 2 ? view.getUint16(o, true) : view.getUint32(o, true);
        this.bus.write(io.port, io.size, value);
      }
    }
    return this.result ? "stop" : "continue";
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

  private registerReport(v: VcpuState): string {
    let regs: Regs;
    let sregs: Sregs;
    try {
      const r = v.native.getRegs();
      regs = decodeRegs(new DataView(r.buffer, r.byteOffset, r.byteLength));
      const s = v.native.getSregs();
      sregs = decodeSregs(new DataView(s.buffer, s.byteOffset, s.byteLength));
    } catch (err) {
      return `  (registers unavailable: ${(err as Error).message})`;
    }
    return formatRegisters(v.native.index, regs, sregs);
  }

  private async timeout(seconds: number): Promise<void> {
    if (this.result) return;
    // Bring every running vCPU out of KVM_RUN to report where it was.
    const running = this.vcpus.filter((v) => !v.halted);
    const report = () =>
      this.finish(ExitStatus.TIMEOUT, `timed out after ${seconds} s (--timeout)`, running.map((v) => this.registerReport(v)).join("\n"));
    await Promise.race([this.quiesce(report), new Promise((r) => setTimeout(r, 1000))]);
    report(); // a no-op unless some vCPU did not leave KVM_RUN within a second
  }

  /** End the run (first caller wins): stop every vCPU thread, deliver the rest of the console. */
  finish(status: number, reason: string, report?: string): void {
    if (this.result) return;
    const seconds = (performance.now() - this.startTime) / 1000;
    let native = 0;
    let total = 0;
    for (const v of this.vcpus) {
      v.native.stop();
      const s = v.native.stats();
      native += s.nativeExits;
      total += s.runs;
    }
    if (this.vm) {
      const rest = this.vm.drainConsole();
      if (rest.length) this.console(rest);
    }
    if (this.timer) clearTimeout(this.timer);
    this.result = {
      status,
      reason,
      report,
      seconds,
      exits: { total, native, typescript: this.typescriptExits },
      ramBacking: this.memory ? this.ramBacking : "memfd",
      conversions: this.engine ? { tally: this.engine.tally, summary: this.engine.summary() } : undefined,
    };
    this.openGate?.();
    this.traceEvent(-1, "end", { status, reason });
    this.resolveRun?.(this.result);
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

function isAmd(cpuid: CpuidEntry[]): boolean {
  const leaf0 = cpuid.find((e) => e.function === 0);
  return leaf0?.ebx === 0x68747541; // "Auth"enticAMD
}

function physicalAddressBits(cpuid: CpuidEntry[]): number {
  return (cpuid.find((e) => e.function === 0x80000008)?.eax ?? 36) & 0xff;
}

/** The supported CPUID, made per-vCPU: APIC IDs, and no hypercall feature we have not enabled. */
function cpuidFor(index: number, supported: CpuidEntry[], hypercall: boolean): CpuidEntry[] {
  return supported.map((e) => {
    const c = { ...e };
    if (c.function === 1) c.ebx = ((c.ebx & 0x00ffffff) | (index << 24)) >>> 0;
    if (c.function === 0xb || c.function === 0x1f) c.edx = index;
    // Advertised only once KVM_CAP_EXIT_HYPERCALL is enabled (hypercalls.rst).
    if (c.function === 0x40000001)
      c.eax = hypercall ? c.eax | (1 << KVM_FEATURE_HC_MAP_GPA_RANGE) : c.eax & ~(1 << KVM_FEATURE_HC_MAP_GPA_RANGE);
    return c;
  });
}
