// The TypeScript API for experiments: boot a guest paused, wait for events, look, change, go on.
// Everything goes through the same control core as the monitor and the GDB stub.
//
//   const vm = await Vm.boot({ guest: "convert" });
//   const e = await vm.until("conversion", (e) => e.to === "private");   // runs, then pauses there
//   console.log(vm.pages({ start: e.gpa, end: e.gpa + e.size }), vm.registers(e.vcpu).regs.rip);
//   const result = await vm.finish();                                    // resume and await the exit
import { runGuest, GuestRun, RunOptions } from "./run";
import type { DebuggerSession } from "./control/session";
import type { Control, PageRun, Stop } from "./control/control";
import { GpaRange, MachineEvent, matches, parseBreakSpec } from "./control/breakSpec";
import type { Regs, Sregs } from "./kvm/structs";

export type { GuestRun, RunOptions, Stop, PageRun, GpaRange, MachineEvent, Regs, Sregs };
export type ConversionEvent = Extract<MachineEvent, { kind: "conversion" }>;
export type ExitEvent = Extract<MachineEvent, { kind: "exit" }>;

/** The events until() waits for, as in `--break`: conversion (done), fault (every exit 39),
 *  refused (answered with an error), exit (a KVM exit TypeScript handles) */
export interface EventKinds {
  conversion: ConversionEvent;
  fault: ConversionEvent;
  refused: ConversionEvent;
  exit: ExitEvent;
}

export class Vm {
  private constructor(
    private readonly session: DebuggerSession,
    /** The run's result, once the VM has ended */
    readonly exited: Promise<GuestRun>,
  ) {}

  /** Boot a guest, paused after its first instruction. Rejects on bad options or a host problem. */
  static boot(opts: Omit<RunOptions, "debug">): Promise<Vm> {
    return new Promise((resolve, reject) => {
      let started = false;
      // onSession runs inside runGuest, before `exited` has its value: wait for the first stop.
      const exited: Promise<GuestRun> = runGuest({
        ...opts,
        debug: {
          startPaused: true,
          onSession: (session) =>
            void session.control.firstStop.then(() => {
              started = true;
              resolve(new Vm(session, exited));
            }, reject),
        },
      });
      exited.catch((err) => {
        if (!started) reject(err);
      });
    });
  }

  private get control(): Control {
    return this.session.control;
  }

  /** Run (if paused) until an event of this kind matches, and pause there. Resolves with the event,
   *  or undefined if the VM ends first. */
  async until<K extends keyof EventKinds>(kind: K, filter: (e: EventKinds[K]) => boolean = () => true): Promise<EventKinds[K] | undefined> {
    const spec = kind === "exit" ? undefined : parseBreakSpec(kind, "until");
    const stopped = this.control.until((e) => (spec ? matches(spec, e) : e.kind === "exit") && filter(e as EventKinds[K]));
    if (this.control.paused) await this.control.resume();
    const stop = await stopped;
    return stop?.event as EventKinds[K] | undefined;
  }

  /** Add a breakpoint in `--break` syntax (also `addr=SYMBOL` and `watch=SYMBOL[+LEN][,access=w|rw]`,
   *  which share the four debug registers); resume() then stops at it (see stopped()). */
  break(spec: string): number {
    return this.control.addBreakpoint(parseBreakSpec(spec, "break")).id;
  }

  /** Resolves at the next stop, or undefined when the VM ends first */
  stopped(): Promise<Stop | undefined> {
    return this.control.nextStop();
  }

  pause(): Promise<Stop> {
    return this.control.pause("interrupt", 0, "paused from the API");
  }

  resume(): Promise<void> {
    return this.control.resume();
  }

  step(vcpu = 0, n = 1): Promise<Stop> {
    return this.control.step(vcpu, n);
  }

  /** Why the VM is stopped (the same text as the monitor's `why`) */
  why(): string {
    return this.control.why();
  }

  registers(vcpu = 0): { regs: Regs; sregs: Sregs } {
    return this.control.registers(vcpu);
  }

  /** "tsvmm_main+0x3d (guest/guests/convert.c:42)"; without line information "tsvmm_main+0x3d" */
  symbolize(addr: bigint): string {
    return this.control.symbols.describe(addr);
  }

  pages(range?: GpaRange): PageRun[] {
    return this.control.pages(range);
  }

  /** Shared guest memory by GPA; throws for private pages (the host never maps them) */
  read(gpa: bigint, length: number): Buffer {
    const r = this.control.readPhysical(gpa, length);
    if ("error" in r) throw new Error(`0x${r.at.toString(16)}: ${r.error}`);
    return r.data;
  }

  /** A host-initiated conversion (source "api"); resolves to 0 or the errno the engine answered */
  convert(range: GpaRange, to: "private" | "shared"): Promise<number> {
    return this.control.convert(range, to, "api");
  }

  /** Discard private backing; resolves to the bytes discarded */
  punch(range: GpaRange): Promise<bigint> {
    return this.control.punch(range);
  }

  /** Run a monitor command line and get its output */
  monitor(line: string): Promise<string> {
    return this.session.commands.execute(line);
  }

  /** Let the VM run to its end (dropping breakpoints and waits) and return the result */
  async finish(): Promise<GuestRun> {
    for (const b of [...this.control.list()]) this.control.deleteBreakpoint(b.id);
    if (this.control.paused) await this.control.resume();
    return this.exited;
  }

  /** End the VM now */
  kill(): Promise<GuestRun> {
    this.control.kill(130, "ended from the API (kill)");
    return this.exited;
  }
}
