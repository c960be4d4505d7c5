// Section 6 of `npm run bench`: a Linux boot in the nested lab, tsvmm beside QEMU in the same lab
// boot (see bench.ts; the lab side is linux-lab.ts).
import * as fs from "node:fs";
import { Env, fmt, labResult, LINUX_LAB, lpad, median, pad, runLab } from "./common";
import type { LinuxLab, LinuxLabRow } from "./linux-lab";

export interface LinuxResult {
  command: string;
  skipped?: string;
  seconds?: number;
  lab?: LinuxLab;
  /** labs that froze (tsvmm lab's status 89) and were run again */
  frozen?: number;
}

/** tsvmm lab's status when its lab froze (vmm/lab/errors.ts) */
const LAB_FROZEN = 89;
/** A round whose lab froze runs again this many times at most */
const FROZEN_RERUNS = 2;

export async function benchLinux(env: Env, rounds: number): Promise<LinuxResult> {
  const labOptions = ["--kernel", "sw-protected", "--cpus", "1"];
  const args = ["--rounds", "1"];
  const r: LinuxResult = { command: `tsvmm lab ${labOptions.join(" ")} -- node dist/test/bench/linux-lab.js ${args.join(" ")}  (${rounds} times, one lab per round)`, frozen: 0 };
  if (env.qemu) r.skipped = `the lab needs QEMU: ${env.qemu}`;
  else if (!fs.existsSync(LINUX_LAB)) r.skipped = "dist/test/bench/linux-lab.js is missing (run `npm run build`)";
  if (r.skipped) return r;
  // One lab per round: a one-CPU lab now and then freezes below tsvmm (docs/exit-path.md), more
  // often the more guests it has booted; a round whose lab froze runs again.
  r.seconds = 0;
  for (let round = 0; round < rounds; round++) {
    let one: { lab?: LinuxLab; skipped?: string } = {};
    for (let attempt = 0; attempt <= FROZEN_RERUNS; attempt++) {
      const run = await runLab(labOptions, LINUX_LAB, [...args, "--first-round", String(round)], 900_000, "linux");
      r.seconds += run.ms / 1000;
      one = labResult<LinuxLab>(run, "LINUX-LAB-RESULT");
      if (run.status !== LAB_FROZEN) break;
      r.frozen!++;
    }
    if (!one.lab || one.skipped) return { ...r, lab: undefined, skipped: one.skipped ?? "no result" };
    if (!r.lab) r.lab = one.lab;
    else {
      r.lab.rounds += one.lab.rounds;
      for (const k of ["tsvmm", "qemu"] as const) {
        r.lab[k].init.push(...one.lab[k].init);
        r.lab[k].end.push(...one.lab[k].end);
        r.lab[k].errors.push(...one.lab[k].errors);
      }
    }
  }
  return r;
}

export function printLinux(r: LinuxResult): void {
  console.log(`\n6. Linux in the nested lab (tsvmm lab, one CPU): the lab's kernel with a busybox initramfs, 256 MiB, 1 vCPU, tsvmm beside QEMU in the same lab boot`);
  console.log(`   ${r.command}`);
  if (r.skipped || !r.lab) {
    console.log(`   skipped: ${r.skipped ?? "no result"}`);
    return;
  }
  const lab = r.lab;
  console.log(`   tsvmm: ${lab.tsvmm.command}`);
  console.log(`   QEMU:  ${lab.qemu.command}`);
  console.log(`   from spawn to the init's first line ("init") and to the process's end after the guest's poweroff -f ("end"); medians of ${lab.rounds} runs each, alternating`);
  console.log(`   ${pad("", 8)}${lpad("init s", 9)}${lpad("end s", 9)}${lpad("good", 6)}`);
  const s = (row: LinuxLabRow, k: "init" | "end") => (row[k].length ? median(row[k]) / 1000 : NaN);
  for (const [name, row] of [["tsvmm", lab.tsvmm], ["QEMU", lab.qemu]] as const) {
    const failed = row.errors.length ? `  (${row.errors.length} failed: ${row.errors[0]})` : "";
    console.log(`   ${pad(name, 8)}${lpad(fmt(s(row, "init"), 2), 9)}${lpad(fmt(s(row, "end"), 2), 9)}${lpad(`${row.init.length}/${lab.rounds}`, 6)}${failed}`);
  }
  const ratio = (k: "init" | "end") => fmt(s(lab.tsvmm, k) / s(lab.qemu, k), 2);
  console.log(`   tsvmm / QEMU: init ${ratio("init")}x, end ${ratio("end")}x (below 1: tsvmm is faster)`);
  if (r.frozen) console.log(`   labs that froze (status 89, below tsvmm) and ran again: ${r.frozen}`);
}
