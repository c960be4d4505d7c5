// The conversion engine: one path for every source (hypercall, port doorbell, memory-fault exit,
// API), requests validated against the page-state map, conversions serialised, every conversion
// and every memory-fault exit recorded as an event.
import type { MemoryBackend } from "./backend";
import { ConversionRequest, MAP_GPA_RANGE_ENCRYPTED, PAGE_SHIFT, PageState, PageStateMap, validateRequest } from "./pageState";
import { Errno, MEMORY_EXIT_FLAG_PRIVATE } from "../kvm/uapi";
import { hex } from "../format";
import type { TestSlot } from "./testSlot";

export type Source = "hypercall" | "doorbell" | "fault" | "cli";
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
}

export interface EngineOptions {
  map: PageStateMap;
  backend: MemoryBackend;
  /** RAM below this is always shared and never converted */
  sharedLimit: bigint;
  /** 0 or the shared-view bit of the aliased layout */
  sharedBit: number;
  /** The backend needs every vCPU out of KVM_RUN while it re-lays memslots */
  quiesce: <T>(work: () => T) => Promise<T>;
  emit: (event: ConversionEvent) => void;
  now: () => number;
  /** The exit scenarios' test slot, if the guest made one */
  testSlot: () => TestSlot | undefined;
}

export type FaultOutcome = { action: "retry" } | { action: "deny" | "stop"; reason: string };

const KNOWN_FAULT_FLAGS = MEMORY_EXIT_FLAG_PRIVATE;

export class ConversionEngine {
  private seq = 0;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly lastFault = new Map<number, { gpa: bigint; flags: bigint; repeats: number }>();
  private readonly counts = new Map<string, number>();
  private discarded = 0n;
  private busyNs = 0n;
  private faults = 0;
  private readonly aliasBit: bigint;

  constructor(private readonly o: EngineOptions) {
    this.aliasBit = o.sharedBit ? 1n << BigInt(o.sharedBit) : 0n;
  }

  /** Run conversions one at a time, in arrival order, so no request is lost or interleaved. */
  private serialize<T>(work: () => Promise<T>): Promise<T> {
    const next = this.chain.then(work, work);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** A guest (or API) request; resolves to the value for the guest: 0 or a positive errno. */
  request(source: Source, vcpu: number, r: ConversionRequest, policy: HypercallPolicy = "convert"): Promise<number> {
    return this.serialize(async () => {
      const start = process.hrtime.bigint();
      const base = { vcpu, source, gpa: hex(r.gpa), size: Number(r.pages << PAGE_SHIFT) };
      const to: PageState = r.attrs & MAP_GPA_RANGE_ENCRYPTED ? "private" : "shared";
      const v = validateRequest(this.o.map, r);
      if (!v.ok) {
        this.record({ ...base, from: "-", to, discard: 0, result: `EINVAL: ${v.reason}` }, start, `${source}-refused`);
        return Errno.EINVAL;
      }
      if (r.gpa < this.o.sharedLimit && to === "private") {
        const reason = `[${hex(r.gpa)}, ...) reaches into the always-shared RAM below ${hex(this.o.sharedLimit)} (firmware, page tables, stacks, guest image)`;
        this.record({ ...base, from: "shared", to, discard: 0, result: `EINVAL: ${reason}` }, start, `${source}-refused`);
        return Errno.EINVAL;
      }
      const from = this.stateOfRange(v.first, v.count);
      if (policy === "deny") {
        this.record({ ...base, from, to, discard: 0, result: "denied (--on-hypercall deny)" }, start, `${source}-denied`);
        return Errno.EINVAL;
      }
      const changes = this.o.map.set(v.first, v.count, to);
      const { discarded } = changes.length ? await this.o.quiesce(() => this.o.backend.apply(changes)) : { discarded: 0n };
      this.discarded += discarded;
      this.record({ ...base, from, to, discard: Number(discarded), result: changes.length ? "ok" : "ok (already " + to + ")" }, start, `${source}-to-${to}`);
      return 0;
    });
  }

  /**
   * A KVM_EXIT_MEMORY_FAULT. With the aliased layout, a touch of the view a page is not in is an
   * implicit conversion request. Without it (SW_PROTECTED, or plain memslots) KVM derives
   * private/shared itself: an exit that matches the current state is a race (re-run); anything
   * else is a configuration error, reported, never guessed at.
   */
  fault(vcpu: number, f: { flags: bigint; gpa: bigint; size: bigint }, errno: string, policy: FaultPolicy): Promise<FaultOutcome> {
    return this.serialize(async () => {
      const start = process.hrtime.bigint();
      this.faults++;
      const base = { vcpu, source: "fault" as const, gpa: hex(f.gpa), size: Number(f.size), flags: hex(f.flags) };
      const accessPrivate = (f.flags & MEMORY_EXIT_FLAG_PRIVATE) !== 0n;
      const stop = (result: string, action: "deny" | "stop" = "stop"): FaultOutcome => {
        this.record({ ...base, from: "-", to: "-", discard: 0, result }, start, "fault-stopped");
        return { action, reason: result };
      };
      if (f.flags & ~KNOWN_FAULT_FLAGS) return stop(`unknown KVM_EXIT_MEMORY_FAULT flags ${hex(f.flags & ~KNOWN_FAULT_FLAGS)}`);
      if (errno !== "EFAULT") return stop(`memory fault with ${errno} (a poisoned or unallocatable page, not a conversion)`);

      const last = this.lastFault.get(vcpu);
      const repeats = last && last.gpa === f.gpa && last.flags === f.flags ? last.repeats + 1 : 0;
      this.lastFault.set(vcpu, { gpa: f.gpa, flags: f.flags, repeats });
      if (repeats >= 3) return stop(`the same memory fault repeated ${repeats + 1} times without progress`);

      const slot = this.o.testSlot();
      if (slot?.contains(f.gpa)) {
        const what = `${accessPrivate ? "private" : "shared"} access to the test slot (${slot.stateText})`;
        if (policy !== "convert") return stop(`${what}; refused (--on-fault ${policy})`, policy);
        this.record({ ...base, from: "-", to: "-", discard: 0, result: `${what}: ${slot.repair()}` }, start, "fault-repaired");
        return { action: "retry" };
      }
      const page = this.aliasBit ? f.gpa & ~this.aliasBit : f.gpa;
      const inside = page >= this.o.sharedLimit && page < this.o.map.base + this.o.map.size;
      if (!this.aliasBit) {
        if (inside && this.o.map.stateOf(page) === (accessPrivate ? "private" : "shared")) {
          this.record({ ...base, from: this.o.map.stateOf(page), to: "-", discard: 0, result: "race: state already matches, re-run" }, start, "fault-race");
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
        this.record({ ...base, from: current, to: wanted, discard: 0, result: "race: already converted, re-run" }, start, "fault-race");
        return { action: "retry" };
      }
      if (policy !== "convert") return stop(`implicit conversion ${current}→${wanted} refused (--on-fault ${policy})`, policy);
      const first = this.o.map.pageOf(page);
      const changes = this.o.map.set(first, 1, wanted);
      const { discarded } = await this.o.quiesce(() => this.o.backend.apply(changes));
      this.discarded += discarded;
      this.record({ ...base, from: current, to: wanted, discard: Number(discarded), result: "ok" }, start, `fault-to-${wanted}`);
      return { action: "retry" };
    });
  }

  /** Run other work on guest memory in the same order as conversions (host requests). */
  hostOperation<T>(work: () => T): Promise<T> {
    return this.serialize(async () => work());
  }

  private stateOfRange(first: number, count: number): PageState | "mixed" {
    const runs = this.o.map.runs(first, count);
    return runs.length === 1 ? runs[0].state : "mixed";
  }

  private record(e: Omit<ConversionEvent, "seq" | "time" | "ns">, start: bigint, key: string): void {
    const ns = process.hrtime.bigint() - start;
    this.busyNs += ns;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    this.o.emit({ seq: this.seq++, time: +this.o.now().toFixed(3), ...e, ns: Number(ns) });
  }

  /** Counts by source and outcome, e.g. {"hypercall-to-private": 3, "fault-race": 1} */
  get tally(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }

  summary(): string[] {
    const map = this.o.map;
    const used = this.o.backend.populated();
    const kib = (b: bigint | undefined) => (b === undefined ? "unknown (guest_memfd without MMAP has no host view)" : `${b >> 10n} KiB`);
    const tally = [...this.counts].map(([k, n]) => `${k} ${n}`).join(", ") || "none";
    return [
      `conversions: ${tally}`,
      `pages now: ${map.privatePages} private, ${map.sharedPages} shared (${map.pages} in all); memory-fault exits: ${this.faults}`,
      `discarded ${Number(this.discarded >> 10n)} KiB; ${(Number(this.busyNs) / 1e6).toFixed(3)} ms spent converting`,
      `in use now: private ${kib(used.private)}, shared ${kib(used.shared)} (pages touched, from mincore)`,
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
