// The lab side of `npm run bench`'s Linux section: run inside the nested lab by
//   tsvmm lab --kernel sw-protected --cpus 1 -- node dist/test/bench/linux-lab.js [--rounds R]
// (linux.ts does that; one CPU because the two-CPU lab deadlocks Linux guests now and then, under
// QEMU as under tsvmm: docs/exit-path.md). The Linux test guest (test/support/linuxGuest.ts) is
// booted R times by `tsvmm run --kernel` and R times by QEMU (-accel kvm, -M pc), alternating
// who goes first; each run is timed from spawn to the init's first line and to the process's end
// (the guest powers off: QEMU through ACPI, tsvmm on the halt after Linux's power-off line). Nothing passes or fails on time. Progress goes to
// stderr; the result is one stdout line "LINUX-LAB-RESULT <json>".
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { describeFailure, fmt, QEMU, runTimed, TimedProcess, TSVMM } from "./common";
import { INIT_MARK, LINUX_GUEST_APPEND as APPEND, linuxGuestFiles } from "../support/linuxGuest";

/** Per run; tsvmm's own --timeout is a minute shorter, so that it reports where the guest was */
const LIMIT_MS = 300_000;

export interface LinuxLabRow {
  command: string;
  /** ms from spawn to the init's first line, and to the process's end, per good run */
  init: number[];
  end: number[];
  errors: string[];
}
export interface LinuxLab {
  skipped?: string;
  rounds: number;
  qemuMachine: string;
  tsvmm: LinuxLabRow;
  qemu: LinuxLabRow;
}

const log = (s: string) => process.stderr.write(`linux-lab: ${s}\n`);

async function main(): Promise<void> {
  // --first-round K: number the rounds from K, so that one-round labs in turn start with QEMU (the first boot in a lab is the coldest)
  const { values } = parseArgs({ options: { rounds: { type: "string" }, "first-round": { type: "string" } } });
  const rounds = Math.max(1, Number(values.rounds ?? 3) || 3);
  const firstRound = Number(values["first-round"] ?? 0) || 0;
  // pc: microvm (7.2) did not end on the guest's `reboot -f` within 120 s in the lab; pc powers off through ACPI
  const qemuMachine = "pc";
  const result: LinuxLab = {
    rounds,
    qemuMachine,
    tsvmm: { command: "", init: [], end: [], errors: [] },
    qemu: { command: "", init: [], end: [], errors: [] },
  };
  const files = linuxGuestFiles();
  if ("missing" in files) {
    result.skipped = files.missing;
    process.stdout.write(`LINUX-LAB-RESULT ${JSON.stringify(result)}\n`);
    return;
  }
  const tsvmmArgs = [TSVMM, "run", "--kernel", files.kernel, "--initrd", files.initrd, "--append", APPEND, "--mem", "256M", "--timeout", String(LIMIT_MS / 1000 - 60)];
  // XSAVE hidden as tsvmm hides it here (the lab's KVM reports inconsistent XSAVE sizes)
  const qemuArgs = [
    "-accel", "kvm", "-machine", qemuMachine, "-cpu", "host,-xsave", "-smp", "1", "-m", "256M",
    "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
    "-kernel", files.kernel, "-initrd", files.initrd, "-append", APPEND,
  ];
  const shown = (cmd: string, args: string[]) => [cmd, ...args].join(" ").replace(files.initrd, "guest.cpio").replace(files.kernel, "bzImage");
  result.tsvmm.command = shown("tsvmm", tsvmmArgs.slice(1));
  result.qemu.command = shown(QEMU, qemuArgs);
  const contenders: Array<[LinuxLabRow, () => Promise<TimedProcess>, (r: TimedProcess) => boolean]> = [
    [result.tsvmm, () => runTimed(process.execPath, tsvmmArgs, LIMIT_MS, INIT_MARK), (r) => r.status === 0],
    [result.qemu, () => runTimed(QEMU, qemuArgs, LIMIT_MS, INIT_MARK), (r) => r.status === 0],
  ];
  for (let round = 0; round < rounds; round++) {
    const order = (firstRound + round) % 2 ? [...contenders].reverse() : contenders;
    for (const [row, run, ok] of order) {
      const r = await run();
      const good = ok(r) && r.markMs !== undefined && r.stdout.includes("TSVMM-GUEST done");
      if (good) {
        row.init.push(r.markMs!);
        row.end.push(r.ms);
      } else row.errors.push(describeFailure(r));
      log(`round ${round + 1}: ${row === result.tsvmm ? "tsvmm" : "QEMU"} ${good ? `init ${fmt(r.markMs! / 1000, 2)} s, end ${fmt(r.ms / 1000, 2)} s` : `failed: ${describeFailure(r)}`}`);
    }
  }
  fs.rmSync(path.dirname(files.initrd), { recursive: true, force: true });
  process.stdout.write(`LINUX-LAB-RESULT ${JSON.stringify(result)}\n`);
}

main().catch((e: Error) => {
  process.stderr.write(`linux-lab: ${e.stack ?? e.message}\n`);
  process.exit(1);
});
