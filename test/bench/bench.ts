// `npm run bench`: tsvmm against baselines run in the same process tree, side by side.
//
//  1. Boot wall time: the whole process time (spawn -> exit, measured here) of
//     `node bin/tsvmm.js run hello` against QEMU microvm booting test/bench/qemu-hello.S, a flat
//     -bios image that prints a text as long as hello's on COM1 (polling LSR, one `out` per byte, like
//     the tsvmm guests) and exits through isa-debug-exit, and beside `node -e 0` (the target:
//     tsvmm within 1.3x of it) and the floor of tsvmm's design (Node, one worker thread loading
//     the addon; docs/startup.md). Runs are interleaved so drift in the machine's load hits every
//     row alike.
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
//     same ioctls, in the same lab boot (the lab side is test/bench/convert-lab.ts). Also:
//     conversions of touched (populated) memory, 2 and 4 vCPUs converting at once (both with C
//     baselines), and the guest's first touch of a converted range without and with --prefault.
//
//  5. Many guests per process: the wall time of N boots of hello by one `tsvmm test hello
//     --repeat N` process (several VMs at once) against N QEMU microvm processes (one at a time,
//     and as many at once as tsvmm runs VMs) and N `tsvmm run hello` processes.
//
//  6. Linux in the nested lab (a lab with one CPU): the lab's kernel with a busybox initramfs booted
//     by `tsvmm run --kernel` and by QEMU (-accel kvm, -M pc) in the same lab boot, time from spawn
//     to the init's first line and to the process's end, as a ratio (the lab side is linux-lab.ts).
//
// A benchmark, not a test: missing pieces (QEMU, /dev/kvm, an unbuilt tsvmm) skip their rows with
// the reason, and nothing passes or fails on time. Every child has a time limit.
//
// Options (after `npm run bench --`): --runs N (boot runs per row, default 20), --warmup N (2),
// --exits N (large-N exit count, 100000), --small N (small-N, 1000), --reps N (5),
// --conversions N (round trips per range size per run, 50), --touches N (implicit conversions per
// run, 100), --lab-rounds N (3, also the Linux boots per VMM of section 6), --lab-kernels sw-protected,stock,
// --boots N (boots per row of section 5, 40), --jobs N (VMs at once in section 5, this machine's CPUs),
// --matrix-rounds N (3), --only boot|exits|convert|matrix|linux, --quick (runs 10, exits 20000, reps 3,
// conversions 20, touches 40, lab rounds 2, matrix rounds 1), --json FILE (results as JSON).
//
// This file is the driver (options, the host line, the order of the sections); common.ts holds
// what the sections share, and each section has its own file: boot.ts, exits.ts, convert.ts
// (sections 3 and 4, with convert-lab.ts inside the lab), matrix.ts and linux.ts (with linux-lab.ts).
import * as fs from "node:fs";
import * as os from "node:os";
import { parseArgs } from "node:util";
import { benchBoot, printBoot } from "./boot";
import { fmt, lastLine, make, probeEnv } from "./common";
import { benchConvert, printConvert } from "./convert";
import { benchExits, printExits } from "./exits";
import { benchLinux, printLinux } from "./linux";
import { benchMatrix, printMatrix } from "./matrix";

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
  if (only && !["boot", "exits", "convert", "matrix", "linux"].includes(only)) throw new Error("bench: --only boot|exits|convert|matrix|linux");
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
  if (!only || only === "linux") {
    const linux = await benchLinux(env, labRounds);
    printLinux(linux);
    results.linux = linux;
  }
  console.log(`\nload average at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}; bench took ${fmt((Date.now() - started) / 1000, 0)} s`);
  if (values.json) fs.writeFileSync(values.json, JSON.stringify(results, null, 2) + "\n");
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(1);
});
