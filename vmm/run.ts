// The programmatic way to boot a guest: the CLI's `run` and the tests both come through here.
import type { ConversionEvent } from "./memory/engine";
import type { UnclaimedAccesses } from "./devices/bus";
import * as path from "node:path";
import { Machine, MachineResult, TsvmmBoot } from "./machine/machine";
export type { StopRequest } from "./machine/machine";
import { loadFirmware, readGuest, readImageFile } from "./guests";
import type { ConsoleScreen } from "./console/screen";
import { ExitStatus, UsageError } from "./errors";
import { computeLayout, computePcLayout, Layout } from "./machine/layout";
import { parseElf } from "./machine/elf";
import { findMultibootHeader } from "./boot/multiboot";
import { linuxGuest, multibootGuest, PcGuest } from "./boot/pcGuest";
import { xsaveConsistent } from "./arch/x86/xsave";
import { decodeCpuid } from "./kvm/structs";
import { openTrace, TraceSink } from "./trace/writer";
import { KernelTracing, startKernelEvents } from "./trace/kernel";
import { PrivateRequest, resolvePcMemory, resolvePrivateMemory } from "./memory/policy";
import { assessHost, openKvm, probeHost, Verdict } from "./host/caps";
import type { DebuggerOptions, DebuggerSession } from "./control/session";

export type ConsoleMode = "raw" | "screen" | "capture";

export interface RunOptions {
  /** A shipped guest name or a path: a tsvmm test guest (ELF64) or a multiboot kernel */
  guest?: string;
  /** A Linux bzImage (instead of `guest`) */
  kernel?: string;
  /** Linux: the initramfs. Multiboot: modules, comma-separated, each "FILE[ ARGS]" */
  initrd?: string;
  memSize?: bigint;
  cpus?: number;
  /** Seconds; 0 or undefined = no limit */
  timeout?: number;
  cmdline?: string;
  /** raw: stream bytes to `output`; screen: render through xterm and print the final screen; capture: only collect */
  console?: ConsoleMode;
  output?: { write(bytes: Uint8Array): unknown };
  /** Run-log lines (stderr in the CLI) */
  log?: (line: string) => void;
  /** NDJSON event trace file; "-" = stdout (docs/trace.md) */
  trace?: string;
  /** Every conversion-engine event as it happens (vmm/memory/engine.ts ConversionEvent) */
  onConversion?: (e: ConversionEvent) => void;
  /** KVM's trace events to record through tracefs and merge into the trace (docs/trace.md) */
  kernelEvents?: string[];
  /** Stops the VM: abort it with a StopRequest as the reason (any other reason counts as SIGINT) */
  signal?: AbortSignal;
  device?: string;
  /** Called once the VM is running with a function that feeds bytes to the guest's COM1 */
  onInput?: (send: (bytes: Uint8Array) => void) => void;
  /** Private memory and conversions (the guest's default when absent) */
  privateMemory?: PrivateRequest;
  /** Called with the machine once it is created (API conversions, inspection) */
  onMachine?: (machine: Machine) => void;
  /** Event breakpoints, the monitor and the GDB stub (vmm/control) */
  debug?: DebuggerOptions;
  /** What the host can do (assessHost of the device), when the caller already knows: a process
   *  that boots many guests probes once instead of per guest */
  verdict?: Verdict;
}

export interface GuestRun extends MachineResult {
  /** Everything the guest printed (UTF-8, at most the last 1 MiB) */
  console: string;
  /** The final screen (console: "screen" only) */
  screen?: string;
  lastLine: string;
}

const CAPTURE_LIMIT = 1 << 20;

export const DEFAULT_MEM = 64n << 20n;
/** Linux needs room for its decompressed image (init_size) and an initramfs */
export const DEFAULT_LINUX_MEM = 512n << 20n;

/** What boots, and the layout it needs: tsvmm's firmware and test guest, or a PC guest. */
function resolveBoot(opts: RunOptions): { layout: Layout; boot: TsvmmBoot | PcGuest } {
  const cmdline = opts.cmdline ?? "";
  const cpus = opts.cpus ?? 1;
  if (opts.kernel !== undefined) {
    if (opts.guest !== undefined) throw new UsageError(`give a guest or --kernel, not both (${opts.guest}, --kernel ${opts.kernel})`);
    const layout = computePcLayout(opts.memSize ?? DEFAULT_LINUX_MEM, cpus);
    const initrd = opts.initrd === undefined ? undefined : { name: opts.initrd, data: readImageFile(opts.initrd) };
    return { layout, boot: linuxGuest(opts.kernel, readImageFile(opts.kernel), layout, cmdline, initrd) };
  }
  if (opts.guest === undefined) throw new UsageError("nothing to boot: name a guest (see `tsvmm guests`) or a file, or give --kernel bzImage");
  const { label, bytes } = readGuest(opts.guest);
  if (findMultibootHeader(bytes) !== undefined) {
    const layout = computePcLayout(opts.memSize ?? DEFAULT_MEM, cpus);
    // As QEMU and GRUB do: the kernel's command line starts with its own name (kvm-unit-tests reads argv[0] there).
    const modules = (opts.initrd ?? "").split(",").filter((m) => m.trim()).map((m) => {
      const file = m.trim().split(/\s+/)[0];
      return { data: readImageFile(file), cmdline: m.trim() };
    });
    return { layout, boot: multibootGuest(label, bytes, layout, [path.basename(label), cmdline].join(" ").trim(), modules) };
  }
  if (opts.initrd !== undefined) throw new UsageError("--initrd is for Linux (--kernel) and multiboot guests");
  const firmware = loadFirmware();
  const guest = parseElf(label, bytes);
  return { layout: computeLayout(opts.memSize ?? DEFAULT_MEM, cpus, firmware, guest), boot: { kind: "tsvmm", firmware, guest } };
}

export async function runGuest(opts: RunOptions): Promise<GuestRun> {
  // Resolved once, top down: the layout, the host's answers, what the machine is made of.
  const { layout, boot } = resolveBoot(opts);
  const device = opts.device ?? "/dev/kvm";
  const kvm = openKvm(device);
  let machine: Machine | undefined;
  let screen: ConsoleScreen | undefined;
  let trace: TraceSink | undefined;
  let kernel: KernelTracing | undefined;
  let traceFailure: string | undefined;
  let debug: DebuggerSession | undefined;
  try {
    const verdict = opts.verdict ?? assessHost(probeHost(device, kvm));
    let hideXsave = false;
    if (boot.kind !== "tsvmm") {
      const xsave = await xsaveConsistent(kvm, decodeCpuid(kvm.supportedCpuid()));
      hideXsave = !xsave.ok;
      if (xsave.inconclusive) opts.log?.(xsave.detail);
      if (hideXsave) opts.log?.(`XSAVE hidden from the guest: this KVM does not keep CPUID leaf 0xD consistent with XCR0 (${xsave.detail})`);
    }
    const privateMemory = boot.kind === "tsvmm" ? resolvePrivateMemory(opts.privateMemory ?? {}, boot.guest, layout, verdict) : resolvePcMemory(opts.privateMemory ?? {}, layout, verdict);
    const mode = opts.console ?? "capture";
    // xterm costs ~10 ms to load: only the screen mode pays for it.
    if (mode === "screen") screen = new (await import("./console/screen")).ConsoleScreen();
    const chunks: Buffer[] = [];
    let captured = 0;
    const m = new Machine({
      kvm,
      boot,
      layout,
      ram: { backing: verdict.ramBacking, region2: verdict.memoryRegion2 },
      amd: verdict.amd,
      hideXsave,
      privateMemory,
      cmdline: opts.cmdline ?? "",
      log: opts.log,
      onConversion: opts.onConversion,
      trace: opts.trace === undefined ? undefined : (event) => trace?.write(event),
      onConsole: (bytes) => {
        const copy = Buffer.from(bytes);
        chunks.push(copy);
        captured += copy.length;
        while (captured > CAPTURE_LIMIT && chunks.length > 1) captured -= chunks.shift()!.length;
        if (mode === "raw") opts.output?.write(copy);
        screen?.write(copy);
      },
    });
    machine = m;
    // Opened after every check (the machine's constructor is the last), so a refused run leaves
    // an existing trace file alone.
    if (opts.trace !== undefined)
      trace = openTrace(opts.trace, (problem) => {
        traceFailure = problem;
        // Later, not inside the trace call: the machine may be in the middle of starting or finishing.
        queueMicrotask(() => m.finish(ExitStatus.OUTPUT_FAILED, `${problem}; the VM was stopped`));
      });
    m.create();
    opts.onMachine?.(m);
    // The debugger (readline, net and the rest) loads only for a run that has one.
    if (opts.debug) debug = await (await import("./control/session")).startDebugger(m, boot.kind === "tsvmm" ? [boot.guest, boot.firmware] : [{ name: boot.name, symbols: [] }], { ...opts.debug, guestDebug: verdict.debugging.guestDebug ? undefined : verdict.debugging.refusal, watchpoints: verdict.debugging.watchRefusal }, (line) => opts.log?.(line));
    opts.onInput?.((bytes) => m.serial.receive(bytes));
    if (opts.kernelEvents && trace) kernel = startKernelEvents(opts.kernelEvents);
    const result = await m.run(opts.timeout, opts.signal);
    if (kernel) {
      const events = kernel.stop(trace!.startNs!);
      kernel = undefined;
      trace!.append(events);
      opts.log?.(`kernel events: ${events.length} recorded (${opts.kernelEvents!.join(", ")})`);
    }
    if (traceFailure && result.status !== ExitStatus.OUTPUT_FAILED) opts.log?.(`${traceFailure}: the trace is incomplete`);
    const touched = (what: string, unclaimed: UnclaimedAccesses) => {
      const list = [...unclaimed].map(([at, n]) => `0x${at.toString(16)} (${n.reads} reads, ${n.writes} writes)`);
      if (list.length) opts.log?.(`${what} no device claims were touched: ${list.join(", ")}`);
    };
    touched("ports", m.unclaimedPorts);
    touched("MMIO addresses (read as all-ones, writes dropped)", m.unclaimedMmio);
    for (const line of result.conversions?.summary ?? []) opts.log?.(line);
    return {
      ...result,
      console: Buffer.concat(chunks).toString("utf8"),
      screen: screen ? await screen.text() : undefined,
      lastLine: m.lastConsoleLine,
    };
  } finally {
    debug?.close();
    if (machine) machine.close();
    else kvm.close();
    screen?.dispose();
    kernel?.stop(0n);
    trace?.close();
  }
}
