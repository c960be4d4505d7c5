// What every section of `npm run bench` shares: paths, timed child processes, statistics and
// formatting, the probe of the host, the build of the baselines, and the QEMU baseline's command.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

export const ROOT = path.resolve(__dirname, "..", "..", "..");
export const OUT = path.join(ROOT, "build", "bench");
const BENCH_SRC = path.join(ROOT, "test", "bench");
export const TSVMM = path.join(ROOT, "bin", "tsvmm.js");
export const QEMU = "qemu-system-x86_64";
export const CONVERT_LAB = path.join(ROOT, "dist", "test", "bench", "convert-lab.js");
export const LINUX_LAB = path.join(ROOT, "dist", "test", "bench", "linux-lab.js");

// ---------------------------------------------------------------------------------------------
// small helpers

export interface TimedProcess {
  ms: number;
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
  timedOut: boolean;
  error?: Error;
  /** ms from spawn to the first stdout that completed `marker` (runTimed's optional argument) */
  markMs?: number;
}

/** Spawn, time from just before spawn() to the 'exit' event (and to `marker` on stdout), kill
 *  (this child only) on timeout. */
export function runTimed(cmd: string, args: string[], timeoutMs: number, marker?: string): Promise<TimedProcess> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let exitAt: bigint | undefined;
    let status: number | null = null;
    let signal: NodeJS.Signals | null = null;
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    let markMs: number | undefined;
    let seen = "";
    child.stdout.on("data", (b: Buffer) => {
      out.push(b);
      if (marker === undefined || markMs !== undefined) return;
      seen = (seen + b.toString("latin1")).slice(-(marker.length + b.length));
      if (seen.includes(marker)) markMs = Number(process.hrtime.bigint() - t0) / 1e6;
    });
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("exit", (code, sig) => {
      exitAt = process.hrtime.bigint();
      status = code;
      signal = sig;
    });
    const finish = (error?: Error) => {
      clearTimeout(timer);
      const end = exitAt ?? process.hrtime.bigint();
      resolve({
        ms: Number(end - t0) / 1e6,
        status,
        signal,
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err),
        timedOut,
        error,
        markMs,
      });
    };
    child.on("error", (e) => finish(e));
    child.on("close", () => finish());
  });
}

export function quantile(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil(q * s.length)); // nearest rank
  return s[rank - 1];
}
export const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};

export const pad = (s: string, n: number) => (s.length >= n ? s : s + " ".repeat(n - s.length));
export const lpad = (s: string, n: number) => (s.length >= n ? s : " ".repeat(n - s.length) + s);
export const fmt = (v: number, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : "-");
export const hex = (v: number) => "0x" + v.toString(16);
/** The last line that says something (stack frames skipped). */
export const lastLine = (b: Buffer | string) =>
  b
    .toString()
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("at "))
    .slice(-1)[0] ?? "";

export function describeFailure(r: TimedProcess): string {
  if (r.error) return r.error.message;
  if (r.timedOut) return `timed out after ${fmt(r.ms, 0)} ms`;
  const why = r.signal ? `signal ${r.signal}` : `status ${r.status}`;
  const tail = lastLine(r.stderr) || lastLine(r.stdout);
  return tail ? `${why}: ${tail}` : why;
}

/** A row's note on its failed runs: how many, and the first one's reason. */
export const failedNote = (failures: string[]) => (failures.length ? `  (${failures.length} failed: ${failures[0]})` : "");

function sh(cmd: string, args: string[], timeoutMs = 120_000): { ok: boolean; text: string } {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: "utf8", timeout: timeoutMs });
  if (r.error) return { ok: false, text: r.error.message };
  return { ok: r.status === 0, text: (r.stdout ?? "") + (r.stderr ?? "") };
}

// ---------------------------------------------------------------------------------------------
// environment

export interface Env {
  kvm: string | null; // null = usable, else why not
  gcc: string | null;
  qemu: string | null;
  qemuVersion: string;
  tsvmm: string | null;
  hostModule: string;
}

function kvmModule(): string {
  for (const m of ["kvm_pvm", "kvm_intel", "kvm_amd"]) if (fs.existsSync(`/sys/module/${m}`)) return m;
  return "unknown";
}

export async function probeEnv(): Promise<Env> {
  let kvm: string | null = null;
  try {
    fs.accessSync("/dev/kvm", fs.constants.R_OK | fs.constants.W_OK);
  } catch (e) {
    kvm = `/dev/kvm is not usable (${(e as NodeJS.ErrnoException).code})`;
  }
  const gccProbe = sh("gcc", ["--version"], 10_000);
  const makeProbe = sh("make", ["--version"], 10_000);
  const gcc = !gccProbe.ok ? "gcc not found" : !makeProbe.ok ? "make not found" : null;
  const q = sh(QEMU, ["--version"], 10_000);
  const qemu = q.ok ? null : `${QEMU} not found (Debian package qemu-system-x86: apt-get install qemu-system-x86)`;
  const qemuVersion = q.ok ? q.text.split("\n")[0].replace(/^QEMU emulator version /, "") : "";

  let tsvmm: string | null = null;
  if (kvm) tsvmm = kvm;
  else if (!fs.existsSync(path.join(ROOT, "dist", "bundle", "tsvmm.js")))
    tsvmm = "tsvmm is not built (dist/bundle/tsvmm.js missing; run `npm run build`)";
  else {
    const r = await runTimed(process.execPath, [TSVMM, "run", "hello"], 30_000);
    if (r.status !== 0) tsvmm = `\`tsvmm run hello\` does not work yet (${describeFailure(r)})`;
  }
  return { kvm, gcc, qemu, qemuVersion, tsvmm, hostModule: kvmModule() };
}

export function make(targets: string[]): { ok: boolean; text: string } {
  return sh("make", ["-s", "-C", BENCH_SRC, `OUT=${OUT}`, ...targets], 300_000);
}


// ---------------------------------------------------------------------------------------------
// the QEMU baseline (sections 1 and 5)

export const QEMU_HELLO = path.join(OUT, "qemu-hello.bin");
export const qemuArgs = (machine: string) => [
  "-accel", "kvm", "-machine", machine, "-m", "16M", "-bios", QEMU_HELLO,
  "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none", "-serial", "stdio",
  "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
];
export const QEMU_MACHINES: Array<[string, string]> = [
  ["QEMU microvm (defaults)", "microvm"],
  ["QEMU microvm (lean)", "microvm,x-option-roms=off,pit=off,pic=off,rtc=off,acpi=off"],
];
// isa-debug-exit turns our 0 into status (0 << 1) | 1 = 1
export const qemuOk = (r: TimedProcess) => r.status === 1 && r.stdout.includes("ok 3 - ");
export const qemuCommand = (args: string[]) => `${QEMU} ${args.join(" ").replace(QEMU_HELLO, "build/bench/qemu-hello.bin")}`;

// ---------------------------------------------------------------------------------------------
// the nested lab (sections 3, 4 and 6)

const LAB_STATUS_WHY: Record<number, string> = {
  80: "QEMU is missing",
  81: "Debian's archive is unreachable and no lab kernel is cached",
  82: "kernel build tools are missing",
  83: "the lab kernel build failed",
  84: "the lab initramfs could not be built",
  85: "the lab kernel panicked",
  86: "the lab did not reach the command",
  87: "QEMU ended without a status",
  89: "the lab froze (its clock stood still for a minute, below tsvmm)",
  124: "the lab command ran out of time",
};

/** `tsvmm lab LABOPTIONS -- node SCRIPT ARGS...`; its progress goes to stderr as it comes, tagged. */
export function runLab(labOptions: string[], script: string, scriptArgs: string[], limitMs: number, tag: string): Promise<TimedProcess> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const t0 = process.hrtime.bigint();
    const args = [TSVMM, "lab", ...labOptions, "--timeout", String(Math.ceil(limitMs / 1000)), "--", process.execPath, script, ...scriptArgs];
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    // the lab's own limits cover a kernel build; this one covers everything
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGTERM"); // tsvmm lab kills QEMU (or a build) on SIGTERM
      setTimeout(() => child.kill("SIGKILL"), 10_000).unref();
    }, limitMs + 3_600_000);
    child.stdout.on("data", (b: Buffer) => out.push(b));
    let partial = "";
    child.stderr.on("data", (b: Buffer) => {
      err.push(b);
      partial += b.toString();
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      for (const l of lines) if (l.trim()) process.stderr.write(`   [lab ${tag}] ${l}\n`);
    });
    let status: number | null = null;
    let signal: NodeJS.Signals | null = null;
    child.on("exit", (code, sig) => {
      status = code;
      signal = sig;
    });
    const finish = (error?: Error) => {
      clearTimeout(timer);
      resolve({ ms: Number(process.hrtime.bigint() - t0) / 1e6, status, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err), timedOut, error });
    };
    child.on("error", (e) => finish(e));
    child.on("close", () => finish());
  });
}

/** Why a lab run gave no result: its status, what that status means, and the lab's last word. */
export function labDidNotRun(run: TimedProcess): string {
  const labSays = run.stderr
    .toString()
    .split("\n")
    .filter((l) => l.startsWith("tsvmm: "))
    .slice(-1)[0];
  const known = run.status !== null ? LAB_STATUS_WHY[run.status] : undefined;
  const how = run.status !== null && !run.timedOut && !run.error ? `status ${run.status}` : describeFailure(run);
  return `the lab did not run (${how}${known ? `, ${known}` : ""})${labSays ? `: ${labSays.replace(/^tsvmm: /, "")}` : ""}`;
}

/** The JSON a lab-side script prints on its one "TAG <json>" line, with its own skip reason, or why
 *  there is none. */
export function labResult<T extends { skipped?: string }>(run: TimedProcess, tag: string): { lab?: T; skipped?: string } {
  const line = run.stdout
    .toString()
    .split("\n")
    .find((l) => l.startsWith(`${tag} `));
  if (!line) return { skipped: labDidNotRun(run) };
  try {
    const lab = JSON.parse(line.slice(tag.length + 1)) as T;
    return { lab, skipped: lab.skipped };
  } catch {
    return { skipped: `unparsable lab result: ${line.slice(0, 200)}` };
  }
}
