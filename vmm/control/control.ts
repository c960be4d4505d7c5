// The control core: everything that stops, inspects or changes a running VM. The monitor, the
// GDB stub and the TypeScript API call these methods and nothing else; none of them touches the
// Machine directly. Pausing uses the Machine's park/kick mechanism (pauseAll/resumeAll/runOne).
import type { ConversionEvent } from "../memory/engine";
import type { Machine, MachineObserver, MachineResult } from "../machine/machine";
import type { Regs, Sregs } from "../kvm/structs";
import { Exit, GuestDebug } from "../kvm/uapi";
import { PAGE, PAGE_SHIFT } from "../memory/pageState";
import { SymbolTable } from "../debug/symbols";
import { translate } from "../debug/pageWalk";
import { BreakSpec, ConversionSource, describeBreakSpec, exitReasonName, GpaRange, MachineEvent, matches, WatchAccess } from "./breakSpec";
import { formatRegisters } from "../machine/report";

export type StopReason = "start" | "interrupt" | "breakpoint" | "event" | "step" | "next" | "fault";

export interface Stop {
  reason: StopReason;
  /** the vCPU the stop is about */
  vcpu: number;
  /** one line: what stopped the VM */
  text: string;
  event?: MachineEvent;
  breakpoint?: number;
}

export interface Breakpoint {
  id: number;
  spec: BreakSpec;
  hits: number;
  /** addr= breakpoints: the resolved instruction address */
  addr?: bigint;
  /** watch= breakpoints: the watched bytes */
  watch?: Watch;
  /** addr= and watch=: the debug register (DR0-DR3) holding it */
  slot?: number;
}

export interface Watch {
  /** guest-linear address, aligned to length */
  addr: bigint;
  length: 1 | 2 | 4 | 8;
  access: WatchAccess;
}

export interface RecordedEvent {
  time: number;
  text: string;
  event: MachineEvent;
}

export interface PageRun {
  start: bigint;
  end: bigint;
  state: "private" | "shared";
  pages: number;
}

export type MemoryRead = { data: Buffer } | { error: string; at: bigint };

/** Debug-register slots: x86 has four (DR0-DR3), shared by instruction breakpoints and watchpoints */
export const HW_BREAKPOINTS = 4;
/** DR7's RW field per access (01 data writes, 11 data reads and writes) and LEN field per length */
const DR7_RW: Record<WatchAccess, bigint> = { w: 0b01n, rw: 0b11n };
const DR7_LEN: Record<Watch["length"], bigint> = { 1: 0b00n, 2: 0b01n, 4: 0b11n, 8: 0b10n };
const EVENT_LOG = 1000;

export class ControlError extends Error {}

/** KVM_SET_GUEST_DEBUG's debugreg[8]: DR0-DR3 = addresses; DR7 = the local enable bit, RW and LEN
 *  per slot (an instruction breakpoint has RW=00, LEN=00). skipExecAt: leave out an instruction
 *  breakpoint there (stepping over it). */
export function debugRegisters(breakpoints: readonly Breakpoint[], skipExecAt?: bigint): bigint[] {
  const regs = [0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n];
  for (const b of breakpoints) {
    if (b.slot === undefined || (b.addr !== undefined && b.addr === skipExecAt)) continue;
    const i = BigInt(b.slot);
    regs[b.slot] = b.addr ?? b.watch!.addr;
    regs[7] |= 1n << (2n * i);
    if (b.watch) regs[7] |= (DR7_RW[b.watch.access] | (DR7_LEN[b.watch.length] << 2n)) << (16n + 4n * i);
  }
  return regs;
}

export class Control {
  readonly symbols: SymbolTable;
  private readonly breakpoints: Breakpoint[] = [];
  private nextBreakId = 1;
  private readonly log: RecordedEvent[] = [];
  private stopped?: Stop;
  private pending?: Promise<Stop>;
  private stopOnAnyEvent = false;
  private stepping = false;
  private startPaused = false;
  /** a monitor, debugger or API can resume a stopped VM (--on-fault stop pauses instead of ending) */
  interactive = false;
  /** pauseAtStart(): resolves once every vCPU is paused at the start (or the run ended) */
  firstStop: Promise<void> = Promise.resolve();
  private readonly stopListeners = new Set<(s: Stop) => void>();
  /** until(): one-shot event matchers that pause the VM like a breakpoint */
  private readonly waiters: Array<{ match: (e: MachineEvent) => boolean; resolve: (s: Stop) => void }> = [];
  private readonly endListeners = new Set<(r: MachineResult) => void>();
  private readonly startTime = performance.now();

  constructor(
    private readonly machine: Machine,
    symbols: SymbolTable,
    /** why single-step and debug registers cannot be used here (see `tsvmm caps`); absent = they can */
    private readonly noGuestDebug?: string,
    /** why data watchpoints cannot be used here (see `tsvmm caps`); absent = they can */
    private readonly noWatchpoints?: string,
  ) {
    this.symbols = symbols;
    const observer: MachineObserver = {
      exit: (vcpu, reason) => this.onExit(vcpu, reason),
      conversion: (e) => this.onConversion(e),
      debugExit: (vcpu, info) => this.onDebugExit(vcpu, info.pc, info.dr6),
      end: (r) => {
        for (const l of this.endListeners) l(r);
      },
      pauseInsteadOfEnding: (vcpu, why) => {
        if (!this.interactive || this.machine.ended) return false;
        if (!this.pending && !(this.machine.paused && this.stopped)) void this.pause("fault", vcpu, `${why} (the VM is paused instead of ending; continue re-runs the access)`);
        return true;
      },
    };
    machine.observer = observer;
  }

  // ---- subscriptions ----

  onStop(listener: (s: Stop) => void): () => void {
    this.stopListeners.add(listener);
    return () => this.stopListeners.delete(listener);
  }

  onEnd(listener: (r: MachineResult) => void): () => void {
    this.endListeners.add(listener);
    return () => this.endListeners.delete(listener);
  }

  get ended(): MachineResult | undefined {
    return this.machine.ended;
  }

  get paused(): boolean {
    // An exit already on its way when the VM stopped is still handled, and may end the VM then
    return !this.machine.ended && this.machine.paused && this.stopped !== undefined;
  }

  get ramSize(): bigint {
    return this.machine.memoryView.ramSize;
  }

  get cpus(): number {
    return this.machine.cpuCount;
  }

  /** Call before Machine.run(): every vCPU stops after its first instruction (single-step). */
  pauseAtStart(): void {
    this.firstStop = this.nextStop().then(() => undefined);
    if (this.noGuestDebug) {
      // No single-step: kick the vCPUs out as soon as they start (a few instructions in).
      setImmediate(() => void this.pause("start", 0, `started paused (kicked out just after the start: ${this.noGuestDebug})`));
      return;
    }
    this.startPaused = true;
    // Each vCPU runs one instruction; its debug exit stays unanswered (held) and the first one
    // stops the VM (onDebugExit).
    for (let i = 0; i < this.cpus; i++) this.machine.setGuestDebug(i, GuestDebug.ENABLE | GuestDebug.SINGLESTEP, []);
  }

  // ---- stopping ----

  /** Pause every vCPU (Ctrl-C, `pause`, gdb's interrupt). Resolves once all are parked. */
  pause(reason: StopReason = "interrupt", vcpu = 0, text = "paused on request", extra: Partial<Stop> = {}): Promise<Stop> {
    this.requireRunning();
    if (this.pending) return this.pending;
    this.pending = this.machine.pauseAll().then(() => {
      this.pending = undefined;
      const stop: Stop = { reason, vcpu, text, ...extra };
      this.stopped = stop;
      if (!this.machine.ended) for (const l of this.stopListeners) l(stop);
      return stop;
    });
    return this.pending;
  }

  /** Resolves at the next stop (or with undefined when the run ends first). */
  nextStop(): Promise<Stop | undefined> {
    return new Promise((resolve) => {
      if (this.machine.ended) return resolve(undefined);
      const offStop = this.onStop((s) => {
        offStop();
        offEnd();
        resolve(s);
      });
      const offEnd = this.onEnd(() => {
        offStop();
        offEnd();
        resolve(undefined);
      });
    });
  }

  /** Let every vCPU run again. */
  async resume(): Promise<void> {
    this.requirePaused();
    // A vCPU sitting on an instruction breakpoint would hit it again at once: step it over first.
    for (let i = 0; i < this.cpus; i++) {
      if (this.machine.vcpuState(i) === "halted") continue;
      const rip = this.registers(i).regs.rip;
      if (this.breakpoints.some((b) => b.addr === rip)) await this.stepOne(i, rip);
      if (this.machine.ended) return;
    }
    this.stopped = undefined;
    this.programDebug();
    this.machine.resumeAll();
  }

  /** Run to the next event of any kind (conversion, refusal, fault, or an exit TypeScript handles). */
  async next(): Promise<void> {
    this.stopOnAnyEvent = true;
    await this.resume();
  }

  /** Execute n guest instructions on one vCPU while the others stay paused. */
  async step(vcpu: number, n = 1): Promise<Stop> {
    this.requireGuestDebug("single-step");
    this.requirePaused();
    this.requireVcpu(vcpu);
    for (let i = 0; i < n && !this.machine.ended; i++) {
      // An instruction breakpoint at RIP would fire before the instruction runs: step over it.
      await this.stepOne(vcpu, this.registers(vcpu).regs.rip);
      if (this.machine.vcpuState(vcpu) === "halted") break;
    }
    const rip = this.machine.ended ? 0n : this.registers(vcpu).regs.rip;
    const stop: Stop = { reason: "step", vcpu, text: `stepped ${n} instruction${n === 1 ? "" : "s"} on vCPU ${vcpu}, now at ${this.symbols.describe(rip)}` };
    this.stopped = stop;
    return stop;
  }

  /** One instruction at rip, with every debug register but an instruction breakpoint at rip */
  private async stepOne(vcpu: number, rip: bigint): Promise<void> {
    this.stepping = true;
    try {
      this.machine.setGuestDebug(vcpu, GuestDebug.ENABLE | GuestDebug.SINGLESTEP | this.hwControl(), this.debugRegs(rip));
      await this.machine.runOne(vcpu);
    } finally {
      this.stepping = false;
      if (!this.machine.ended) this.programDebug(vcpu);
    }
  }

  // ---- what the machine reports ----

  private record(event: MachineEvent, text: string): void {
    this.log.push({ time: performance.now() - this.startTime, text, event });
    if (this.log.length > EVENT_LOG) this.log.shift();
    if (this.stepping || this.machine.ended) return;
    const waiter = this.waiters.findIndex((w) => w.match(event));
    if (waiter >= 0) {
      const [w] = this.waiters.splice(waiter, 1);
      if (!this.pending && !(this.machine.paused && this.stopped))
        void this.pause("event", event.vcpu < 0 ? 0 : event.vcpu, `until: ${text}`, { event }).then(w.resolve);
      else void (this.pending ?? Promise.resolve(this.stopped!)).then(() => w.resolve({ reason: "event", vcpu: Math.max(event.vcpu, 0), text: `until: ${text}`, event }));
      return;
    }
    const hit = this.breakpoints.find((b) => matches(b.spec, event));
    if (hit) hit.hits++;
    if (hit || this.stopOnAnyEvent) {
      this.stopOnAnyEvent = false;
      const why = hit ? `breakpoint ${hit.id} (${describeBreakSpec(hit.spec)}): ${text}` : `next event: ${text}`;
      if (!this.pending && !(this.machine.paused && this.stopped))
        void this.pause(hit ? "event" : "next", event.vcpu < 0 ? 0 : event.vcpu, why, { event, breakpoint: hit?.id });
    }
  }

  private onExit(vcpu: number, reason: number): void {
    if (reason === Exit.DEBUG) return;
    this.record({ kind: "exit", vcpu, reason }, `vCPU ${vcpu}: KVM_EXIT_${exitReasonName(reason)}`);
  }

  private onConversion(e: ConversionEvent): void {
    const outcome = e.result.startsWith("ok") ? "converted" : e.result.startsWith("race") ? "race" : e.result.includes("test slot") ? "repaired" : "refused";
    const event: MachineEvent = {
      kind: "conversion",
      vcpu: e.vcpu,
      source: e.source as ConversionSource,
      gpa: BigInt(e.gpa),
      size: BigInt(e.size),
      from: e.from,
      to: e.to,
      outcome,
      result: e.result,
      seq: e.seq,
    };
    const dir = e.to === "-" ? "" : ` ${e.from}→${e.to}`;
    const who = e.vcpu < 0 ? "host" : `vCPU ${e.vcpu}`;
    this.record(event, `conversion #${e.seq} ${who} ${e.source} ${e.gpa}+0x${e.size.toString(16)}${dir}: ${e.result}`);
  }

  private onDebugExit(vcpu: number, pc: bigint, dr6: bigint): void {
    if (this.stepping) return; // stepOne is waiting for exactly this
    if (this.startPaused) {
      this.startPaused = false;
      // Only this vCPU is parked for sure: another may still be inside KVM_RUN before its own first
      // step (its debug registers can only be written once parked). resume() programs them all.
      this.programDebug(vcpu);
      void this.pause("start", vcpu, `started paused at ${this.symbols.describe(pc)} (after the first instruction of vCPU ${vcpu})`);
      return;
    }
    // DR6 bits 0-3 say which debug register matched
    const slot = [0, 1, 2, 3].find((i) => dr6 & (1n << BigInt(i)));
    const hit = this.breakpoints.find((b) => b.slot !== undefined && b.slot === slot) ?? this.breakpoints.find((b) => b.addr === pc);
    if (hit) hit.hits++;
    const text = !hit
      ? `debug exception at ${this.symbols.describe(pc)}`
      : hit.watch
        ? `watchpoint ${hit.id} (${describeBreakSpec(hit.spec)}): ${this.describeWatch(hit.watch)} was ${hit.watch.access === "w" ? "written" : "accessed"} by the instruction before ${this.symbols.describe(pc)}`
        : `breakpoint ${hit.id} (${describeBreakSpec(hit.spec)}) at ${this.symbols.describe(pc)}`;
    if (this.pending || (this.machine.paused && this.stopped)) return; // already stopping: this vCPU stays held
    void this.pause("breakpoint", vcpu, `vCPU ${vcpu}: ${text}`, { breakpoint: hit?.id });
  }

  /** Resolves when an event matches (the VM is then paused at it), or undefined if the run ends
   *  first. Register before resume(); it does not resume by itself. */
  until(match: (e: MachineEvent) => boolean): Promise<Stop | undefined> {
    return new Promise((resolve) => {
      if (this.machine.ended) return resolve(undefined);
      const w = { match, resolve: (s: Stop) => resolve(s) };
      this.waiters.push(w);
      const off = this.onEnd(() => {
        off();
        const i = this.waiters.indexOf(w);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          resolve(undefined);
        }
      });
    });
  }

  // ---- breakpoints ----

  list(): readonly Breakpoint[] {
    return this.breakpoints;
  }

  /** Add a breakpoint; instruction breakpoints and watchpoints take a debug register (four in all). */
  addBreakpoint(spec: BreakSpec): Breakpoint {
    const b: Breakpoint = { id: this.nextBreakId, spec, hits: 0 };
    if (spec.kind === "addr" || spec.kind === "watch") {
      const what = describeBreakSpec(spec);
      if (spec.kind === "addr") b.addr = this.resolve(spec.target);
      else b.watch = this.resolveWatch(spec.target, spec.length, spec.access);
      this.requireGuestDebug(what, spec.kind === "watch" ? this.noWatchpoints : this.noGuestDebug);
      b.slot = Array.from({ length: HW_BREAKPOINTS }, (_, i) => i).find((i) => !this.breakpoints.some((x) => x.slot === i));
      if (b.slot === undefined)
        throw new ControlError(`${what}: all ${HW_BREAKPOINTS} debug registers are in use (instruction breakpoints and watchpoints share them); delete one first`);
    }
    this.nextBreakId++;
    this.breakpoints.push(b);
    if (b.slot !== undefined) this.programDebugIfStill();
    return b;
  }

  deleteBreakpoint(id: number): void {
    const i = this.breakpoints.findIndex((b) => b.id === id);
    if (i < 0) throw new ControlError(`no breakpoint ${id}`);
    const [b] = this.breakpoints.splice(i, 1);
    if (b.slot !== undefined) this.programDebugIfStill();
  }

  /** What a debug register can watch: 1, 2, 4 or 8 bytes at an address aligned to that length */
  resolveWatch(target: string, length: number | undefined, access: WatchAccess): Watch {
    const addr = this.resolve(target);
    const symbolSize = Number(this.symbols.lookup(target)?.size ?? 0);
    const len = length ?? ([1, 2, 4, 8].includes(symbolSize) ? symbolSize : 1);
    const where = `watch ${target}${length === undefined ? "" : `+${length}`}`;
    if (len !== 1 && len !== 2 && len !== 4 && len !== 8) throw new ControlError(`${where}: a debug register watches 1, 2, 4 or 8 bytes, not ${len}`);
    if (addr % BigInt(len) !== 0n)
      throw new ControlError(`${where}: 0x${addr.toString(16)} is not aligned to ${len} bytes (a debug register needs the address aligned to its length); watch a smaller aligned part`);
    return { addr, length: len, access };
  }

  describeWatch(w: Watch): string {
    return `${w.length} byte${w.length === 1 ? "" : "s"} at 0x${w.addr.toString(16)} (${this.symbols.describe(w.addr)})`;
  }

  /** A symbol name or a number (0x.. hex or decimal) */
  resolve(target: string): bigint {
    const sym = this.symbols.lookup(target);
    if (sym) return sym.addr;
    if (/^(0x[0-9a-f]+|\d+)$/i.test(target)) return BigInt(target);
    throw new ControlError(`${target}: no such symbol in the guest image${this.symbols.size ? "" : " (it has no symbol table)"}, and not an address`);
  }

  private hwControl(): number {
    return this.breakpoints.some((b) => b.slot !== undefined) ? GuestDebug.USE_HW_BP : 0;
  }

  private debugRegs(skipExecAt?: bigint): bigint[] {
    return debugRegisters(this.breakpoints, skipExecAt);
  }

  private programDebug(only?: number): void {
    const control = this.hwControl();
    for (let i = 0; i < this.cpus; i++) {
      if (only !== undefined && i !== only) continue;
      this.machine.setGuestDebug(i, control ? GuestDebug.ENABLE | control : 0, this.debugRegs());
    }
  }

  private programDebugIfStill(): void {
    // While running, the vCPUs pick the new set up when they next stop; the debug registers can
    // only be written to a parked vCPU.
    if (this.machine.paused || this.machine.ended === undefined) {
      try {
        this.programDebug();
      } catch {
        // running vCPUs: applied at the next resume()
      }
    }
  }

  // ---- inspection ----

  why(): string {
    if (this.machine.ended) return `the VM ended: ${this.machine.ended.reason} (status ${this.machine.ended.status})`;
    if (!this.stopped) return "the VM is running";
    return this.stopped.text;
  }

  get stop(): Stop | undefined {
    return this.stopped;
  }

  vcpus(): Array<{ index: number; state: string; rip?: string }> {
    return Array.from({ length: this.cpus }, (_, index) => {
      const state = this.machine.vcpuState(index);
      const rip = this.paused && state !== "running" && !this.machine.ended ? this.symbols.describe(this.registers(index).regs.rip) : undefined;
      return { index, state, rip };
    });
  }

  registers(vcpu: number): { regs: Regs; sregs: Sregs } {
    this.requirePaused();
    this.requireVcpu(vcpu);
    return this.machine.registers(vcpu);
  }

  setRegisters(vcpu: number, regs: Regs): void {
    this.requirePaused();
    this.requireVcpu(vcpu);
    this.machine.setRegisters(vcpu, regs);
  }

  /** The register dump of the failure reports, with RIP symbolised */
  formatRegisters(vcpu: number): string {
    const { regs, sregs } = this.registers(vcpu);
    return `${formatRegisters(vcpu, regs, sregs)}\n    rip is ${this.symbols.describe(regs.rip)}`;
  }

  events(n = 20): RecordedEvent[] {
    return this.log.slice(-n);
  }

  /** Page states as runs of equal state over a range (all RAM by default) */
  pages(range?: GpaRange): PageRun[] {
    const { map, ramSize } = this.machine.memoryView;
    const start = range?.start ?? 0n;
    const end = range?.end ?? ramSize;
    if (start % PAGE !== 0n) throw new ControlError(`0x${start.toString(16)} is not page-aligned`);
    if (end > ramSize || start >= end) throw new ControlError(`[0x${start.toString(16)}, 0x${end.toString(16)}) is not inside RAM (0 to 0x${ramSize.toString(16)})`);
    const pages = Number((end - start + PAGE - 1n) >> PAGE_SHIFT);
    if (!map) return [{ start, end, state: "shared", pages }];
    return map.runs(map.pageOf(start), pages).map((r) => ({
      start: BigInt(r.first) << PAGE_SHIFT,
      end: BigInt(r.first + r.count) << PAGE_SHIFT,
      state: r.state,
      pages: r.count,
    }));
  }

  /** Guest memory by GPA, shared pages only: a private page is reported, never mapped. */
  readPhysical(gpa: bigint, length: number): MemoryRead {
    const { shared, map, ramSize } = this.machine.memoryView;
    const bit = this.sharedBit();
    const page = bit && gpa & bit ? gpa & ~bit : gpa;
    if (page < 0n || page + BigInt(length) > ramSize) return { error: `not RAM (RAM is 0 to 0x${ramSize.toString(16)})`, at: gpa };
    if (map) {
      for (let p = page & ~(PAGE - 1n); p < page + BigInt(length); p += PAGE) {
        if (map.stateOf(p) === "private")
          return { error: `private page 0x${p.toString(16)}: the host cannot read private memory (it is never mapped to find out)`, at: p };
      }
    }
    return { data: Buffer.from(shared.subarray(Number(page), Number(page) + length)) };
  }

  writePhysical(gpa: bigint, data: Buffer): MemoryRead {
    const check = this.readPhysical(gpa, data.length);
    if ("error" in check) return check;
    const bit = this.sharedBit();
    const page = bit && gpa & bit ? gpa & ~bit : gpa;
    data.copy(this.machine.memoryView.shared, Number(page));
    return { data };
  }

  /** Translate a guest-virtual address through vCPU's page tables (paused only) */
  translate(vcpu: number, gva: bigint): { gpa: bigint } | { error: string } {
    const { sregs } = this.registers(vcpu);
    return translate(gva, sregs, (gpa) => {
      const r = this.readPhysical(gpa, 8);
      return "data" in r ? r.data.readBigUInt64LE(0) : undefined;
    });
  }

  /** Guest memory by virtual address, page by page (gdb's view) */
  readVirtual(vcpu: number, gva: bigint, length: number): MemoryRead {
    const parts: Buffer[] = [];
    for (let at = gva, left = length; left > 0; ) {
      const chunk = Math.min(left, Number(PAGE - (at & (PAGE - 1n))));
      const t = this.translate(vcpu, at);
      if ("error" in t) return { error: t.error, at };
      const r = this.readPhysical(t.gpa, chunk);
      if ("error" in r) return r;
      parts.push(r.data);
      at += BigInt(chunk);
      left -= chunk;
    }
    return { data: Buffer.concat(parts) };
  }

  writeVirtual(vcpu: number, gva: bigint, data: Buffer): MemoryRead {
    for (let off = 0; off < data.length; ) {
      const at = gva + BigInt(off);
      const chunk = Math.min(data.length - off, Number(PAGE - (at & (PAGE - 1n))));
      const t = this.translate(vcpu, at);
      if ("error" in t) return { error: t.error, at };
      const r = this.writePhysical(t.gpa, data.subarray(off, off + chunk));
      if ("error" in r) return r;
      off += chunk;
    }
    return { data };
  }

  private sharedBit(): bigint {
    return this.machine.sharedBit ? 1n << BigInt(this.machine.sharedBit) : 0n;
  }

  // ---- changes ----

  /** A host-initiated conversion (source monitor or api): 0 or the errno the engine answered */
  convert(range: GpaRange, to: "private" | "shared", source: "monitor" | "api"): Promise<number> {
    this.requireVcpu(0);
    return this.machine.convert(range.start, range.end - range.start, to, source);
  }

  /** Discard the private backing of pages (they read zero afterwards); resolves to bytes discarded */
  punch(range: GpaRange): Promise<bigint> {
    return this.machine.punch(range.start, range.end - range.start);
  }

  /** End the run now (monitor `quit`, gdb `kill`) */
  kill(status: number, reason: string): void {
    this.machine.finish(status, reason);
  }

  // ---- checks ----

  private requirePaused(): void {
    if (this.machine.ended) throw new ControlError(`the VM has ended (${this.machine.ended.reason})`);
    if (!this.paused) throw new ControlError("the VM is running: pause it first (`pause`, or Ctrl-C in gdb)");
  }

  /** The one check for what needs KVM_SET_GUEST_DEBUG (single-step, debug registers) */
  private requireGuestDebug(what: string, refusal = this.noGuestDebug): void {
    if (refusal) throw new ControlError(`${what} is refused: ${refusal} (see \`tsvmm caps\`); event breakpoints and pause work`);
  }

  private requireRunning(): void {
    if (this.machine.ended) throw new ControlError(`the VM has ended (${this.machine.ended.reason})`);
  }

  private requireVcpu(vcpu: number): void {
    if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu >= this.cpus) throw new ControlError(`no vCPU ${vcpu} (this VM has ${this.cpus}: 0 to ${this.cpus - 1})`);
  }
}
