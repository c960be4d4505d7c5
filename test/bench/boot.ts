// Section 1 of `npm run bench`: boot wall time (see bench.ts).
import * as fs from "node:fs";
import { describeFailure, Env, failedNote, fmt, lpad, median, pad, QEMU, QEMU_HELLO, QEMU_MACHINES, qemuArgs, qemuCommand, qemuOk, quantile, runTimed, TimedProcess, TSVMM } from "./common";

/** The target for `tsvmm run hello` against `node -e 0` (issue 8, docs/startup.md) */
const TARGET_RATIO = 1.3;
/** The least a run does with a worker thread per vCPU: boot Node, start one worker, load the addon
 *  in it (run from the checkout, as every row is) */
const WORKER_FLOOR = `new (require("node:worker_threads").Worker)("require('./build/native/Release/tsvmm.node')", { eval: true })`;

export interface BootRow {
  label: string;
  command: string;
  skipped?: string;
  times: number[];
  failures: string[];
  outputBytes: number[];
  /** tsvmm only: the guest's own run as tsvmm reports it ("after N s": from starting the vCPUs,
   *  which includes waiting for a worker that is not up yet, to the guest's exit), ms */
  guestMs?: number[];
}

interface Contender {
  row: BootRow;
  cmd: string;
  args: string[];
  ok: (r: TimedProcess) => boolean;
}

export async function benchBoot(env: Env, runs: number, warmup: number): Promise<BootRow[]> {
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
    guestMs: [],
  };
  rows.push(tsRow);
  if (env.tsvmm) tsRow.skipped = env.tsvmm;
  else contenders.push({ row: tsRow, cmd: process.execPath, args: [TSVMM, "run", "hello"], ok: (r) => r.status === 0 });

  // not a contender: the floor under any VMM started as a Node process
  const nodeRow: BootRow = { label: "node -e 0 (reference)", command: "node -e 0", times: [], failures: [], outputBytes: [] };
  rows.push(nodeRow);
  contenders.push({ row: nodeRow, cmd: process.execPath, args: ["-e", "0"], ok: (r) => r.status === 0 });
  // not a contender either: the floor under tsvmm's design (a worker thread per vCPU)
  const workerRow: BootRow = { label: "node + vCPU worker (floor)", command: `node -e '${WORKER_FLOOR}'`, times: [], failures: [], outputBytes: [] };
  rows.push(workerRow);
  if (env.tsvmm) workerRow.skipped = env.tsvmm;
  else contenders.push({ row: workerRow, cmd: process.execPath, args: ["-e", WORKER_FLOOR], ok: (r) => r.status === 0 });

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
        const guest = / after (\d+(?:\.\d+)?) s /.exec(r.stderr.toString());
        if (c.row.guestMs && guest) c.row.guestMs.push(Number(guest[1]) * 1000);
      } else c.row.failures.push(describeFailure(r));
    }
  }
  return rows;
}


const nodeRow = (rows: BootRow[]) => rows.find((r) => r.command === "node -e 0");
const ran = (r: BootRow | undefined): r is BootRow => !!r && !r.skipped && r.times.length > 0;

export function printBoot(rows: BootRow[], runs: number, warmup: number): void {
  console.log(`\n1. Boot wall time: whole process, spawn -> exit, ${runs} runs per row after ${warmup} warm-up, interleaved`);
  console.log(`   ${pad("", 26)}${lpad("median", 9)}${lpad("p90", 9)}${lpad("min", 9)}${lpad("max", 9)}  console  runs`);
  for (const r of rows) {
    if (r.skipped) {
      console.log(`   ${pad(r.label, 26)}skipped: ${r.skipped}`);
      continue;
    }
    const t = r.times;
    const fails = failedNote(r.failures);
    console.log(
      `   ${pad(r.label, 26)}${lpad(fmt(median(t)), 6)} ms${lpad(fmt(quantile(t, 0.9)), 6)} ms${lpad(fmt(Math.min(...t)), 6)} ms` +
        `${lpad(fmt(Math.max(...t)), 6)} ms${lpad(String(median(r.outputBytes)) + " B", 9)}  ${t.length}${fails}`,
    );
  }
  const ts = rows[0];
  const floor = nodeRow(rows);
  const worker = rows.find((r) => r.label.startsWith("node + vCPU worker"));
  if (ran(ts) && ran(floor)) {
    const ratio = median(ts.times) / median(floor.times);
    console.log(
      `   ratio tsvmm / node -e 0: median ${fmt(ratio, 2)}x, p90 ${fmt(quantile(ts.times, 0.9) / quantile(floor.times, 0.9), 2)}x` +
        `   (target <= ${TARGET_RATIO}x: ${ratio <= TARGET_RATIO ? "met" : "not met"})`,
    );
    if (ran(worker)) console.log(`   floor of a worker per vCPU / node -e 0: median ${fmt(median(worker.times) / median(floor.times), 2)}x`);
    if (ts.guestMs?.length) console.log(`   the guest itself (tsvmm's "after N s": vCPUs started -> guest exit): median ${fmt(median(ts.guestMs))} ms`);
  }
  const qemuRows = rows.filter((r) => r.label.startsWith("QEMU") && !r.skipped && r.times.length);
  if (!qemuRows.length) console.log("   ratio tsvmm / QEMU: not available (no QEMU row ran)");
  else if (!ts.skipped && ts.times.length) {
    for (const q of rows.slice(1)) {
      if (q.skipped || !q.times.length || !q.label.startsWith("QEMU")) continue;
      console.log(
        `   ratio tsvmm / ${q.label}: median ${fmt(median(ts.times) / median(q.times), 2)}x, ` +
          `p90 ${fmt(quantile(ts.times, 0.9) / quantile(q.times, 0.9), 2)}x   (below 1: tsvmm boots faster)`,
      );
    }
  } else console.log("   ratio tsvmm / QEMU: not available (tsvmm row skipped)");
  const fastestQemu = [...qemuRows].sort((a, b) => median(a.times) - median(b.times))[0];
  if (floor?.times.length && fastestQemu)
    console.log(
      `   floor: node -e 0 / ${fastestQemu.label}: median ${fmt(median(floor.times) / median(fastestQemu.times), 2)}x` +
        (!ts.skipped && ts.times.length ? `; tsvmm spends ${fmt(median(ts.times) - median(floor.times))} ms above bare node` : ""),
    );
  console.log("   commands:");
  for (const r of rows) console.log(`     ${r.command}`);
}

