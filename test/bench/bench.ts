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
// A benchmark, not a test: missing pieces (QEMU, /dev/kvm, an unbuilt tsvmm) skip their rows with
// the reason, and nothing passes or fails on time. Every child has a time limit.
//
// Options (after `npm run bench --`): --runs N (boot runs per row, default 20), --warmup N (2),
// --exits N (large-N exit count, 100000), --small N (small-N, 1000), --reps N (5),
// --only boot|exits, --quick (runs 10, exits 20000, reps 3), --json FILE (results as JSON).
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";

const ROOT = path.resolve(__dirname, "..", "..", "..");
const OUT = path.join(ROOT, "build", "bench");
const BENCH_SRC = path.join(ROOT, "test", "bench");
const TSVMM = path.join(ROOT, "bin", "tsvmm.js");
const QEMU = "qemu-system-x86_64";

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

async function benchBoot(env: Env, runs: number, warmup: number): Promise<BootRow[]> {
  const image = path.join(OUT, "qemu-hello.bin");
  const qemuArgs = (machine: string) => [
    "-accel", "kvm", "-machine", machine, "-m", "16M", "-bios", image,
    "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none", "-serial", "stdio",
    "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
  ];
  const machines: Array<[string, string]> = [
    ["QEMU microvm (defaults)", "microvm"],
    ["QEMU microvm (lean)", "microvm,x-option-roms=off,pit=off,pic=off,rtc=off,acpi=off"],
  ];
  // isa-debug-exit turns our 0 into status (0 << 1) | 1 = 1
  const qemuOk = (r: RunResult) => r.status === 1 && r.stdout.includes("ok 3 - ");

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
    const row: BootRow = { label, command: `${QEMU} ${args.join(" ").replace(image, "build/bench/qemu-hello.bin")}`, times: [], failures: [], outputBytes: [] };
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
    { label: "out COM1 SCR", dir: "out", port: PORT_TS, path: "TypeScript", target: 3 },
    { label: "in  COM1 SCR", dir: "in", port: PORT_TS, path: "TypeScript", target: 3 },
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
  const only = values.only;
  if (only && only !== "boot" && only !== "exits") throw new Error("bench: --only boot|exits");

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

  const results: Record<string, unknown> = { env, runs, warmup, large, small, reps };
  if (only !== "exits") {
    const boot = await benchBoot(env, runs, warmup);
    printBoot(boot, runs, warmup);
    results.boot = boot;
  }
  if (only !== "boot") {
    const exits = await benchExits(env, large, small, reps);
    printExits(exits, large, small, reps);
    results.exits = exits;
  }
  console.log(`\nload average at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}; bench took ${fmt((Date.now() - started) / 1000, 0)} s`);
  if (values.json) fs.writeFileSync(values.json, JSON.stringify(results, null, 2) + "\n");
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(1);
});
