// `npm run bench`: tsvmm against baselines run in the same process tree, side by side.
//
//  1. Boot wall time: the whole process time (spawn -> exit, measured here) of
//     `node bin/tsvmm.js run hello` against QEMU microvm booting test/bench/qemu-hello.S, a flat
//     -bios image that prints a text as long as hello's on COM1 (polling LSR, one `out` per byte, like
//     the tsvmm guests) and exits through isa-debug-exit. Runs are interleaved so drift in the
//     machine's load hits every row alike.
//  2. Exit cost: ns per port-I/O exit of one loop (`out|in; sub $1,%ecx; jnz`), run by
//     test/bench/exit-loop.c (a bare KVM_RUN loop in C, timed around the loop) and by tsvmm as
//     the guest test/bench/guests/exits.c, with the port answered by the native fast path or by
//     TypeScript. tsvmm's figure is (median time of a large-N run - median time of a small-N
//     run) / (large N - small N), so the boot of node, the VM and the guest cancel out.
//
//  3. Private-memory conversions, in the nested lab (`tsvmm lab`, a real KVM under QEMU TCG): per
//     lab kernel and backend, conversions per second of a 4 KiB and a 2 MiB range, and the time
//     from a KVM_EXIT_MEMORY_FAULT (exit 39) to the guest running again, for tsvmm (guest
//     test/bench/guests/convert-bench.c) beside test/bench/convert-loop.c, a C program making the
//     same ioctls, in the same lab boot (the lab side is test/bench/convert-lab.ts).
//
//  5. Many guests per process: the wall time of N boots of hello by one `tsvmm test hello
//     --repeat N` process (several VMs at once) against N QEMU microvm processes (one at a time,
//     and as many at once as tsvmm runs VMs) and N `tsvmm run hello` processes.
//
// A benchmark, not a test: missing pieces (QEMU, /dev/kvm, an unbuilt tsvmm) skip their rows with
// the reason, and nothing passes or fails on time. Every child has a time limit.
//
// Options (after `npm run bench --`): --runs N (boot runs per row, default 20), --warmup N (2),
// --exits N (large-N exit count, 100000), --small N (small-N, 1000), --reps N (5),
// --conversions N (round trips per range size per run, 50), --touches N (implicit conversions per
// run, 100), --lab-rounds N (3), --lab-kernels sw-protected,stock,
// --boots N (boots per row of section 5, 40), --jobs N (VMs at once in section 5, this machine's CPUs),
// --matrix-rounds N (3), --only boot|exits|convert|matrix, --quick (runs 10, exits 20000, reps 3,
// conversions 20, touches 40, lab rounds 2, matrix rounds 1), --json FILE (results as JSON).
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { buildElf } from "../support/elfBuilder";

const ROOT = path.resolve(__dirname, "..", "..", "..");
const OUT = path.join(ROOT, "build", "bench");
const BENCH_SRC = path.join(ROOT, "test", "bench");
const TSVMM = path.join(ROOT, "bin", "tsvmm.js");
const QEMU = "qemu-system-x86_64";
const CONVERT_LAB = path.join(ROOT, "dist", "test", "bench", "convert-lab.js");

// The ports of the exit benchmark. The native ones are the console fast path of the VMM
// (FastPorts in vmm/native.ts: consoleOut = COM1 THR, reads = the UART's LSR); the TypeScript one
// is a UART register no fast path answers (the 16550 scratch register), so every access is an
// event handled by the TypeScript device model.
const COM1 = 0x3f8;
const PORT_NATIVE_OUT = COM1; // THR: console bytes
const PORT_NATIVE_IN = COM1 + 5; // LSR
const PORT_TS = COM1 + 7; // SCR

// ---------------------------------------------------------------------------------------------
// small helpers

interface RunResult {
  ms: number;
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
  timedOut: boolean;
  error?: Error;
}

/** Spawn, time from just before spawn() to the 'exit' event, kill (this child only) on timeout. */
function runTimed(cmd: string, args: string[], timeoutMs: number): Promise<RunResult> {
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
    child.stdout.on("data", (b: Buffer) => out.push(b));
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
      });
    };
    child.on("error", (e) => finish(e));
    child.on("close", () => finish());
  });
}

function quantile(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil(q * s.length)); // nearest rank
  return s[rank - 1];
}
const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};

const pad = (s: string, n: number) => (s.length >= n ? s : s + " ".repeat(n - s.length));
const lpad = (s: string, n: number) => (s.length >= n ? s : " ".repeat(n - s.length) + s);
const fmt = (v: number, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : "-");
const hex = (v: number) => "0x" + v.toString(16);
/** The last line that says something (stack frames skipped). */
const lastLine = (b: Buffer | string) =>
  b
    .toString()
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("at "))
    .slice(-1)[0] ?? "";

function describeFailure(r: RunResult): string {
  if (r.error) return r.error.message;
  if (r.timedOut) return `timed out after ${fmt(r.ms, 0)} ms`;
  const why = r.signal ? `signal ${r.signal}` : `status ${r.status}`;
  const tail = lastLine(r.stderr) || lastLine(r.stdout);
  return tail ? `${why}: ${tail}` : why;
}

function sh(cmd: string, args: string[], timeoutMs = 120_000): { ok: boolean; text: string } {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: "utf8", timeout: timeoutMs });
  if (r.error) return { ok: false, text: r.error.message };
  return { ok: r.status === 0, text: (r.stdout ?? "") + (r.stderr ?? "") };
}

// ---------------------------------------------------------------------------------------------
// environment

interface Env {
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

async function probeEnv(): Promise<Env> {
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
  else if (!fs.existsSync(path.join(ROOT, "dist", "vmm", "cli", "main.js")))
    tsvmm = "tsvmm is not built (dist/vmm/cli/main.js missing; run `npm run build`)";
  else {
    const r = await runTimed(process.execPath, [TSVMM, "run", "hello"], 30_000);
    if (r.status !== 0) tsvmm = `\`tsvmm run hello\` does not work yet (${describeFailure(r)})`;
  }
  return { kvm, gcc, qemu, qemuVersion, tsvmm, hostModule: kvmModule() };
}

function make(targets: string[]): { ok: boolean; text: string } {
  return sh("make", ["-s", "-C", BENCH_SRC, `OUT=${OUT}`, ...targets], 300_000);
}

// ---------------------------------------------------------------------------------------------
// 1. boot wall time

interface BootRow {
  label: string;
  command: string;
  skipped?: string;
  times: number[];
  failures: string[];
  outputBytes: number[];
}

interface Contender {
  row: BootRow;
  cmd: string;
  args: string[];
  ok: (r: RunResult) => boolean;
}

const QEMU_HELLO = path.join(OUT, "qemu-hello.bin");
const qemuArgs = (machine: string) => [
  "-accel", "kvm", "-machine", machine, "-m", "16M", "-bios", QEMU_HELLO,
  "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none", "-serial", "stdio",
  "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
];
const QEMU_MACHINES: Array<[string, string]> = [
  ["QEMU microvm (defaults)", "microvm"],
  ["QEMU microvm (lean)", "microvm,x-option-roms=off,pit=off,pic=off,rtc=off,acpi=off"],
];
// isa-debug-exit turns our 0 into status (0 << 1) | 1 = 1
const qemuOk = (r: RunResult) => r.status === 1 && r.stdout.includes("ok 3 - ");
const qemuCommand = (args: string[]) => `${QEMU} ${args.join(" ").replace(QEMU_HELLO, "build/bench/qemu-hello.bin")}`;

async function benchBoot(env: Env, runs: number, warmup: number): Promise<BootRow[]> {
  const image = QEMU_HELLO;
  const machines = QEMU_MACHINES;

  const contenders: Contender[] = [];
  const rows: BootRow[] = [];
  const tsRow: BootRow = {
    label: "tsvmm run hello",
    command: "node bin/tsvmm.js run hello",
    times: [],
    failures: [],
    outputBytes: [],
  };
  rows.push(tsRow);
  if (env.tsvmm) tsRow.skipped = env.tsvmm;
  else contenders.push({ row: tsRow, cmd: process.execPath, args: [TSVMM, "run", "hello"], ok: (r) => r.status === 0 });

  // not a contender: the floor under any VMM started as a Node process
  const nodeRow: BootRow = { label: "node -e 0 (reference)", command: "node -e 0", times: [], failures: [], outputBytes: [] };
  rows.push(nodeRow);
  contenders.push({ row: nodeRow, cmd: process.execPath, args: ["-e", "0"], ok: (r) => r.status === 0 });

  const imageProblem = env.gcc ?? (fs.existsSync(image) ? null : "qemu-hello.bin was not built");
  for (const [label, machine] of machines) {
    const args = qemuArgs(machine);
    const row: BootRow = { label, command: qemuCommand(args), times: [], failures: [], outputBytes: [] };
    rows.push(row);
    const why = env.kvm ?? env.qemu ?? imageProblem;
    if (why) row.skipped = why;
    else contenders.push({ row, cmd: QEMU, args, ok: qemuOk });
  }

  for (let i = 0; i < warmup + runs; i++) {
    // rotate the order each round so no contender always runs right after another
    for (let k = 0; k < contenders.length; k++) {
      const c = contenders[(i + k) % contenders.length];
      const r = await runTimed(c.cmd, c.args, 30_000);
      if (i < warmup) continue;
      if (c.ok(r)) {
        c.row.times.push(r.ms);
        c.row.outputBytes.push(r.stdout.length);
      } else c.row.failures.push(describeFailure(r));
    }
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// 2. exit cost

interface ExitRow {
  label: string;
  dir: "out" | "in";
  port: number;
  path: "native" | "TypeScript";
  target: number;
  cNs?: number;
  cSkipped?: string;
  tsvmmNs?: number;
  tsvmmPairs?: number[]; // per-rep (large - small) estimates, ns/exit
  tsvmmSkipped?: string;
  tsvmmLargeMs?: number;
  tsvmmSmallMs?: number;
  /** tsvmm's own count of who handled the exits, from its summary line (large-N run) */
  verified?: string;
  /** why a tsvmm run failed and was retried */
  retried?: string;
}

interface CLoopResult {
  median_ns: number;
  min_ns: number;
  ns_per_exit: number[];
}

async function cLoop(dir: string, port: number, iters: number, reps: number, syncRegs = false): Promise<CLoopResult | string> {
  const args = ["--mode", dir, "--port", hex(port), "--iters", String(iters), "--reps", String(reps)];
  if (syncRegs) args.push("--sync-regs");
  const r = await runTimed(path.join(OUT, "exit-loop"), args, 300_000);
  if (r.status !== 0) return describeFailure(r);
  try {
    return JSON.parse(r.stdout.toString()) as CLoopResult;
  } catch {
    return `unparsable output: ${lastLine(r.stdout)}`;
  }
}

const LOOP_TAIL = [0x83, 0xe9, 0x01, 0x75, 0xfa]; // sub $1,%ecx; jnz -6

async function benchExits(env: Env, large: number, small: number, reps: number): Promise<{ rows: ExitRow[]; syncRegsNs?: number }> {
  const rows: ExitRow[] = [
    { label: "out COM1 THR", dir: "out", port: PORT_NATIVE_OUT, path: "native", target: 1.2 },
    { label: "in  COM1 LSR", dir: "in", port: PORT_NATIVE_IN, path: "native", target: 1.2 },
    { label: "out COM1 SCR", dir: "out", port: PORT_TS, path: "TypeScript", target: 1.5 },
    { label: "in  COM1 SCR", dir: "in", port: PORT_TS, path: "TypeScript", target: 1.5 },
  ];
  const cWhy = env.kvm ?? env.gcc ?? (fs.existsSync(path.join(OUT, "exit-loop")) ? null : "exit-loop was not built");
  const syncRegs: number[] = [];

  for (const row of rows) {
    const elf = (n: number) => path.join(OUT, `exits-${row.dir}-${hex(row.port)}-${n}.elf`);
    let tsWhy: string | undefined = env.tsvmm ?? env.gcc ?? undefined;
    if (!tsWhy) {
      const built = make([elf(large), elf(small)]);
      const loop = Buffer.from([row.dir === "out" ? 0xee : 0xec, ...LOOP_TAIL]);
      if (!built.ok) tsWhy = `guest build failed: ${lastLine(built.text)}`;
      else if (fs.readFileSync(elf(large)).indexOf(loop) < 0)
        tsWhy = `built guest does not contain the loop bytes ${loop.toString("hex")}`;
    }

    /** One tsvmm run of the n-exit image: its time, or why it does not count. */
    const tsvmmRun = async (n: number): Promise<number | string> => {
      const r = await runTimed(process.execPath, [TSVMM, "run", "--timeout", "110", elf(n)], 120_000);
      if (r.status !== 0) return `tsvmm run ${path.basename(elf(n))}: ${describeFailure(r)}`;
      // tsvmm's summary says who answered the exits: make sure it is the path this row is about
      const m = /\((\d+) exits: (\d+) handled natively, (\d+) in TypeScript\)/.exec(r.stderr.toString() + r.stdout.toString());
      if (m) {
        const handled = Number(row.path === "native" ? m[2] : m[3]);
        if (handled < n)
          return `expected ${n} exits handled ${row.path === "native" ? "natively" : "in TypeScript"}, tsvmm says: ${m[0]}`;
        if (n === large) row.verified = `${m[1]} exits: ${m[2]} native, ${m[3]} TypeScript`;
      }
      if (row.dir === "out" && row.port === PORT_NATIVE_OUT) {
        const dots = r.stdout.reduce((c, b) => c + (b === 0x2e ? 1 : 0), 0);
        if (dots < n) return `console showed ${dots} of ${n} bytes`;
      }
      return r.ms;
    };

    // Round 0 warms caches and is dropped; then each round runs the C loop once and a tsvmm
    // pair (order alternating), so changes in the machine's load hit both sides alike.
    const cNs: number[] = [];
    const largeMs: number[] = [];
    const smallMs: number[] = [];
    for (let i = 0; i <= reps; i++) {
      if (!cWhy && !row.cSkipped) {
        const c = await cLoop(row.dir, row.port, large, 1);
        if (typeof c === "string") row.cSkipped = c;
        else if (i > 0) cNs.push(c.median_ns);
      }
      if (!tsWhy) {
        const order: Array<[number, number[]]> = i % 2 ? [[small, smallMs], [large, largeMs]] : [[large, largeMs], [small, smallMs]];
        for (const [n, sink] of order) {
          let t = await tsvmmRun(n);
          if (typeof t === "string" && !row.retried) {
            row.retried = t; // one failed run is retried (and reported); a second ends the row
            t = await tsvmmRun(n);
          }
          if (typeof t === "string") {
            tsWhy = t;
            break;
          }
          if (i > 0) sink.push(t);
        }
      }
      if (row === rows[0] && !cWhy && i > 0) {
        const c = await cLoop("out", PORT_NATIVE_OUT, large, 1, true);
        if (typeof c !== "string") syncRegs.push(c.median_ns);
      }
    }
    if (cWhy) row.cSkipped = cWhy;
    else if (!row.cSkipped) row.cNs = median(cNs);
    if (tsWhy) row.tsvmmSkipped = tsWhy;
    else {
      row.tsvmmLargeMs = median(largeMs);
      row.tsvmmSmallMs = median(smallMs);
      row.tsvmmNs = ((row.tsvmmLargeMs - row.tsvmmSmallMs) * 1e6) / (large - small);
      row.tsvmmPairs = largeMs.map((l, i) => ((l - smallMs[i]) * 1e6) / (large - small));
    }
  }
  return { rows, syncRegsNs: syncRegs.length ? median(syncRegs) : undefined };
}

// ---------------------------------------------------------------------------------------------
// 3. conversions, in the nested lab

interface Spread {
  values: number[];
  errors: string[];
}
/** What test/bench/convert-lab.ts reports for one kernel (one lab boot). */
interface LabConvert {
  kernel: string;
  skipped?: string;
  note?: string;
  rounds: number;
  n: number;
  touches: number;
  warm: number;
  sharedBit?: number;
  layout?: { low: string; mem: string; gpa: string };
  backends: Record<
    string,
    {
      skipped?: string;
      tsvmm?: Record<string, Spread>;
      cIoctl?: Record<string, Spread>;
      cHypercall?: Record<string, Spread>;
      perConversion?: Record<string, Record<string, number>>;
      guestTicks?: Array<Record<string, { ns: number; guestTicksMedian: number; guestTicksTotal: number }>>;
      implicit?: Record<string, Spread> & { perConversion?: Record<string, number> };
      implicitGuestTicks?: Array<{ cycleMeanNs: number; guestTicksMedian: number; guestTicksTotal: number }>;
      implicitSkipped?: string;
    }
  >;
}
interface ConvertKernelResult {
  kernel: string;
  command: string;
  skipped?: string;
  seconds?: number;
  lab?: LabConvert;
}

const LAB_STATUS_WHY: Record<number, string> = {
  80: "QEMU is missing",
  81: "Debian's archive is unreachable and no lab kernel is cached",
  82: "kernel build tools are missing",
  83: "the lab kernel build failed",
  84: "the lab initramfs could not be built",
  85: "the lab kernel panicked",
  86: "the lab did not reach the command",
  87: "QEMU ended without a status",
  124: "the lab command ran out of time",
};

/** `tsvmm lab --kernel K -- node convert-lab.js ...`; its progress goes to stderr as it comes. */
function runLab(kernel: string, labArgs: string[], limitMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const t0 = process.hrtime.bigint();
    const args = [TSVMM, "lab", "--kernel", kernel, "--timeout", String(Math.ceil(limitMs / 1000)), "--", process.execPath, CONVERT_LAB, ...labArgs];
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
      for (const l of lines) if (l.trim()) process.stderr.write(`   [lab ${kernel}] ${l}\n`);
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

async function benchConvert(
  env: Env,
  kernels: string[],
  o: { rounds: number; conversions: number; touches: number },
): Promise<ConvertKernelResult[]> {
  const labArgs = ["--rounds", String(o.rounds), "--n", String(o.conversions), "--touches", String(o.touches)];
  const command = (k: string) => `tsvmm lab --kernel ${k} -- node dist/test/bench/convert-lab.js ${labArgs.join(" ")}`;
  let why: string | null = env.qemu ? `the lab needs QEMU: ${env.qemu}` : env.gcc;
  if (!why && !fs.existsSync(CONVERT_LAB)) why = "dist/test/bench/convert-lab.js is missing (run `npm run build`)";
  if (!why && !fs.existsSync(path.join(ROOT, "dist", "vmm", "cli", "main.js"))) why = "tsvmm is not built (run `npm run build`)";
  if (!why) {
    // the lab sees build/ read-only: build the guest and the C loop here, first
    const built = make(["convert"]);
    if (!built.ok) why = `build of convert-loop / convert-bench.elf failed: ${lastLine(built.text)}`;
  }
  const results: ConvertKernelResult[] = [];
  for (const kernel of kernels) {
    const r: ConvertKernelResult = { kernel, command: command(kernel) };
    results.push(r);
    if (why) {
      r.skipped = why;
      continue;
    }
    // a generous limit for the command in the lab: every run is slow under TCG
    const limitMs = 1_800_000;
    const run = await runLab(kernel, labArgs, limitMs);
    r.seconds = run.ms / 1000;
    const line = run.stdout
      .toString()
      .split("\n")
      .find((l) => l.startsWith("CONVERT-LAB-RESULT "));
    if (line) {
      try {
        r.lab = JSON.parse(line.slice("CONVERT-LAB-RESULT ".length)) as LabConvert;
        if (r.lab.skipped) r.skipped = r.lab.skipped;
      } catch {
        r.skipped = `unparsable lab result: ${line.slice(0, 200)}`;
      }
    }
    if (!r.lab && !r.skipped) {
      const labSays = run.stderr
        .toString()
        .split("\n")
        .filter((l) => l.startsWith("tsvmm: "))
        .slice(-1)[0];
      const known = run.status !== null ? LAB_STATUS_WHY[run.status] : undefined;
      const how = run.status !== null && !run.timedOut && !run.error ? `status ${run.status}` : describeFailure(run);
      r.skipped = `the lab did not run (${how}${known ? `, ${known}` : ""})${labSays ? `: ${labSays.replace(/^tsvmm: /, "")}` : ""}`;
    }
  }
  return results;
}

function printConvert(results: ConvertKernelResult[], o: { rounds: number; conversions: number; touches: number }): void {
  const us = (ns: number | undefined) => (ns === undefined || !Number.isFinite(ns) ? "-" : ns >= 100_000 ? fmt(ns / 1000, 0) : fmt(ns / 1000, 1));
  const perS = (ns: number | undefined) => (ns === undefined || !Number.isFinite(ns) ? "-" : fmt(1e9 / ns, 0));
  const ratio = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) ? "-" : fmt(a / b, a / b >= 10 ? 0 : 1) + "x";
  const med = (s: Spread | undefined) => (s && s.values.length ? median(s.values) : undefined);
  const range = (s: Spread | undefined) =>
    s && s.values.length > 1 ? `${us(Math.min(...s.values))}..${us(Math.max(...s.values))}` : s && s.values.length ? us(s.values[0]) : "-";
  const sizeName = (size: string) => (size === "4096" ? "4 KiB" : "2 MiB");

  const first = results.find((r) => r.lab && !r.skipped)?.lab;
  console.log(`\n3. Private-memory conversions in the nested lab (tsvmm lab: QEMU TCG, nested KVM with NPT): tsvmm beside a C program, same lab boot`);
  console.log(
    `   tsvmm: guest build/bench/convert-bench.elf (test/bench/guests/convert-bench.c) run in-process by runGuest; C: build/bench/convert-loop (test/bench/convert-loop.c),` +
      ` the same VM layout and the same ioctls per conversion, its own raw guest`,
  );
  console.log(
    `   per run: ${first?.warm ?? 10} untimed, then ${o.conversions} round trips private -> shared -> private of one range (2 MiB aligned, in the middle of the private RAM,` +
      ` never touched); ${o.rounds} rounds per kernel after a dropped warm-up round, tsvmm and C alternating who goes first`,
  );
  console.log(`   tsvmm: span of the engine's conversion events for the timed conversions / (count - 1) (guest hypercall -> exit -> TypeScript -> ioctls -> re-entry -> next hypercall)`);
  console.log(`   C ioctls: the conversion calls alone in a loop; C hypercalls: a raw guest asks by KVM_HC_MAP_GPA_RANGE and C answers (timed between completed conversions, like tsvmm)`);
  console.log(`   ratios: tsvmm time per conversion / C time per conversion (above 1: tsvmm is slower); µs are medians over the rounds`);
  console.log(
    `   ${pad("kernel", 14)}${pad("backend", 12)}${pad("range", 7)}${lpad("tsvmm µs", 10)}${lpad("conv/s", 8)}${lpad("C ioctl µs", 12)}${lpad("conv/s", 8)}` +
      `${lpad("C hcall µs", 12)}${lpad("conv/s", 8)}${lpad("/ioctl", 8)}${lpad("/hcall", 8)}`,
  );
  for (const r of results) {
    if (r.skipped || !r.lab) {
      console.log(`   ${pad(r.kernel, 14)}skipped: ${r.skipped ?? "no result"}`);
      continue;
    }
    for (const [backend, b] of Object.entries(r.lab.backends)) {
      if (b.skipped) {
        console.log(`   ${pad(r.kernel, 14)}${pad(backend, 12)}skipped: ${b.skipped}`);
        continue;
      }
      for (const size of ["4096", "2097152"]) {
        const t = med(b.tsvmm?.[size]);
        const ci = med(b.cIoctl?.[size]);
        const ch = med(b.cHypercall?.[size]);
        console.log(
          `   ${pad(r.kernel, 14)}${pad(backend, 12)}${pad(sizeName(size), 7)}${lpad(us(t), 10)}${lpad(perS(t), 8)}${lpad(us(ci), 12)}${lpad(perS(ci), 8)}` +
            `${lpad(us(ch), 12)}${lpad(perS(ch), 8)}${lpad(ratio(t, ci), 8)}${lpad(ratio(t, ch), 8)}`,
        );
        const errs = [...(b.tsvmm?.[size]?.errors ?? []).map((e) => `tsvmm: ${e}`), ...(b.cIoctl?.[size]?.errors ?? []).map((e) => `C: ${e}`)];
        if (errs.length) console.log(`      ${errs.length} run(s) failed; the first: ${errs[0]}`);
        // the guest's own rdtsc, with the TSC rate calibrated on the same run's event span
        const guest = (b.guestTicks ?? [])
          .map((g) => g[size])
          .filter((g) => g && g.guestTicksTotal > 0)
          // ticks per ns = ticks of the n timed round trips / (2n conversions x mean ns each); a round trip is 2 conversions
          .map((g) => (g.ns * g.guestTicksMedian * r.lab!.n) / g.guestTicksTotal);
        console.log(
          `      per round µs: tsvmm ${range(b.tsvmm?.[size])}, C ioctl ${range(b.cIoctl?.[size])}, C hcall ${range(b.cHypercall?.[size])}; ` +
            `tsvmm's engine alone ${us(med(b.tsvmm?.[size === "4096" ? "engine4096" : "engine2m"])! * 1000)} µs (median event time)` +
            (guest.length ? `; guest rdtsc median ${us(median(guest))} µs per conversion` : ""),
        );
      }
      const pc = b.perConversion?.["4096"];
      if (pc)
        console.log(
          `      per conversion (C's count, the engine's sequence): ${pc.attribute_ioctls ? `${pc.attribute_ioctls} KVM_SET_MEMORY_ATTRIBUTES, ` : ""}` +
            `${pc.slot_ioctls ? `${pc.slot_ioctls} KVM_SET_USER_MEMORY_REGION2 (a private region split in 3 and merged back), ` : ""}${pc.punches} fallocate punch`,
        );
    }
    if (r.lab.note) console.log(`      note: ${r.lab.note}`);
    console.log(`      lab run: ${fmt(r.seconds ?? NaN, 0)} s in all; RAM layout ${r.lab.layout ? `free_base ${r.lab.layout.low}, RAM end ${r.lab.layout.mem}, range at ${r.lab.layout.gpa}` : "unknown"}`);
  }

  console.log(`\n4. Exit 39 (KVM_EXIT_MEMORY_FAULT) -> the guest running again: implicit conversions in the aliased layout (memslots, --shared-bit)`);
  console.log(
    `   the guest stores 8 bytes to ${o.touches} distinct private pages (after ${first?.warm ?? 10} untimed) through the shared view: each a real exit 39 (released guest_memfd), one page converted to shared, the store retried`,
  );
  console.log(`   cycle: one exit 39 to the next = handling + re-entry + the retried store (fault-in of a fresh page) + the next touch; median over the touches, then over rounds`);
  console.log(`   tsvmm: intervals between the engine's memory-fault conversion events; C: between KVM_RUN returns, and its handling alone (KVM_RUN returns -> KVM_RUN again)`);
  console.log(`   tsvmm handling (derived) = tsvmm cycle - (C cycle - C handling): the guest/kernel part of the cycle is the same in both`);
  console.log(
    `   ${pad("kernel", 14)}${pad("backend", 12)}${lpad("tsvmm cycle", 12)}${lpad("C cycle", 10)}${lpad("ratio", 7)}${lpad("C handling", 12)}${lpad("tsvmm (derived)", 17)}${lpad("ratio", 7)}  µs`,
  );
  for (const r of results) {
    if (r.skipped || !r.lab) {
      console.log(`   ${pad(r.kernel, 14)}skipped: ${r.skipped ?? "no result"}`);
      continue;
    }
    for (const [backend, b] of Object.entries(r.lab.backends)) {
      if (b.skipped || b.implicitSkipped || !b.implicit) {
        console.log(`   ${pad(r.kernel, 14)}${pad(backend, 12)}not measured: ${b.skipped ?? b.implicitSkipped ?? "no result"}`);
        continue;
      }
      const i = b.implicit;
      const tc = med(i.tsvmmCycle);
      const cc = med(i.cCycle);
      const ch = med(i.cHandling);
      const derived = tc !== undefined && cc !== undefined && ch !== undefined ? tc - (cc - ch) : undefined;
      console.log(
        `   ${pad(r.kernel, 14)}${pad(backend, 12)}${lpad(us(tc), 12)}${lpad(us(cc), 10)}${lpad(ratio(tc, cc), 7)}${lpad(us(ch), 12)}${lpad(us(derived), 17)}${lpad(ratio(derived, ch), 7)}`,
      );
      const errs = [...i.tsvmmCycle.errors.map((e) => `tsvmm: ${e}`), ...i.cCycle.errors.map((e) => `C: ${e}`)];
      if (errs.length) console.log(`      ${errs.length} run(s) failed; the first: ${errs[0]}`);
      const guest = (b.implicitGuestTicks ?? [])
        .filter((g) => g.guestTicksTotal > 0)
        .map((g) => (g.cycleMeanNs * g.guestTicksMedian * r.lab!.touches) / g.guestTicksTotal);
      console.log(
        `      per round µs: tsvmm cycle ${range(i.tsvmmCycle)} (mean ${us(med(i.tsvmmCycleMean))}), C cycle ${range(i.cCycle)} (mean ${us(med(i.cCycleMean))}), ` +
          `C handling ${range(i.cHandling)}; tsvmm's engine alone ${us(med(i.tsvmmEngine)! * 1000)} µs` +
          (guest.length ? `; guest rdtsc median per touch ${us(median(guest))} µs` : ""),
      );
      const pc = i.perConversion;
      if (pc)
        console.log(
          `      per conversion (C's count, the engine's sequence): ${pc.slot_ioctls} KVM_SET_USER_MEMORY_REGION2 (both views re-laid), ` +
            `${pc.guest_memfds_created} KVM_CREATE_GUEST_MEMFD (released at once: the dead views), ${pc.punches} fallocate punch; shared bit ${r.lab.sharedBit}`,
        );
    }
  }
  console.log(`   commands:`);
  for (const r of results) console.log(`     ${r.command}`);
  console.log(
    `   not measured: conversions of touched (populated) memory, i.e. the cost of zeroing and freeing pages; several vCPUs (quiesce kicks); the doorbell path;` +
      ` exit 39 on attributes (no aliased layout there); anything outside the lab (this host's KVM keeps no page private)`,
  );
}

// ---------------------------------------------------------------------------------------------
// 5. many guests per process

interface MatrixRow {
  label: string;
  command: string;
  /** VMs (processes, for QEMU and `tsvmm run`) at once */
  jobs: number;
  skipped?: string;
  /** wall time of all the boots, per round */
  totals: number[];
  /** CPU time (user + system, every thread of every process) of all the boots, per round */
  cpu: number[];
  failures: string[];
  /** `tsvmm test` only: each entry's own time (VM set-up, run, tear-down), ms */
  entryMs?: number[];
}

/** CPU time (user + system, ms) of this process's children that have been waited for: Linux adds
 *  each reaped child's time to cutime/cstime (/proc/self/stat fields 16 and 17, in clock ticks). */
function childrenCpuMs(): number {
  const fields = fs.readFileSync("/proc/self/stat", "utf8").replace(/^.*\) /, "").split(" ");
  // after "pid (comm) " the fields start at 3 (state): cutime is field 16, cstime 17
  const ticksPerSecond = 100; // USER_HZ on Linux
  return ((Number(fields[16 - 3]) + Number(fields[17 - 3])) * 1000) / ticksPerSecond;
}

/** `count` runs of one command, `jobs` at a time: the wall time and the CPU time of all of them. */
async function runBatch(
  count: number,
  jobs: number,
  cmd: string,
  args: string[],
  ok: (r: RunResult) => boolean,
): Promise<{ ms: number; cpuMs: number; failures: string[]; results: RunResult[] }> {
  const cpu0 = childrenCpuMs();
  const t0 = process.hrtime.bigint();
  const failures: string[] = [];
  const results: RunResult[] = [];
  let next = 0;
  const worker = async () => {
    for (; next < count; ) {
      next++;
      const r = await runTimed(cmd, args, 120_000);
      results.push(r);
      if (!ok(r)) failures.push(describeFailure(r));
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, cpuMs: childrenCpuMs() - cpu0, failures, results };
}

async function benchMatrix(env: Env, boots: number, jobs: number, rounds: number): Promise<MatrixRow[]> {
  // RAM as QEMU's -m 16M (each VM's RAM is also an external ArrayBuffer, whose growth triggers V8 GCs)
  const testArgs = (j: number) => [TSVMM, "test", "hello", "--mem", "16M", "--repeat", String(boots), "--jobs", String(j)];
  const passed = (r: RunResult) => r.status === 0 && r.stdout.includes(`${boots} entries: ${boots} passed`);
  const lean = QEMU_MACHINES[1];
  type Contender = { row: MatrixRow; run: () => ReturnType<typeof runBatch> };
  const tsvmmRow = (j: number): Contender => ({
    row: { label: `tsvmm test, ${j} VM${j > 1 ? "s" : ""} at a time`, command: `node bin/tsvmm.js ${testArgs(j).slice(1).join(" ")}`, jobs: j, totals: [], cpu: [], failures: [], entryMs: [] },
    run: () => runBatch(1, 1, process.execPath, testArgs(j), passed),
  });
  const qemuRow = (j: number): Contender => ({
    row: { label: `${lean[0]}, ${boots} processes, ${j} at a time`, command: qemuCommand(qemuArgs(lean[1])), jobs: j, totals: [], cpu: [], failures: [] },
    run: () => runBatch(boots, j, QEMU, qemuArgs(lean[1]), qemuOk),
  });
  const runRow: Contender = {
    row: { label: `tsvmm run hello, ${boots} processes, 1 at a time`, command: "node bin/tsvmm.js run hello --mem 16M", jobs: 1, totals: [], cpu: [], failures: [] },
    run: () => runBatch(boots, 1, process.execPath, [TSVMM, "run", "hello", "--mem", "16M"], (r) => r.status === 0),
  };
  // the VMM's own share: the same matrix of a guest that exits as soon as the firmware enters it
  const exitAtOnce = path.join(OUT, "exit-at-once.elf");
  fs.mkdirSync(OUT, { recursive: true });
  fs.writeFileSync(exitAtOnce, buildElf({ entry: 0x100000n, segments: [{ paddr: 0x100000n, data: Buffer.from([0x31, 0xc0, 0xe7, 0xf4, 0xf4]) }] })); // xor eax,eax; out 0xf4,eax; hlt
  const bareArgs = [TSVMM, "test", exitAtOnce, "--mem", "16M", "--repeat", String(boots), "--jobs", String(jobs)];
  const bareRow: Contender = {
    row: { label: `tsvmm test, a guest that exits at once, ${jobs} at a time`, command: `node bin/tsvmm.js ${bareArgs.slice(1).join(" ").replace(exitAtOnce, "build/bench/exit-at-once.elf")}`, jobs, totals: [], cpu: [], failures: [] },
    run: () => runBatch(1, 1, process.execPath, bareArgs, passed),
  };
  const contenders = [tsvmmRow(jobs), ...(jobs > 1 ? [tsvmmRow(1)] : []), qemuRow(1), ...(jobs > 1 ? [qemuRow(jobs)] : []), runRow, bareRow];
  const qemuWhy = env.kvm ?? env.qemu ?? env.gcc ?? (fs.existsSync(QEMU_HELLO) ? null : "qemu-hello.bin was not built");
  for (const c of contenders) {
    if (c.row.label.startsWith("QEMU") && qemuWhy) c.row.skipped = qemuWhy;
    if (c.row.label.startsWith("tsvmm") && env.tsvmm) c.row.skipped = env.tsvmm;
  }
  // one dropped warm-up round, then rounds with the order rotated (load drift hits every row alike)
  const live = contenders.filter((c) => !c.row.skipped);
  for (let i = 0; i <= rounds; i++) {
    for (let k = 0; k < live.length; k++) {
      const c = live[(i + k) % live.length];
      const b = await c.run();
      if (i === 0) continue;
      if (b.failures.length) c.row.failures.push(...b.failures);
      else {
        c.row.totals.push(b.ms);
        c.row.cpu.push(b.cpuMs);
      }
      for (const m of b.results[0]?.stdout.toString().matchAll(/^PASS {2}hello rep=\d+ {2}([\d.]+) s/gm) ?? []) c.row.entryMs?.push(Number(m[1]) * 1000);
    }
  }
  return contenders.map((c) => c.row);
}

function printMatrix(rows: MatrixRow[], boots: number, rounds: number): void {
  console.log(`\n5. Many guests per process: ${boots} boots of hello, whole wall time (spawn of the first process -> exit of the last), median of ${rounds} rounds after a warm-up round, interleaved`);
  console.log(`   tsvmm test boots them in one Node process (${boots} VMs, each its own guest_memfd, vCPU threads, console, time limit); QEMU and tsvmm run start a process per boot; RAM 16 MiB everywhere`);
  console.log(`   wall: median over the rounds; CPU: user + system time of every process and thread of the row (the guest's emulation on an emulating KVM counts as system time)`);
  console.log(`   ${pad("", 52)}${lpad("wall", 10)}${lpad("per boot", 10)}${lpad("min", 10)}${lpad("max", 10)}${lpad("CPU", 10)}${lpad("per boot", 10)}`);
  for (const r of rows) {
    if (r.skipped) {
      console.log(`   ${pad(r.label, 52)}skipped: ${r.skipped}`);
      continue;
    }
    const t = r.totals;
    const fails = r.failures.length ? `  (${r.failures.length} failed: ${r.failures[0]})` : "";
    console.log(
      `   ${pad(r.label, 52)}${lpad(fmt(median(t), 0), 7)} ms${lpad(fmt(median(t) / boots), 7)} ms${lpad(fmt(Math.min(...t), 0), 7)} ms${lpad(fmt(Math.max(...t), 0), 7)} ms` +
        `${lpad(fmt(median(r.cpu), 0), 7)} ms${lpad(fmt(median(r.cpu) / boots), 7)} ms${fails}`,
    );
    if (r.entryMs?.length) console.log(`      each entry inside the process: median ${fmt(median(r.entryMs))} ms, p90 ${fmt(quantile(r.entryMs, 0.9))} ms`);
  }
  const total = (r: MatrixRow | undefined) => (r && !r.skipped && r.totals.length ? median(r.totals) : NaN);
  const inProcess = rows.find((r) => r.label.startsWith("tsvmm test"));
  const cpu = (r: MatrixRow | undefined) => (r && !r.skipped && r.cpu.length ? median(r.cpu) : NaN);
  for (const q of rows.filter((r) => r.label.startsWith("QEMU")))
    if (Number.isFinite(total(inProcess)) && Number.isFinite(total(q)))
      console.log(
        `   ratio ${inProcess!.label} / ${q.label}: wall ${fmt(total(inProcess) / total(q), 2)}x, CPU ${fmt(cpu(inProcess) / cpu(q), 2)}x   (target: wall < 0.33x against QEMU one at a time)`,
      );
  console.log("   commands:");
  for (const r of rows) console.log(`     ${r.command}${r.jobs > 1 && !r.command.includes("--jobs") ? `   (${r.jobs} at a time)` : ""}`);
}

// ---------------------------------------------------------------------------------------------
// report

const nodeRow = (rows: BootRow[]) => rows.find((r) => r.command === "node -e 0");

function printBoot(rows: BootRow[], runs: number, warmup: number): void {
  console.log(`\n1. Boot wall time: whole process, spawn -> exit, ${runs} runs per row after ${warmup} warm-up, interleaved`);
  console.log(`   ${pad("", 26)}${lpad("median", 9)}${lpad("p90", 9)}${lpad("min", 9)}${lpad("max", 9)}  console  runs`);
  for (const r of rows) {
    if (r.skipped) {
      console.log(`   ${pad(r.label, 26)}skipped: ${r.skipped}`);
      continue;
    }
    const t = r.times;
    const fails = r.failures.length ? `  (${r.failures.length} failed: ${r.failures[0]})` : "";
    console.log(
      `   ${pad(r.label, 26)}${lpad(fmt(median(t)), 6)} ms${lpad(fmt(quantile(t, 0.9)), 6)} ms${lpad(fmt(Math.min(...t)), 6)} ms` +
        `${lpad(fmt(Math.max(...t)), 6)} ms${lpad(String(median(r.outputBytes)) + " B", 9)}  ${t.length}${fails}`,
    );
  }
  const ts = rows[0];
  const qemuRows = rows.filter((r) => r.label.startsWith("QEMU") && !r.skipped && r.times.length);
  if (!qemuRows.length) console.log("   ratio tsvmm / QEMU: not available (no QEMU row ran)");
  else if (!ts.skipped && ts.times.length) {
    for (const q of rows.slice(1)) {
      if (q.skipped || !q.times.length || q === nodeRow(rows)) continue;
      console.log(
        `   ratio tsvmm / ${q.label}: median ${fmt(median(ts.times) / median(q.times), 2)}x, ` +
          `p90 ${fmt(quantile(ts.times, 0.9) / quantile(q.times, 0.9), 2)}x   (below 1: tsvmm boots faster)`,
      );
    }
  } else console.log("   ratio tsvmm / QEMU: not available (tsvmm row skipped)");
  const floor = nodeRow(rows);
  const fastestQemu = [...qemuRows].sort((a, b) => median(a.times) - median(b.times))[0];
  if (floor?.times.length && fastestQemu)
    console.log(
      `   floor: node -e 0 / ${fastestQemu.label}: median ${fmt(median(floor.times) / median(fastestQemu.times), 2)}x` +
        (!ts.skipped && ts.times.length ? `; tsvmm spends ${fmt(median(ts.times) - median(floor.times))} ms above bare node` : ""),
    );
  console.log("   commands:");
  for (const r of rows) console.log(`     ${r.command}`);
}

function printExits(result: { rows: ExitRow[]; syncRegsNs?: number }, large: number, small: number, reps: number): void {
  console.log(`\n2. Exit cost: ns per port-I/O exit; the same loop bytes everywhere, [ee|ec] 83 e9 01 75 fa (out|in; sub $1,%ecx; jnz)`);
  console.log(`   C loop: build/bench/exit-loop, a bare KVM_RUN loop (own VM, raw 64-bit loop, no firmware/ELF), timed around ${large} exits, median of ${reps} runs`);
  console.log(`   tsvmm:  tsvmm run build/bench/exits-*.elf (guest test/bench/guests/exits.c), (median ${large}-exit run - median ${small}-exit run) / ${large - small}, ${reps} pairs`);
  console.log(`   each round runs the C loop once and one tsvmm pair, after a dropped warm-up round`);
  console.log(`   ${pad("exit", 13)}${pad("port", 7)}${pad("handled by", 12)}${lpad("C loop", 9)}${lpad("tsvmm", 9)}${lpad("ratio", 8)}  target  tsvmm per-pair range`);
  for (const r of result.rows) {
    const c = r.cNs !== undefined ? fmt(r.cNs, 0) : "-";
    const t = r.tsvmmNs !== undefined ? fmt(r.tsvmmNs, 0) : "-";
    const ratio = r.cNs !== undefined && r.tsvmmNs !== undefined ? fmt(r.tsvmmNs / r.cNs, 2) + "x" : "-";
    const range = r.tsvmmPairs?.length ? `${fmt(Math.min(...r.tsvmmPairs), 0)}..${fmt(Math.max(...r.tsvmmPairs), 0)} ns` : "";
    console.log(
      `   ${pad(r.label, 13)}${pad(hex(r.port), 7)}${pad(r.path, 12)}${lpad(c, 9)}${lpad(t, 9)}${lpad(ratio, 8)}  <=${r.target}x   ${range}`,
    );
    if (r.cSkipped) console.log(`      C loop skipped: ${r.cSkipped}`);
    if (r.tsvmmSkipped) console.log(`      tsvmm skipped: ${r.tsvmmSkipped}`);
    else if (!r.verified) console.log(`      (tsvmm printed no exit summary: which path handled the exits is not verified)`);
    else console.log(`      tsvmm's count for the ${large}-exit run: ${r.verified}`);
    if (r.retried) console.log(`      one tsvmm run failed and was retried: ${r.retried}`);
  }
  const byPath = (p: ExitRow["path"]) => result.rows.filter((r) => r.path === p && r.cNs !== undefined && r.tsvmmNs !== undefined);
  for (const p of ["native", "TypeScript"] as const) {
    const rs = byPath(p);
    if (!rs.length) continue;
    const ratios = rs.map((r) => `${r.dir} ${fmt(r.tsvmmNs! / r.cNs!, 2)}x`);
    console.log(`   ratio ${p}/C: ${ratios.join(", ")}   (target <= ${rs[0].target}x)`);
  }
  if (result.syncRegsNs !== undefined)
    console.log(`   for reference, the C loop with KVM_CAP_SYNC_REGS (regs|sregs|events, as tsvmm's loop): out ${fmt(result.syncRegsNs, 0)} ns/exit`);
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: "string" },
      warmup: { type: "string" },
      exits: { type: "string" },
      small: { type: "string" },
      reps: { type: "string" },
      conversions: { type: "string" },
      touches: { type: "string" },
      "lab-rounds": { type: "string" },
      "lab-kernels": { type: "string" },
      boots: { type: "string" },
      jobs: { type: "string" },
      "matrix-rounds": { type: "string" },
      only: { type: "string" },
      quick: { type: "boolean" },
      json: { type: "string" },
    },
  });
  const int = (v: string | undefined, d: number) => {
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`bench: not a count: ${v}`);
    return n;
  };
  const quick = values.quick ?? false;
  const runs = Math.max(1, int(values.runs, quick ? 10 : 20));
  const warmup = int(values.warmup, 2);
  const large = int(values.exits, quick ? 20000 : 100000);
  const small = int(values.small, 1000);
  const reps = Math.max(1, int(values.reps, quick ? 3 : 5));
  if (large <= small) throw new Error("bench: --exits must be larger than --small");
  const conversions = Math.max(2, int(values.conversions, quick ? 20 : 50));
  const touches = Math.max(2, int(values.touches, quick ? 40 : 100));
  const labRounds = Math.max(1, int(values["lab-rounds"], quick ? 2 : 3));
  const labKernels = (values["lab-kernels"] ?? "sw-protected,stock").split(",").filter(Boolean);
  for (const k of labKernels) if (k !== "sw-protected" && k !== "stock") throw new Error(`bench: --lab-kernels takes sw-protected and stock, not ${k}`);
  const only = values.only;
  if (only && only !== "boot" && only !== "exits" && only !== "convert" && only !== "matrix") throw new Error("bench: --only boot|exits|convert|matrix");
  const boots = Math.max(1, int(values.boots, 40));
  const jobs = Math.max(1, int(values.jobs, os.availableParallelism()));
  const matrixRounds = Math.max(1, int(values["matrix-rounds"], quick ? 1 : 3));

  const started = Date.now();
  const env = await probeEnv();
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  console.log(`tsvmm bench, ${new Date().toISOString()}`);
  console.log(
    `host: ${os.release()}, KVM module ${env.hostModule}, ${os.cpus().length} CPUs (${cpu}), ` +
      `load ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}, node ${process.version}` +
      (env.qemuVersion ? `, QEMU ${env.qemuVersion}` : ""),
  );
  if (env.hostModule === "kvm_pvm")
    console.log("note: kvm_pvm emulates every guest instruction; absolute numbers are this host's, compare ratios");
  for (const [what, why] of [["KVM", env.kvm], ["build tools", env.gcc], ["QEMU", env.qemu], ["tsvmm", env.tsvmm]] as const)
    if (why) console.log(`missing ${what}: ${why}`);

  if (!env.gcc) {
    const built = make(["all"]);
    if (!built.ok) {
      console.log(`build of the baselines failed:\n${built.text}`);
      env.gcc = `build failed: ${lastLine(built.text)}`;
    }
  }

  const results: Record<string, unknown> = { env, runs, warmup, large, small, reps, conversions, touches, labRounds, labKernels };
  if (!only || only === "boot") {
    const boot = await benchBoot(env, runs, warmup);
    printBoot(boot, runs, warmup);
    results.boot = boot;
  }
  if (!only || only === "exits") {
    const exits = await benchExits(env, large, small, reps);
    printExits(exits, large, small, reps);
    results.exits = exits;
  }
  if (!only || only === "convert") {
    const o = { rounds: labRounds, conversions, touches };
    const convert = await benchConvert(env, labKernels, o);
    printConvert(convert, o);
    results.convert = convert;
  }
  if (!only || only === "matrix") {
    const matrix = await benchMatrix(env, boots, jobs, matrixRounds);
    printMatrix(matrix, boots, matrixRounds);
    results.matrix = matrix;
  }
  console.log(`\nload average at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}; bench took ${fmt((Date.now() - started) / 1000, 0)} s`);
  if (values.json) fs.writeFileSync(values.json, JSON.stringify(results, null, 2) + "\n");
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(1);
});
