// Section 2 of `npm run bench`: exit cost (see bench.ts).
import * as fs from "node:fs";
import * as path from "node:path";
import { describeFailure, Env, fmt, hex, lastLine, lpad, make, median, OUT, pad, runTimed, TSVMM } from "./common";


// The ports of the exit benchmark. The native ones are the console fast path of the VMM
// (FastPorts in vmm/native.ts: consoleOut = COM1 THR, reads = the UART's LSR); the TypeScript one
// is a UART register no fast path answers (the 16550 scratch register), so every access is an
// event handled by the TypeScript device model.
const COM1 = 0x3f8;
const PORT_NATIVE_OUT = COM1; // THR: console bytes
const PORT_NATIVE_IN = COM1 + 5; // LSR
const PORT_TS = COM1 + 7; // SCR

export interface ExitRow {
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

export async function benchExits(env: Env, large: number, small: number, reps: number): Promise<{ rows: ExitRow[]; syncRegsNs?: number }> {
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


export function printExits(result: { rows: ExitRow[]; syncRegsNs?: number }, large: number, small: number, reps: number): void {
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

