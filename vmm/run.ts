// The programmatic way to boot a guest: the CLI's `run` and the tests both come through here.
import * as fs from "node:fs";
import { Machine, MachineResult } from "./machine/machine";
export type { StopRequest } from "./machine/machine";
import { loadFirmware, loadGuest } from "./guests";
import type { ConsoleScreen } from "./console/screen";
import { ExitStatus, UsageError } from "./errors";
import { computeLayout } from "./machine/layout";
import { PrivateRequest, resolvePrivateMemory } from "./memory/policy";
import { assessHost, openKvm, probeHost } from "./host/caps";

export type ConsoleMode = "raw" | "screen" | "capture";

export interface RunOptions {
  /** A shipped guest name or an ELF path */
  guest: string;
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
  /** NDJSON event trace file */
  trace?: string;
  /** Stops the VM: abort it with a StopRequest as the reason (any other reason counts as SIGINT) */
  signal?: AbortSignal;
  device?: string;
  /** Called once the VM is running with a function that feeds bytes to the guest's COM1 */
  onInput?: (send: (bytes: Uint8Array) => void) => void;
  /** Private memory and conversions (the guest's default when absent) */
  privateMemory?: PrivateRequest;
  /** Called with the machine once it is created (API conversions, inspection) */
  onMachine?: (machine: Machine) => void;
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

export async function runGuest(opts: RunOptions): Promise<GuestRun> {
  const firmware = loadFirmware();
  const guest = loadGuest(opts.guest);
  // Resolved once, top down: the layout, the host's answers, what the machine is made of.
  const layout = computeLayout(opts.memSize ?? DEFAULT_MEM, opts.cpus ?? 1, firmware, guest);
  const device = opts.device ?? "/dev/kvm";
  const kvm = openKvm(device);
  let machine: Machine | undefined;
  let screen: ConsoleScreen | undefined;
  let trace: TraceFile | undefined;
  let traceFailure: string | undefined;
  try {
    const verdict = assessHost(probeHost(device, kvm));
    const privateMemory = resolvePrivateMemory(opts.privateMemory ?? {}, guest, layout, verdict);
    const mode = opts.console ?? "capture";
    // xterm costs ~10 ms to load: only the screen mode pays for it.
    if (mode === "screen") screen = new (await import("./console/screen")).ConsoleScreen();
    const chunks: Buffer[] = [];
    let captured = 0;
    const m = new Machine({
      kvm,
      firmware,
      guest,
      layout,
      ram: { backing: verdict.ramBacking, region2: verdict.memoryRegion2 },
      amd: verdict.amd,
      privateMemory,
      cmdline: opts.cmdline ?? "",
      log: opts.log,
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
    opts.onInput?.((bytes) => m.serial.receive(bytes));
    const result = await m.run(opts.timeout, opts.signal);
    if (traceFailure && result.status !== ExitStatus.OUTPUT_FAILED) opts.log?.(`${traceFailure}: the trace is incomplete`);
    const unclaimed = [...m.unclaimedPorts].map(([p, n]) => `0x${p.toString(16)} (${n.reads} reads, ${n.writes} writes)`);
    if (unclaimed.length) opts.log?.(`ports no device claims were touched: ${unclaimed.join(", ")}`);
    for (const line of result.conversions?.summary ?? []) opts.log?.(line);
    return {
      ...result,
      console: Buffer.concat(chunks).toString("utf8"),
      screen: screen ? await screen.text() : undefined,
      lastLine: m.lastConsoleLine,
    };
  } finally {
    if (machine) machine.close();
    else kvm.close();
    screen?.dispose();
    trace?.close();
  }
}

/** The NDJSON trace. A write that fails (disk full, file size limit) closes it and calls onFailure once. */
interface TraceFile {
  write: (event: Record<string, unknown>) => void;
  close: () => void;
}

function openTrace(file: string, onFailure: (problem: string) => void): TraceFile {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, "w");
  } catch (err) {
    throw new UsageError(`--trace ${file}: cannot open for writing (${(err as NodeJS.ErrnoException).code})`);
  }
  const close = () => {
    if (fd !== undefined) fs.closeSync(fd);
    fd = undefined;
  };
  const write = (event: Record<string, unknown>) => {
    if (fd === undefined) return;
    try {
      fs.writeFileSync(fd, JSON.stringify(event) + "\n");
    } catch (err) {
      close();
      onFailure(`--trace ${file}: write failed (${(err as NodeJS.ErrnoException).code})`);
    }
  };
  return { write, close };
}
