// Runs the entries of a test matrix in this process, `jobs` VMs at a time, each through runGuest
// with its own time limit, and judges each one: pass, fail or skip, with the reason.
import * as fs from "node:fs";
import * as path from "node:path";
import { DEFAULT_MEM, GuestRun, RunOptions, runGuest, StopRequest } from "../run";
import { loadFirmware, loadGuest } from "../guests";
import { computeLayout } from "../machine/layout";
import { encodeCmdline } from "../machine/abi";
import type { ElfImage } from "../machine/elf";
import type { Verdict } from "../host/caps";
import { API_SETTING_NAMES, ExitStatus, SettingNames, TsvmmError, UsageError } from "../errors";
import { GuestTap, parseGuestTap, tapProblems } from "./guestTap";
import { MatrixEntry, privateRequestFor } from "./plan";
import { sourceMappedStack } from "../sourceMap";

export type Outcome = "pass" | "fail" | "skip";

export interface EntryResult {
  entry: MatrixEntry;
  outcome: Outcome;
  /** The status `tsvmm run` would exit with: the guest's own (0-63) or one of ExitStatus */
  status: number;
  /** One line: what happened (for a skip, why) */
  reason: string;
  /** Registers and context of a failure, or the hint of an error */
  report?: string;
  /** Wall time of the entry: VM set-up, run and tear-down */
  seconds: number;
  /** Everything the guest printed */
  console: string;
  lastLine: string;
  /** The run log (RAM, conversions, unclaimed ports) */
  log: string[];
  /** The guest's own TAP, when it printed any */
  tap?: GuestTap;
  /** The NDJSON trace written for this entry */
  trace?: string;
}

export interface MatrixOptions {
  /** VMs running at once */
  jobs: number;
  /** Seconds each entry may run; 0 = no limit */
  timeout: number;
  memSize?: bigint;
  /** An entry this host cannot run (exit 69: no private memory here, ...) is a skip or a failure */
  unsupported: "skip" | "fail";
  /** A directory for one NDJSON trace per entry */
  traceDir?: string;
  /** Aborting stops the running entries (with the StopRequest it carries, else as SIGINT) and starts no more */
  signal?: AbortSignal;
  /** What the host can do, probed once for every entry (else each run probes: a probe creates a VM per VM type) */
  verdict?: Verdict;
  /** How errors name the run's settings (the CLI's flags); the API's names by default */
  settingNames?: SettingNames;
  onStart?: (entry: MatrixEntry) => void;
  onResult?: (result: EntryResult) => void;
  /** Boots one entry; runGuest unless a test replaces it */
  boot?: (opts: RunOptions) => Promise<GuestRun>;
}

/** Before anything starts, what would fail every run alike: a bad guest image (65), a RAM size,
 *  vCPU count or command line the layout refuses (64). Each guest image is loaded once here. */
export function checkEntries(entries: MatrixEntry[], memSize: bigint = DEFAULT_MEM): void {
  const firmware = loadFirmware();
  const images = new Map<string, ElfImage>();
  for (const e of entries) {
    if (!images.has(e.guest)) images.set(e.guest, loadGuest(e.guest));
    computeLayout(memSize, e.cpus, firmware, images.get(e.guest)!);
    encodeCmdline(e.cmdline);
  }
}

/** Where an entry's trace goes: its position and its name, as a file name */
export function traceFileName(entry: MatrixEntry): string {
  return `${String(entry.index + 1).padStart(3, "0")}-${entry.name.replace(/[^A-Za-z0-9._=-]+/g, "_")}.ndjson`;
}

/** Run every entry; results come back in matrix order (onResult sees them as they finish). */
export async function runMatrix(entries: MatrixEntry[], opts: MatrixOptions): Promise<EntryResult[]> {
  if (!Number.isInteger(opts.jobs) || opts.jobs < 1) throw new UsageError(`jobs ${opts.jobs} must be a whole number from 1`);
  if (opts.traceDir) {
    try {
      fs.mkdirSync(opts.traceDir, { recursive: true });
    } catch (err) {
      throw new UsageError(`cannot create the trace directory ${opts.traceDir} (${(err as NodeJS.ErrnoException).code})`, "name a directory you may write to");
    }
  }
  const results: EntryResult[] = new Array(entries.length);
  // One listener on the caller's signal for the whole run; each entry has its own controller.
  const running = new Set<AbortController>();
  const abortAll = () => running.forEach((c) => c.abort(opts.signal?.reason));
  opts.signal?.addEventListener("abort", abortAll);
  let next = 0;
  const worker = async () => {
    while (next < entries.length) {
      const entry = entries[next++];
      const result = opts.signal?.aborted ? notStarted(entry, opts.signal) : await runEntry(entry, opts, running);
      results[entry.index] = result;
      opts.onResult?.(result);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(opts.jobs, entries.length) }, worker));
  } finally {
    opts.signal?.removeEventListener("abort", abortAll);
  }
  return results;
}

function notStarted(entry: MatrixEntry, signal: AbortSignal): EntryResult {
  const stop = stopRequestOf(signal);
  return { entry, outcome: "fail", status: stop.status, reason: `${stop.reason} before it started`, seconds: 0, console: "", lastLine: "", log: [] };
}

/** The StopRequest an aborted signal carries (as Machine.run reads it), or a plain interruption */
export function stopRequestOf(signal: AbortSignal): StopRequest {
  const r = signal.reason as Partial<StopRequest> | undefined;
  return typeof r?.status === "number" && typeof r.reason === "string" ? { status: r.status, reason: r.reason } : { status: ExitStatus.INTERRUPTED, reason: "interrupted" };
}

async function runEntry(entry: MatrixEntry, opts: MatrixOptions, running: Set<AbortController>): Promise<EntryResult> {
  const controller = new AbortController();
  running.add(controller);
  const log: string[] = [];
  const trace = opts.traceDir ? path.join(opts.traceDir, traceFileName(entry)) : undefined;
  opts.onStart?.(entry);
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  try {
    const run = await (opts.boot ?? runGuest)({
      guest: entry.guest,
      memSize: opts.memSize,
      cpus: entry.cpus,
      cmdline: entry.cmdline,
      timeout: opts.timeout,
      console: "capture",
      log: (line) => log.push(line),
      trace,
      signal: controller.signal,
      privateMemory: privateRequestFor(entry.backend),
      verdict: opts.verdict,
    });
    return { ...judgeRun(run), entry, seconds: seconds(), console: run.console, lastLine: run.lastLine, log, trace };
  } catch (err) {
    return { ...judgeError(err, opts.unsupported, opts.settingNames), entry, seconds: seconds(), console: "", lastLine: "", log };
  } finally {
    running.delete(controller);
  }
}

type Judgement = Pick<EntryResult, "outcome" | "status" | "reason" | "report" | "tap">;

/** A finished run: status 0 passes unless the guest's TAP says otherwise; a guest that skipped
 *  all its tests ("1..0 # SKIP why") is a skip; any other status fails. */
export function judgeRun(run: Pick<GuestRun, "status" | "reason" | "report" | "console">): Judgement {
  const tap = parseGuestTap(run.console);
  const problems = tap ? tapProblems(tap) : [];
  const base = { status: run.status, report: run.report, tap };
  if (run.status !== ExitStatus.OK) return { ...base, outcome: "fail", reason: [run.reason, ...problems].join("; ") };
  if (tap?.plan?.skip !== undefined && tap.plan.count === 0 && !tap.points.length)
    return { ...base, outcome: "skip", reason: tap.plan.skip || "the guest skipped all its tests" };
  if (problems.length) return { ...base, outcome: "fail", reason: `${run.reason}, but ${problems.join("; ")}` };
  return { ...base, outcome: "pass", reason: run.reason };
}

/** runGuest threw: the host cannot do it (69: skip or fail as asked), bad settings, or a VMM error. */
export function judgeError(err: unknown, unsupported: "skip" | "fail", names: SettingNames = API_SETTING_NAMES): Judgement {
  if (err instanceof TsvmmError) {
    const [reason, ...rest] = err.describe(names).split("\n");
    const report = rest.map((l) => l.trim()).join("\n") || undefined;
    const outcome = err.status === ExitStatus.HOST_UNSUPPORTED && unsupported === "skip" ? "skip" : "fail";
    return { outcome, status: err.status, reason, report };
  }
  const e = err as Error;
  return { outcome: "fail", status: ExitStatus.INTERNAL, reason: `internal error: ${e?.message ?? String(err)}`, report: e?.stack && sourceMappedStack(e) };
}
