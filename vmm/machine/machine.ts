// A VM assembled from a firmware image and a guest image: RAM, vCPUs, devices, and the policy
// for every exit the native run loop hands to TypeScript.
import { loadAddon, NativeKvm, NativeVcpu, NativeVm, VcpuEvent } from "../native";
import { Cap, Exit, exitName, InternalError, IoDirection, SyncRegs, VmType } from "../kvm/uapi";
import { CpuidEntry, decodeCpuid, decodeRegs, decodeSregs, encodeCpuid, encodeRegs, encodeSregs, Regs, Sregs } from "../kvm/structs";
import { KvmRunView } from "../kvm/run";
import { ExitStatus, fromSyscall, isSyscallError } from "../errors";
import { BackendId, BOOT_INFO_GPA, CONSOLE_PORT, ConvertMethod, encodeBootInfo, EXIT_PORT } from "./abi";
import type { ElfImage } from "./elf";
import { computeLayout, Layout } from "./layout";
import { GuestRam, RamBacking } from "./memory";
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
}

export interface RunResult {
  status: number;
  /** One line: why the VM ended */
  reason: string;
  /** Registers and context for failures */
  report?: string;
  seconds: number;
  exits: { total: number; native: number; typescript: number };
  ramBacking: RamBacking;
}

type Outcome = "continue" | "park" | "stop";

const TSS_ADDR = 0xfffbd000;
const KVM_FEATURE_HC_MAP_GPA_RANGE = 16;

class VcpuState {
  halted = false;
  readonly run: KvmRunView;
  pausedWaiter?: () => void;

  constructor(readonly native: NativeVcpu) {
    this.run = new KvmRunView(native.run);
  }
}

export class Machine {
  readonly layout: Layout;
  private kvm?: NativeKvm;
  private vm?: NativeVm;
  private ram?: GuestRam;
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

  get ramBacking(): RamBacking {
    return this.ram!.backing;
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
    try {
      this.vm = kvm.createVm(VmType.DEFAULT);
      const vm = this.vm;
      const region2 = kvm.checkExtension(Cap.USER_MEMORY2) > 0;
      const flags = region2 ? vm.checkExtension(Cap.GUEST_MEMFD_FLAGS) : 0;
      const backing: RamBacking = (flags & 3) === 3 ? "guest_memfd" : "memfd";
      this.ram = GuestRam.create(vm, this.layout.ramSize, backing, region2);
      this.log(
        `RAM ${this.layout.ramSize >> 20n} MiB backed by ${backing === "guest_memfd" ? "guest_memfd (MMAP|INIT_SHARED, KVM_MEM_GUEST_MEMFD)" : "memfd (this kernel's guest_memfd cannot be mapped)"}, ${this.opts.cpus} vCPU${this.opts.cpus > 1 ? "s" : ""}`,
      );
      this.load();
      try {
        vm.setTssAddr(TSS_ADDR);
      } catch {
        // Only VMX needs a TSS for real-mode emulation; other KVMs may refuse it harmlessly.
      }
      const cpuid = decodeCpuid(kvm.supportedCpuid());
      for (let i = 0; i < this.opts.cpus; i++) this.vcpus.push(this.createVcpu(i, cpuid));
      vm.setFastPorts(this.serial.fastPorts());
      this.serial.onFastPortsChanged = () => this.vm?.setFastPorts(this.serial.fastPorts());
      vm.onConsole((bytes) => this.console(bytes));
    } catch (err) {
      this.close();
      throw isSyscallError(err) ? fromSyscall(err, "cannot set up the VM") : err;
    }
  }

  private load(): void {
    const ram = this.ram!;
    for (const image of [this.opts.firmware, this.opts.guest]) {
      for (const s of image.segments) {
        ram.write(s.gpa, s.data);
        ram.fill(s.gpa + BigInt(s.data.length), Number(s.memSize) - s.data.length, 0);
      }
    }
    ram.write(
      BigInt(BOOT_INFO_GPA),
      encodeBootInfo({
        cpuCount: this.opts.cpus,
        guestEntry: this.opts.guest.entry,
        freeBase: this.layout.freeBase,
        ram: [{ base: 0n, size: this.layout.ramSize, flags: 0 }],
        backend: BackendId.shared,
        sharedBit: 0,
        convertMethod: ConvertMethod.none,
        cmdline: this.opts.cmdline,
      }),
    );
  }

  private createVcpu(index: number, supported: CpuidEntry[]): VcpuState {
    const vcpu = this.vm!.createVcpu(index);
    const state = new VcpuState(vcpu);
    vcpu.setCpuid(encodeCpuid(cpuidFor(index, supported)));
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
      this.traceEvent(-1, "start", { cpus: this.opts.cpus, ram: Number(this.layout.ramSize), backing: this.ram!.backing });
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
    switch (event.kind) {
      case "paused":
        v.pausedWaiter?.();
        return;
      case "error":
        this.finish(ExitStatus.KVM_INTERNAL_ERROR, `vCPU ${v.native.index}: ${event.error.message}`, this.registerReport(v));
        return;
      case "exit": {
        this.typescriptExits++;
        const outcome = this.handleExit(v, event.errno);
        if (outcome === "continue" && !this.result) v.native.resume();
        return;
      }
    }
  }

  /** The exit switch: every exit the native loop does not answer itself lands here. */
  private handleExit(v: VcpuState, errno: number): Outcome {
    const run = v.run;
    const index = v.native.index;
    const reason = run.exitReason;
    switch (reason) {
      case Exit.IO:
        return this.handleIo(v);
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
      case Exit.MEMORY_FAULT: {
        const f = run.memoryFault;
        this.traceEvent(index, "memory-fault", { gpa: "0x" + f.gpa.toString(16), size: Number(f.size), flags: Number(f.flags), errno });
        this.finish(
          ExitStatus.MEMORY_FAULT,
          `vCPU ${index}: KVM_EXIT_MEMORY_FAULT gpa=0x${f.gpa.toString(16)} size=0x${f.size.toString(16)} flags=0x${f.flags.toString(16)} (errno ${loadAddon().errnoName(errno)}); this VM has no private memory to convert`,
          this.registerReport(v),
        );
        return "stop";
      }
      default:
        this.finish(ExitStatus.UNHANDLED_EXIT, `vCPU ${index}: unhandled ${exitName(reason)} (exit reason ${reason})`, this.registerReport(v));
        return "stop";
    }
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
    await Promise.all(
      running.map(
        (v) =>
          new Promise<void>((resolve) => {
            const bound = setTimeout(resolve, 1000);
            v.pausedWaiter = () => {
              clearTimeout(bound);
              resolve();
            };
            v.native.kick();
          }),
      ),
    );
    this.finish(
      ExitStatus.TIMEOUT,
      `timed out after ${seconds} s (--timeout)`,
      running.map((v) => this.registerReport(v)).join("\n"),
    );
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
      ramBacking: this.ram?.backing ?? "memfd",
    };
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
    this.ram?.close();
    this.vm?.close();
    this.kvm?.close();
    this.ram = undefined;
    this.vm = undefined;
    this.kvm = undefined;
  }
}

/** The supported CPUID, made per-vCPU: APIC IDs, and no hypercall feature we have not enabled. */
function cpuidFor(index: number, supported: CpuidEntry[]): CpuidEntry[] {
  return supported.map((e) => {
    const c = { ...e };
    if (c.function === 1) c.ebx = ((c.ebx & 0x00ffffff) | (index << 24)) >>> 0;
    if (c.function === 0xb || c.function === 0x1f) c.edx = index;
    if (c.function === 0x40000001) c.eax &= ~(1 << KVM_FEATURE_HC_MAP_GPA_RANGE);
    return c;
  });
}
