// Section 5 of `npm run bench`: many guests per process (see bench.ts).
import * as fs from "node:fs";
import * as path from "node:path";
import { buildElf } from "../support/elfBuilder";
import { procStatFields } from "../../vmm/lab/proc";
import { describeFailure, Env, failedNote, fmt, lpad, median, OUT, pad, QEMU, QEMU_HELLO, QEMU_MACHINES, qemuArgs, qemuCommand, qemuOk, quantile, runTimed, TimedProcess, TSVMM } from "./common";

export interface MatrixRow {
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
  const [cutime, cstime] = procStatFields("self", 16, 17)!;
  const ticksPerSecond = 100; // USER_HZ on Linux
  return ((cutime + cstime) * 1000) / ticksPerSecond;
}

/** `count` runs of one command, `jobs` at a time: the wall time and the CPU time of all of them. */
async function runBatch(
  count: number,
  jobs: number,
  cmd: string,
  args: string[],
  ok: (r: TimedProcess) => boolean,
): Promise<{ ms: number; cpuMs: number; failures: string[]; results: TimedProcess[] }> {
  const cpu0 = childrenCpuMs();
  const t0 = process.hrtime.bigint();
  const failures: string[] = [];
  const results: TimedProcess[] = [];
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

export async function benchMatrix(env: Env, boots: number, jobs: number, rounds: number): Promise<MatrixRow[]> {
  // RAM as QEMU's -m 16M (each VM's RAM is also an external ArrayBuffer, whose growth triggers V8 GCs)
  const testArgs = (j: number) => [TSVMM, "test", "hello", "--mem", "16M", "--repeat", String(boots), "--jobs", String(j)];
  const passed = (r: TimedProcess) => r.status === 0 && r.stdout.includes(`${boots} entries: ${boots} passed`);
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
  // the guest's share: QEMU's image's work (450 bytes, LSR polled before each `out`) as a flat loop,
  // against hello's ~22 000 instructions that this KVM emulates one by one
  const flatLoop = path.join(OUT, "flat-print.elf");
  fs.writeFileSync(flatLoop, buildElf({ entry: 0x100000n, segments: [{ paddr: 0x100000n, data: flatPrintLoop(0x100000, 450) }] }));
  const flatArgs = [TSVMM, "test", flatLoop, "--mem", "16M", "--repeat", String(boots), "--jobs", String(jobs)];
  const flatRow: Contender = {
    row: { label: `tsvmm test, QEMU's image's work, ${jobs} at a time`, command: `node bin/tsvmm.js ${flatArgs.slice(1).join(" ").replace(flatLoop, "build/bench/flat-print.elf")}`, jobs, totals: [], cpu: [], failures: [] },
    run: () => runBatch(1, 1, process.execPath, flatArgs, passed),
  };
  const contenders = [tsvmmRow(jobs), ...(jobs > 1 ? [tsvmmRow(1)] : []), qemuRow(1), ...(jobs > 1 ? [qemuRow(jobs)] : []), runRow, bareRow, flatRow];
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

/** x86 code at `base` printing `length` bytes of text on COM1 as qemu-hello.S does, then writing 0 to the exit port */
function flatPrintLoop(base: number, length: number): Buffer {
  // mov esi,text; 1: mov dx,0x3fd; in al,dx; test al,0x20; jz 1b; lodsb; test al,al; jz 2f;
  // mov dx,0x3f8; out dx,al; jmp 1b; 2: xor eax,eax; out 0xf4,eax; hlt
  const code = Buffer.from([0xbe, 0, 0, 0, 0, 0x66, 0xba, 0xfd, 0x03, 0xec, 0xa8, 0x20, 0x74, 0xf7, 0xac, 0x84, 0xc0, 0x74, 0x07, 0x66, 0xba, 0xf8, 0x03, 0xee, 0xeb, 0xeb, 0x31, 0xc0, 0xe7, 0xf4, 0xf4, 0x90]);
  code.writeUInt32LE(base + code.length, 1);
  const line = "flat loop: the work of QEMU's image, one polled `out` per byte\r\n";
  const text = line.repeat(Math.ceil(length / line.length)).slice(0, length - 2) + "\r\n";
  return Buffer.concat([code, Buffer.from(text + "\0")]);
}

export function printMatrix(rows: MatrixRow[], boots: number, rounds: number): void {
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
    const fails = failedNote(r.failures);
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
  const flat = rows.find((r) => r.label.includes("QEMU's image's work"));
  const qemuOne = rows.find((r) => r.label.startsWith("QEMU") && r.jobs === 1);
  if (Number.isFinite(total(flat)) && Number.isFinite(total(qemuOne)))
    console.log(`   ratio ${flat!.label} / ${qemuOne!.label}: wall ${fmt(total(flat) / total(qemuOne), 2)}x, CPU ${fmt(cpu(flat) / cpu(qemuOne), 2)}x   (the same guest work on both sides)`);
  console.log("   commands:");
  for (const r of rows) console.log(`     ${r.command}${r.jobs > 1 && !r.command.includes("--jobs") ? `   (${r.jobs} at a time)` : ""}`);
}

