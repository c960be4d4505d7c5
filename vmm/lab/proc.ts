// Child processes with a time limit, and progress lines on stderr.
import { spawn, SpawnOptions } from "node:child_process";
import * as fs from "node:fs";
import { LabError, LabStatus } from "./errors";

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  ms: number;
}

export interface ProcessOptions {
  /** kill the child (its whole process group) after this many ms */
  timeoutMs: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** append stdout and stderr to this file instead of keeping them in memory */
  logFile?: string;
  /** run under `nice -n 10` (long builds on a shared machine) */
  nice?: boolean;
}

/** Kill a child we started, and its process group (it was spawned detached, so it leads one). */
export function killTree(pid: number | undefined, signal: NodeJS.Signals = "SIGKILL"): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      /* already gone */
    }
  }
}

/**
 * The command line that runs `file` under `setpriv --pdeathsig KILL` (util-linux) when the host
 * has setpriv: the kernel kills it when we die, even by SIGKILL, which no handler of ours sees.
 */
export function dyingWithUs(file: string, args: string[]): [string, string[]] {
  const setpriv = which("setpriv", `${process.env.PATH ?? ""}:/usr/bin:/bin`);
  return setpriv ? [setpriv, ["--pdeathsig", "KILL", "--", file, ...args]] : [file, args];
}

/** Run a program to completion (never through a shell), with a hard time limit. */
export function runProcess(file: string, args: string[], opts: ProcessOptions): Promise<ProcessResult> {
  const started = Date.now();
  const [prog, argv] = dyingWithUs(opts.nice ? "nice" : file, opts.nice ? ["-n", "10", file, ...args] : args);
  return new Promise((resolve, reject) => {
    let log: number | undefined;
    const spawnOpts: SpawnOptions = { cwd: opts.cwd, env: opts.env ?? process.env, detached: true };
    if (opts.logFile) {
      log = fs.openSync(opts.logFile, "a");
      spawnOpts.stdio = ["ignore", log, log];
    } else {
      spawnOpts.stdio = ["ignore", "pipe", "pipe"];
    }
    const child = spawn(prog, argv, spawnOpts);
    let stdout = "";
    let stderr = "";
    child.stdout?.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr?.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killTree(child.pid, "SIGTERM");
      setTimeout(() => killTree(child.pid, "SIGKILL"), 3000).unref();
    }, opts.timeoutMs);
    // Never leave a child behind: kill its group when we exit or are told to stop.
    let interrupted: NodeJS.Signals | undefined;
    const onExit = () => killTree(child.pid, "SIGKILL");
    const onSignal = (sig: NodeJS.Signals) => {
      interrupted = sig;
      killTree(child.pid, "SIGKILL");
    };
    process.once("exit", onExit);
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    const cleanup = () => {
      clearTimeout(timer);
      process.removeListener("exit", onExit);
      process.removeListener("SIGINT", onSignal);
      process.removeListener("SIGTERM", onSignal);
      if (log !== undefined) fs.closeSync(log);
    };
    child.on("error", (err) => {
      cleanup();
      reject(err);
    });
    child.on("close", (code, signal) => {
      cleanup();
      if (interrupted) {
        reject(new LabError(`${interrupted}: stopped ${prog} ${argv.slice(0, 3).join(" ")} (pid ${child.pid})`, LabStatus.INTERRUPTED));
        return;
      }
      resolve({ code, signal, stdout, stderr, timedOut, ms: Date.now() - started });
    });
  });
}

/** Is an executable with this name on PATH? Returns its path. */
export function which(name: string, envPath = process.env.PATH ?? ""): string | undefined {
  if (name.includes("/")) return isExecutable(name) ? name : undefined;
  for (const dir of envPath.split(":")) {
    if (!dir) continue;
    const p = `${dir}/${name}`;
    if (isExecutable(p)) return p;
  }
  return undefined;
}

function isExecutable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

const STEP_TICK_MS = 15_000;

/** Progress lines on stderr: "tsvmm lab: <what>" at the start of a long step, timing at its end. */
export class Progress {
  constructor(private readonly quiet = false) {}

  say(line: string): void {
    if (!this.quiet) process.stderr.write(`tsvmm lab: ${line}\n`);
  }

  /** Always printed (warnings and failures are never quiet). */
  warn(line: string): void {
    process.stderr.write(`tsvmm lab: ${line}\n`);
  }

  /**
   * A long step: its start, every 15 s while it runs the time so far (and `detail()`, e.g. a
   * percentage), and at its end `done(result)` and the time it took.
   */
  async step<T>(what: string, fn: () => Promise<T>, done?: (v: T) => string, detail?: () => string): Promise<T> {
    const t0 = Date.now();
    this.say(`${what} ...`);
    const ticker = setInterval(() => {
      this.say(`  ${what.replace(/ \(.*$/, "")}: ${seconds(Date.now() - t0)} so far${detail ? `, ${detail()}` : ""}`);
    }, STEP_TICK_MS);
    try {
      const v = await fn();
      this.say(`${what}: ${done ? done(v) + ", " : ""}${seconds(Date.now() - t0)}`);
      return v;
    } finally {
      clearInterval(ticker);
    }
  }
}

/** Remove a directory tree with `rm -rf` (much faster than fs.rmSync on big trees), bounded in time. */
export async function removeTree(dir: string, timeoutMs = 15 * 60_000): Promise<void> {
  if (!fs.existsSync(dir)) return;
  try {
    const r = await runProcess("rm", ["-rf", "--", dir], { timeoutMs });
    if (r.code === 0 && !fs.existsSync(dir)) return;
  } catch {
    /* fall back below */
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Is there a live process with this pid? */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Field n (1-based, as proc(5) numbers them) of /proc/PID/stat, read after the command name
 *  (which may hold spaces and parentheses); undefined when the process is gone. */
export function procStatFields(pid: number | "self", ...fields: number[]): number[] | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // after "pid (comm) " the fields start at 3 (state)
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return fields.map((n) => Number(rest[n - 3]));
}
