// Sections 3 and 4 of `npm run bench`: private-memory conversions in the nested lab (see bench.ts;
// the lab side is convert-lab.ts).
import * as fs from "node:fs";
import * as path from "node:path";
import { CONVERT_LAB, Env, fmt, labResult, lastLine, lpad, make, median, pad, ROOT, runLab } from "./common";

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
      tsvmmTouched?: Record<string, Spread>;
      tsvmmSmp?: Record<string, Spread>;
      cSmp?: Record<string, Spread>;
      cTouched?: Record<string, Spread>;
      firstTouch?: Record<string, Spread> & { skipped?: string };
      /** the same runs with nobody listening (attributes: answered in the vCPU run loops; memslots: no events), ns from guest ticks */
      quiet?: Record<string, Spread>;
      quietTouched?: Record<string, Spread>;
      quietSmp?: Record<string, Spread>;
    }
  >;
}
export interface ConvertKernelResult {
  kernel: string;
  command: string;
  skipped?: string;
  seconds?: number;
  lab?: LabConvert;
}

export async function benchConvert(
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
    const run = await runLab(["--kernel", kernel], CONVERT_LAB, labArgs, limitMs, kernel);
    r.seconds = run.ms / 1000;
    Object.assign(r, labResult<LabConvert>(run, "CONVERT-LAB-RESULT"));
  }
  return results;
}

export function printConvert(results: ConvertKernelResult[], o: { rounds: number; conversions: number; touches: number }): void {
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
        const q = med(b.quiet?.[size]);
        if (b.quiet)
          console.log(
            `      nobody listening (${backend === "attributes" ? "answered in the vCPU's run loop" : "no events, answered on the main thread"}): ${us(q)} µs, ${ratio(q, ci)} /ioctl, ${ratio(q, ch)} /hcall (per round ${range(b.quiet[size])};` +
              ` guest rdtsc at the event run's rate)${b.quiet[size].errors.length ? `; ${b.quiet[size].errors.length} failed: ${b.quiet[size].errors[0]}` : ""}`,
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

  console.log(`\n   3b. Conversions of touched (populated) memory: as above, and after every conversion the guest stores 8 bytes to each page of the range`);
  console.log(`   (tsvmm: convert-bench mode=convert touch=1; C: convert-loop --modes touched); the span includes the stores, the same guest work on both sides`);
  console.log(`   3c. 2 and 4 vCPUs converting at once, each its own 4 KiB page (tsvmm: mode=smp --cpus V; C: --modes smp, one thread per vCPU, one lock, memslots`);
  console.log(`   stops the other vCPUs per conversion as tsvmm's quiesce does); µs per conversion of all vCPUs together. The lab has 2 vCPUs and TCG runs them on one thread`);
  console.log(`   3d. --prefault (KVM_PRE_FAULT_MEMORY after each conversion to private): per round the 2 MiB range goes shared, then private (timed), then the`);
  console.log(`   guest stores to each of its 512 pages (timed: the first touch); guest rdtsc ticks, median per round, tsvmm without and with --prefault`);
  console.log(`   ${pad("kernel", 14)}${pad("backend", 12)}${pad("range", 7)}${lpad("tsvmm µs", 10)}${lpad("C µs", 10)}${lpad("ratio", 8)}`);
  const ticks = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? "-" : `${fmt(v / 1e6, 2)}M`);
  /** the same row with nobody listening: conversions answered in the vCPU run loops (attributes) */
  const quietRow = (kernel: string, backend: string, what: string, q: Spread | undefined, c: number | undefined) => {
    if (!q) return;
    const t = med(q);
    console.log(`   ${pad(kernel, 14)}${pad(backend, 12)}${pad(what, 7)}${lpad(us(t), 10)}${lpad(us(c), 10)}${lpad(ratio(t, c), 8)}  nobody listening: in the vCPU run loops`);
    if (q.errors.length) console.log(`      ${q.errors.length} run(s) failed; the first: ${q.errors[0]}`);
  };
  for (const r of results) {
    if (r.skipped || !r.lab) continue;
    for (const [backend, b] of Object.entries(r.lab.backends)) {
      if (b.skipped || !b.tsvmmTouched) continue;
      for (const size of ["4096", "2097152"]) {
        const t = med(b.tsvmmTouched[size]);
        const c = med(b.cTouched?.[size]);
        console.log(`   ${pad(r.kernel, 14)}${pad(backend, 12)}${pad(sizeName(size), 7)}${lpad(us(t), 10)}${lpad(us(c), 10)}${lpad(ratio(t, c), 8)}`);
        const errs = [...b.tsvmmTouched[size].errors.map((e) => `tsvmm: ${e}`), ...(b.cTouched?.[size]?.errors ?? []).map((e) => `C: ${e}`)];
        if (errs.length) console.log(`      ${errs.length} run(s) failed; the first: ${errs[0]}`);
        quietRow(r.kernel, backend, sizeName(size), b.quietTouched?.[size], c);
      }
      for (const [cpus, s] of Object.entries(b.tsvmmSmp ?? {})) {
        const t = med(s);
        const c = med(b.cSmp?.[cpus]);
        console.log(`   ${pad(r.kernel, 14)}${pad(backend, 12)}${pad(`${cpus} vCPUs`, 7)}${lpad(us(t), 10)}${lpad(us(c), 10)}${lpad(ratio(t, c), 8)}  (4 KiB each, all at once)`);
        const errs = [...s.errors.map((e) => `tsvmm: ${e}`), ...(b.cSmp?.[cpus]?.errors ?? []).map((e) => `C: ${e}`)];
        if (errs.length) console.log(`      ${errs.length} run(s) failed; the first: ${errs[0]}`);
        quietRow(r.kernel, backend, `${cpus} vCPUs`, b.quietSmp?.[cpus], c);
      }
      const f = b.firstTouch;
      if (!f) continue;
      if (f.skipped) {
        console.log(`      --prefault: not measured: ${f.skipped}`);
        continue;
      }
      const [pc, pt, fc, ft] = [med(f.plainConvert), med(f.plainTouch), med(f.prefaultConvert), med(f.prefaultTouch)];
      const sum = (a?: number, c?: number) => (a === undefined || c === undefined ? undefined : a + c);
      // the guest's TSC rate, from the convert runs: ticks of n round trips / (2n conversions x ns each)
      const rates = (b.guestTicks ?? []).flatMap((g) => Object.values(g)).filter((g) => g.guestTicksTotal > 0).map((g) => g.guestTicksTotal / (2 * r.lab!.n * g.ns));
      const rate = rates.length ? median(rates) : undefined;
      const ms = (t?: number) => (t === undefined || rate === undefined ? "" : ` ${fmt(t / rate / 1e6, 1)} ms`);
      console.log(
        `      --prefault, 2 MiB: conversion to private ${ticks(pc)}${ms(pc)} -> ${ticks(fc)}${ms(fc)} (${ratio(fc, pc)} more), first touch of its 512 pages ${ticks(pt)}${ms(pt)} -> ${ticks(ft)}${ms(ft)} (${ratio(pt, ft)} less),` +
          ` both ${ticks(sum(pc, pt))}${ms(sum(pc, pt))} -> ${ticks(sum(fc, ft))}${ms(sum(fc, ft))} (${ratio(sum(pc, pt), sum(fc, ft))} less)` +
          (rate ? `; guest TSC ${fmt(rate, 2)} GHz (calibrated on the convert runs)` : ""),
      );
      if (f.plainConvert.errors.length) console.log(`      ${f.plainConvert.errors.length} run(s) failed; the first: ${f.plainConvert.errors[0]}`);
    }
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
      if (i.quietCycle) {
        const qc = med(i.quietCycle);
        const qd = qc !== undefined && cc !== undefined && ch !== undefined ? qc - (cc - ch) : undefined;
        console.log(
          `   ${pad(r.kernel, 14)}${pad(backend, 12)}${lpad(us(qc), 12)}${lpad(us(cc), 10)}${lpad(ratio(qc, cc), 7)}${lpad(us(ch), 12)}${lpad(us(qd), 17)}${lpad(ratio(qd, ch), 7)}` +
            `  nobody listening (guest rdtsc at the event run's rate; per round ${range(i.quietCycle)}, mean ${us(med(i.quietCycleMean))})`,
        );
        if (i.quietCycle.errors.length) console.log(`      ${i.quietCycle.errors.length} quiet run(s) failed; the first: ${i.quietCycle.errors[0]}`);
      }
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
    `   not measured: the doorbell path;` +
      ` exit 39 on attributes (no aliased layout there); anything outside the lab (this host's KVM keeps no page private)`,
  );
}

