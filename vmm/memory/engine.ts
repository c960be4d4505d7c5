// The conversion engine: one path for every source (hypercall, port doorbell, memory-fault exit,
// API), requests validated against the page-state map, every conversion and every memory-fault
// exit recorded as an event. Everything here is synchronous (the memslots quiesce too: native
// pauses), so conversions on the main thread never interleave; the vCPU threads' conversions
// (attributes) are serialised with them by the map's lock.
import type { DiscardPolicy, MemoryBackend } from "./backend";
import { ConversionRequest, MAP_GPA_RANGE_ENCRYPTED, PAGE_SHIFT, PageState, PageStateMap, Run } from "./pageState";
import { Errno, MEMORY_EXIT_FLAG_PRIVATE } from "../kvm/uapi";
import { hex } from "../format";
import type { TestSlot } from "./testSlot";
import { ConversionCounters, Source } from "./counters";
import { answerRequest, checkRequest, Converted, Converter, convertLocked, outcomeKeys } from "./convertNow";

export type { Source };
export type FaultPolicy = "convert" | "deny" | "stop";
export type HypercallPolicy = "convert" | "deny";

export interface ConversionEvent {
  seq: number;
  /** ms since the VM started */
  time: number;
  vcpu: number;
  source: Source;
  gpa: string;
  size: number;
  from: PageState | "mixed" | "-";
  to: PageState | "-";
  /** bytes discarded from the side the pages left */
  discard: number;
  result: string;
  /** time spent, ns */
  ns: number;
  /** KVM_EXIT_MEMORY_FAULT flags (memory-fault events only) */
  flags?: string;
  /** page states of the range before and after, where the pages were looked at (the trace's views) */
  before?: Run[];
  after?: Run[];
}

export interface EngineOptions {
  map: PageStateMap;
  backend: MemoryBackend;
  /** RAM below this is always shared and never converted */
  sharedLimit: bigint;
  /** 0 or the shared-view bit of the aliased layout */
  sharedBit: number;
  /** Run `work` with every vCPU out of KVM_RUN (the memslots backend re-lays its slots in it) */
  quiesce: <T>(work: () => T) => T;
  emit: (event: ConversionEvent) => void;
  /** Whether anyone consumes events now (a run log, a trace, a debugger): without one the engine
   *  builds none, and a conversion costs no string formatting and no per-request objects. */
  listening?: () => boolean;
  /** ms since the VM started */
  now: () => number;
  /** The tally, shared with the vCPU threads that convert (row 0 is the engine's); default: the engine's own */
  counters?: ConversionCounters;
  /** The exit scenarios' test slot, if the guest made one */
  testSlot: () => TestSlot | undefined;
  /** What the backend does with the side a page left (it acts on it; the engine reports it) */
  discard: DiscardPolicy;
  /** --prefault: map [gpa, gpa + size) in KVM's page tables through this vCPU (paused in the
   *  exit that asked); throws what KVM said */
  preFault?: (vcpu: number, gpa: bigint, size: bigint) => void;
}

export type FaultOutcome = { action: "retry" } | { action: "deny" | "stop"; reason: string };

const KNOWN_FAULT_FLAGS = MEMORY_EXIT_FLAG_PRIVATE;

export class ConversionEngine {
  private seq = 0;
  /** Per vCPU, its last memory fault and how many conversions had been done by then (a fault
   *  that recurs after a conversion is progress, not a repeat) */
  private readonly lastFault = new Map<number, { gpa: bigint; flags: bigint; repeats: number; conversions: number }>();
  /** The tally of every thread that converts */
  readonly counters: ConversionCounters;
  /** The engine's own conversions (its row of the tally) */
  private readonly converter: Converter;
  /** pages mapped by --prefault */
  private prefaulted = 0n;
  /** seq and duration of the outcome counted last (for its event) */
  private lastSeq = 0;
  private lastNs = 0;
  private faults = 0;
  private readonly aliasBit: bigint;

  constructor(private readonly o: EngineOptions) {
    this.aliasBit = o.sharedBit ? 1n << BigInt(o.sharedBit) : 0n;
    this.counters = o.counters ?? new ConversionCounters(1);
    const backend = o.backend;
    // memslots: no vCPU thread converts there, so the map's lock is never contended across the quiesce
    const apply = backend.needsQuiesce ? (changes: Run[]) => o.quiesce(() => backend.apply(changes)) : (changes: Run[]) => backend.apply(changes);
    this.converter = { map: o.map, sharedLimitNumber: Number(o.sharedLimit), apply, counters: this.counters.row(0) };
  }

  /** A guest (or API) request; returns the value for the guest: 0 or a positive errno. Throws
   *  what an ioctl failure threw (the map is then as it was). */
  request(source: Source, vcpu: number, r: ConversionRequest, policy: HypercallPolicy = "convert"): number {
    if (this.quiet(source, policy)) return answerRequest(this.converter, source, Number(r.gpa), Number(r.pages), Number(r.attrs));
    const start = performance.now();
    const to: PageState = r.attrs & MAP_GPA_RANGE_ENCRYPTED ? "private" : "shared";
    const keys = outcomeKeys(source);
    const event = (from: ConversionEvent["from"], result: string, before?: Run[], after?: Run[], discard = 0): ConversionEvent => ({
      seq: 0, time: 0, vcpu, source, gpa: hex(r.gpa), size: Number(r.pages << PAGE_SHIFT), from, to, discard, result, ns: 0, before, after,
    });
    const v = checkRequest(this.o.map, this.o.sharedLimit, r);
    if (!v.ok) {
      if (this.counted(start, keys.refused)) this.emit(event("alwaysShared" in v ? "shared" : "-", `EINVAL: ${v.reason}`));
      return Errno.EINVAL;
    }
    // The page states before, for the event: looked at only when someone listens.
    const before = this.listening() ? this.o.map.runs(v.first, v.count) : undefined;
    const from = before ? (before.length === 1 ? before[0].state : "mixed") : "-";
    if (policy === "deny") {
      if (this.counted(start, keys.denied)) this.emit(event(from, "denied (--on-hypercall deny)", before, before));
      return Errno.EINVAL;
    }
    const done = convertLocked(this.converter, v.first, v.count, to);
    if (done.refused !== undefined) {
      // KVM_HC_MAP_GPA_RANGE has one refusal: the SNP and TDX paths accept only 0, EINVAL and
      // EAGAIN, and EAGAIN would make the guest retry a request that cannot succeed.
      if (this.counted(start, keys.refused)) this.emit(event(from, `ENOSPC, EINVAL to the guest: ${done.refused}`, before, before));
      return Errno.EINVAL;
    }
    const prefault = to === "private" && (source === "hypercall" || source === "doorbell") ? this.preFault(vcpu, r) : "";
    if (this.counted(start, keys[to]))
      this.emit(event(from, this.outcome(done, to) + prefault, before, [{ first: v.first, count: v.count, state: to }], done.discarded));
    return 0;
  }

  /**
   * A KVM_EXIT_MEMORY_FAULT. With the aliased layout, a touch of the view a page is not in is an
   * implicit conversion request. Without it (SW_PROTECTED, or plain memslots) KVM derives
   * private/shared itself: an exit that matches the current state is a race (re-run); anything
   * else is a configuration error, reported, never guessed at.
   */
  fault(vcpu: number, f: { flags: bigint; gpa: bigint; size: bigint }, errno: string, policy: FaultPolicy): FaultOutcome {
    const start = performance.now();
    this.faults++;
    const event = (from: ConversionEvent["from"], to: ConversionEvent["to"], result: string, discard = 0, before?: Run[], after?: Run[]): ConversionEvent => ({
      seq: 0, time: 0, vcpu, source: "fault", gpa: hex(f.gpa), size: Number(f.size), from, to, discard, result, ns: 0, flags: hex(f.flags), before, after,
    });
    const accessPrivate = (f.flags & MEMORY_EXIT_FLAG_PRIVATE) !== 0n;
    const stop = (result: string, action: "deny" | "stop" = "stop"): FaultOutcome => {
      if (this.counted(start, "fault-stopped")) this.emit(event("-", "-", result));
      return { action, reason: result };
    };
    if (f.flags & ~KNOWN_FAULT_FLAGS) return stop(`unknown KVM_EXIT_MEMORY_FAULT flags ${hex(f.flags & ~KNOWN_FAULT_FLAGS)}`);
    if (errno !== "EFAULT") return stop(`memory fault with ${errno} (a poisoned or unallocatable page, not a conversion)`);

    let last = this.lastFault.get(vcpu);
    if (!last) this.lastFault.set(vcpu, (last = { gpa: -1n, flags: 0n, repeats: 0, conversions: -1 }));
    const conversions = this.counters.conversions;
    const again = last.gpa === f.gpa && last.flags === f.flags && last.conversions === conversions;
    const repeats = again ? last.repeats + 1 : 0;
    last.gpa = f.gpa;
    last.flags = f.flags;
    last.repeats = repeats;
    last.conversions = conversions;
    if (repeats >= 3) return stop(`the same memory fault repeated ${repeats + 1} times with no conversion in between`);

    const slot = this.o.testSlot();
    if (slot?.contains(f.gpa)) {
      const what = `${accessPrivate ? "private" : "shared"} access to the test slot (${slot.stateText})`;
      if (policy !== "convert") return stop(`${what}; refused (--on-fault ${policy})`, policy);
      const repaired = slot.repair();
      if (this.counted(start, "fault-repaired")) this.emit(event("-", "-", `${what}: ${repaired}`));
      return { action: "retry" };
    }
    const page = this.aliasBit ? f.gpa & ~this.aliasBit : f.gpa;
    const inside = page >= this.o.sharedLimit && page < this.o.map.base + this.o.map.size;
    if (!this.aliasBit) {
      if (inside && this.o.map.stateOf(page) === (accessPrivate ? "private" : "shared")) {
        if (this.counted(start, "fault-race")) this.emit(event(this.o.map.stateOf(page), "-", "race: state already matches, re-run"));
        return { action: "retry" };
      }
      return stop(
        `${accessPrivate ? "private" : "shared"} access with no backing KVM can use (released guest_memfd, missing or non-guest_memfd memslot); not a conversion request on this layout`,
      );
    }
    if (!inside) return stop(`${hex(f.gpa)} is not convertible RAM`);
    const wanted: PageState = f.gpa & this.aliasBit ? "shared" : "private";
    const current = this.o.map.stateOf(page);
    if (current === wanted) {
      if (this.counted(start, "fault-race")) this.emit(event(current, wanted, "race: already converted, re-run"));
      return { action: "retry" };
    }
    if (policy !== "convert") return stop(`implicit conversion ${current}→${wanted} refused (--on-fault ${policy})`, policy);
    const first = this.o.map.pageOf(page);
    const done = convertLocked(this.converter, first, 1, wanted);
    if (done.refused !== undefined) return stop(`implicit conversion ${current}→${wanted} impossible: ${done.refused}`);
    if (this.counted(start, outcomeKeys("fault")[wanted]))
      this.emit(event(current, wanted, this.outcome(done, wanted), done.discarded, [{ first, count: 1, state: current }], [{ first, count: 1, state: wanted }]));
    return { action: "retry" };
  }

  /** Whether a request from `source` needs no event and no policy beyond converting: the engine
   *  then answers it in one step (answerRequest) */
  private quiet(source: Source, policy: HypercallPolicy): boolean {
    return policy === "convert" && !this.listening() && !(this.o.preFault && (source === "hypercall" || source === "doorbell"));
  }

  /** Whether the vCPU threads may answer a guest's request themselves: quietly, and on a backend
   *  that needs no quiesce (memslots re-lays its slots on the main thread) */
  answersQuietly(source: Source, policy: HypercallPolicy): boolean {
    return !this.o.backend.needsQuiesce && this.quiet(source, policy);
  }

  /** After a guest's conversion to private, as QEMU does after KVM_HC_MAP_GPA_RANGE: a failure
   *  changes nothing for the guest (its first touch faults the page in as without it), so it is
   *  counted and reported, not fatal. */
  private preFault(vcpu: number, r: ConversionRequest): string {
    if (!this.o.preFault) return "";
    try {
      this.o.preFault(vcpu, r.gpa, r.pages << PAGE_SHIFT);
      this.prefaulted += r.pages;
      return ", pre-faulted";
    } catch (err) {
      this.converter.counters.count("prefault-failed", 0);
      return `; pre-fault failed: ${(err as Error).message}`;
    }
  }

  private outcome(done: Extract<Converted, { changed: number }>, to: PageState): string {
    if (!done.changed) return `ok (already ${to})`;
    return this.o.discard === "never" ? `ok, kept the ${to === "private" ? "shared" : "private"} copy (--discard never)` : "ok";
  }

  /** Run other work on guest memory (host requests, punches) never during a conversion on a vCPU thread. */
  hostOperation<T>(work: () => T): T {
    return this.o.map.locked(work);
  }

  private listening(): boolean {
    return this.o.listening?.() ?? true;
  }

  /** Count one outcome (since `start`); true when someone listens, and the caller then builds
   *  the event (and its strings) for emit(). */
  private counted(start: number, key: string): boolean {
    const ns = (performance.now() - start) * 1e6;
    this.lastNs = Math.round(ns);
    this.lastSeq = this.seq++;
    this.converter.counters.count(key, ns);
    return this.listening();
  }

  /** Stamp the event of the outcome just counted and hand it on */
  private emit(e: ConversionEvent): void {
    e.seq = this.lastSeq;
    e.time = Math.round(this.o.now() * 1000) / 1000;
    e.ns = this.lastNs;
    this.o.emit(e);
  }

  /** Counts by source and outcome, e.g. {"hypercall-to-private": 3, "fault-race": 1} */
  get tally(): Record<string, number> {
    return this.counters.tally();
  }

  summary(): string[] {
    const map = this.o.map;
    const used = this.o.backend.populated();
    const kib = (b: bigint | undefined) => (b === undefined ? "unknown (guest_memfd without MMAP has no host view)" : `${b >> 10n} KiB`);
    const tally = Object.entries(this.tally).map(([k, n]) => `${k} ${n}`).join(", ") || "none";
    const discard =
      this.o.discard === "always" ? `--discard always: discarded ${this.counters.discardedBytes / 1024} KiB` : "--discard never: both copies of every page kept";
    const onThreads = this.counters.onVcpuThreads;
    const untimed = this.counters.outcomes - this.counters.timed;
    const usage = this.o.backend.usage?.();
    return [
      `conversions: ${tally}`,
      `pages now: ${map.privatePages} private, ${map.sharedPages} shared (${map.pages} in all); memory-fault exits: ${this.faults}`,
      `${discard}; ${this.counters.busyMs.toFixed(3)} ms spent converting${untimed ? ` (in the ${this.counters.timed} timed outcomes; ${untimed} answered with nobody listening are not timed)` : ""}${this.o.preFault ? ` (with --prefault: ${this.prefaulted << 2n} KiB pre-faulted)` : ""}${onThreads ? `, ${onThreads} conversions answered on vCPU threads` : ""}`,
      `in use now: private ${kib(used.private)}, shared ${kib(used.shared)} (pages touched, from mincore)`,
      ...(usage ? [usage] : []),
    ];
  }
}

/** One readable line per event for the run log */
export function formatEvent(e: ConversionEvent): string {
  const dir = e.from === "-" && e.to === "-" ? "" : ` ${e.from}→${e.to}`;
  const flags = e.flags ? ` flags ${e.flags}` : "";
  const discard = e.discard ? ` discard ${e.discard >> 10} KiB` : "";
  return `#${e.seq} ${e.time.toFixed(3)} ms vCPU ${e.vcpu} ${e.source} ${e.gpa}+0x${e.size.toString(16)}${flags}${dir}${discard}: ${e.result} (${(e.ns / 1000).toFixed(1)} µs)`;
}
