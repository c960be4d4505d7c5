// The lab side of `npm run bench`'s conversion section: run inside the nested lab by
//   tsvmm lab --kernel sw-protected|stock -- node dist/test/bench/convert-lab.js [options]
// (bench.ts does that once per kernel). One Node process (Node starts in ~2 s under TCG): tsvmm
// runs the guest build/bench/convert-bench.elf in-process through runGuest, and the C baseline
// build/bench/convert-loop runs as a child, both in this one lab boot, interleaved round by round.
//
// What is timed, per backend this kernel offers:
//   - conversions: `mode=convert`, N round trips private -> shared -> private of a 4 KiB and of a
//     2 MiB range by KVM_HC_MAP_GPA_RANGE. tsvmm: the span between the engine's events for the
//     last 2N conversions (each event is stamped when its conversion is done: guest hypercall ->
//     exit -> TypeScript -> ioctls -> re-entry -> the guest's next hypercall), / (2N - 1). C: the
//     same ioctls in a bare loop ("ioctl"), and answering the same hypercalls from a raw guest
//     ("hypercall", timed the same way as tsvmm's events). tsvmm's events come from runGuest's
//     onConversion, with no run log: nothing is formatted or parsed inside the timed span.
//   - the same with touch=1 / C "touched": the guest stores to every page after each conversion.
//   - 2 and 4 vCPUs at once (`mode=smp --cpus V` / C "smp --vcpus V"), each its own 4 KiB page.
//   - first touch (`mode=first-touch`, 2 MiB, where KVM_PRE_FAULT_MEMORY exists): guest ticks of
//     the conversion to private and of the stores to its pages after it, without and with --prefault.
//   - convert (both backends), and on attributes touched and smp, again with nobody listening
//     ("quiet"): on attributes the vCPU threads answer the conversions themselves, on memslots the
//     engine answers them without events (docs/exit-path.md). No events there: the guest's rdtsc
//     ticks per conversion, turned into ns with the rate the same round's event run gives (its
//     event ns per conversion / its ticks per conversion). Exit 39 likewise (ticks per touch).
//   - exit 39 -> running again (memslots with --shared-bit only): the guest stores to T distinct
//     pages through the shared view; tsvmm: the median interval between consecutive memory-fault
//     conversions (events), C: the median interval between consecutive exits 39, and its own
//     handling time (KVM_RUN returns -> KVM_RUN again).
// Nothing passes or fails on time. Progress goes to stderr; the result is one stdout line
// "CONVERT-LAB-RESULT <json>". Options: --rounds R (after one dropped warm-up round, default 5),
// --n N (round trips per size, 100), --touches T (200), --warm W (10), --backends LIST (both).
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { runGuest } from "../../vmm/run";
import { assessHost, probeHost } from "../../vmm/host/caps";
import { loadAddon } from "../../vmm/native";
import { decodeCpuid } from "../../vmm/kvm/structs";

const ROOT = path.resolve(__dirname, "..", "..", "..");
const OUT = path.join(ROOT, "build", "bench");
const GUEST = path.join(OUT, "convert-bench.elf");
const CLOOP = path.join(OUT, "convert-loop");
const SIZES = [4096, 2 << 20] as const;
/** vCPUs converting at once (mode=smp; the lab itself has 2 vCPUs, and TCG runs them on one thread) */
const SMP_VCPUS = [2, 4] as const;
type Backend = "attributes" | "memslots";

const log = (s: string) => process.stderr.write(`convert-lab: ${s}\n`);
const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};

/** One conversion event, as the engine reports it (vmm/memory/engine.ts ConversionEvent) */
interface Ev {
  seq: number;
  ms: number;
  source: string;
  size: number;
  result: string;
  us: number;
}

/** key=value words of the guest's "convert-bench: <kind> ..." lines */
function guestLines(console: string, kind: string): Array<Record<string, string>> {
  return console
    .split(/\r?\n/)
    .filter((l) => l.startsWith(`convert-bench: ${kind}`))
    .map((l) => Object.fromEntries(l.split(" ").filter((w) => w.includes("=")).map((w) => w.split("=", 2) as [string, string])));
}
const guestProblem = (console: string) =>
  console
    .split(/\r?\n/)
    .find((l) => l.startsWith("convert-bench: skip") || l.startsWith("convert-bench: error"))
    ?.replace("convert-bench: ", "");

interface TsvmmRun {
  error?: string;
  setup?: Record<string, string>;
  /** size -> ns per conversion (convert), engine µs median */
  convert?: Record<number, { ns: number; engineUs: number; guestTicksMedian: number; guestTicksTotal: number; spanNs: number }>;
  implicit?: { cycleNs: number; cycleMeanNs: number; engineUs: number; guestTicksMedian: number; guestTicksTotal: number; spanNs: number };
  /** mode=convert touch=1: as convert, with every page stored to after every conversion */
  touched?: Record<number, { ns: number; engineUs: number }>;
  /** mode=smp: vCPU count -> ns per conversion, all vCPUs together */
  smp?: Record<number, { ns: number; engineUs: number }>;
  /** mode=first-touch: guest ticks (median per round) of the conversion to private and of the touches after it */
  firstTouch?: Record<number, { convertTicks: number; touchTicks: number }>;
  /** guest ticks per conversion ("convert" size, "touched" size, "smp" vCPUs): ticks_total / conversions */
  ticks?: Record<string, number>;
  /** mode=implicit: the guest's ticks per touch (median, and the total of the timed touches) */
  implicitTicks?: { median: number; total: number };
}

/** One tsvmm run; quiet: nobody listens (no events: only the guest's ticks are measured) */
async function tsvmm(backend: Backend, cmdline: string, o: { sharedBit?: number; prefault?: boolean; cpus?: number; quiet?: boolean } = {}): Promise<TsvmmRun> {
  const events: Ev[] = [];
  let r;
  try {
    r = await runGuest({
      guest: GUEST,
      cmdline,
      timeout: 240,
      cpus: o.cpus,
      privateMemory: { backend, sharedBit: o.sharedBit || undefined, prefault: o.prefault },
      // The events themselves and no run log: no formatting or parsing inside the timed span.
      onConversion: o.quiet ? undefined : (e) => void events.push({ seq: e.seq, ms: e.time, source: e.source, size: e.size, result: e.result, us: e.ns / 1000 }),
    });
  } catch (e) {
    return { error: (e as Error).message };
  }
  const problem = guestProblem(r.console);
  if (problem) return { error: problem };
  if (r.status !== 0) return { error: `status ${r.status}: ${r.reason}` };
  const setup = guestLines(r.console, "setup")[0];
  const out: TsvmmRun = { setup };
  for (const res of guestLines(r.console, "result")) {
    const n = Number(res.n);
    const size = Number(res.size);
    if (res.mode === "first-touch") {
      (out.firstTouch ??= {})[size] = { convertTicks: Number(res.convert_ticks_median), touchTicks: Number(res.touch_ticks_median) };
      continue;
    }
    const tickKey = res.mode === "smp" ? `smp ${res.vcpus}` : res.mode === "convert-touched" ? `touched ${size}` : `${res.mode} ${size}`;
    if (Number(res.ticks_total) > 0) (out.ticks ??= {})[tickKey] = Number(res.ticks_total) / Number(res.conversions);
    if (res.mode === "implicit") out.implicitTicks = { median: Number(res.ticks_median), total: Number(res.ticks_total) };
    if (o.quiet) continue;
    const source = res.mode === "implicit" ? "fault" : "hypercall";
    const evs = events.filter((e) => e.source === source && e.size === size && e.result === "ok").sort((a, b) => a.seq - b.seq);
    const want = Number(res.conversions);
    if (evs.length < want) return { error: `${res.mode} ${size}: ${evs.length} conversion events for ${want} conversions (${r.reason})` };
    const timed = evs.slice(-want);
    const spanNs = (timed[timed.length - 1].ms - timed[0].ms) * 1e6;
    const engineUs = median(timed.map((e) => e.us));
    const guest = { guestTicksMedian: Number(res.ticks_median), guestTicksTotal: Number(res.ticks_total), spanNs };
    if (res.mode === "implicit") {
      const gaps = timed.slice(1).map((e, i) => (e.ms - timed[i].ms) * 1e6);
      out.implicit = { cycleNs: median(gaps), cycleMeanNs: spanNs / (want - 1), engineUs, ...guest };
    } else if (res.mode === "smp") {
      (out.smp ??= {})[Number(res.vcpus)] = { ns: spanNs / (want - 1), engineUs };
    } else if (res.mode === "convert-touched") {
      (out.touched ??= {})[size] = { ns: spanNs / (want - 1), engineUs };
    } else {
      (out.convert ??= {})[size] = { ns: spanNs / (want - 1), engineUs, ...guest };
    }
  }
  return out;
}

/** The C baseline: one JSON line, or why not. */
function cLoop(args: string[], limitMs = 300_000): Promise<{ json?: any; error?: string }> {
  return new Promise((resolve) => {
    const child = spawn(CLOOP, args, { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill("SIGKILL"), limitMs);
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", (e) => {
      clearTimeout(timer);
      resolve({ error: e.message });
    });
    child.on("close", (code, sig) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString().trim().split("\n").slice(-1)[0];
      if (code !== 0) return resolve({ error: `${sig ? `signal ${sig}` : `status ${code}`}${stderr ? `: ${stderr}` : ""}` });
      try {
        resolve({ json: JSON.parse(Buffer.concat(out).toString()) });
      } catch {
        resolve({ error: `unparsable output: ${Buffer.concat(out).toString().slice(0, 200)}` });
      }
    });
  });
}

function sharedBitOfCpu(): number {
  const kvm = new (loadAddon().Kvm)("/dev/kvm");
  try {
    const leaf = decodeCpuid(kvm.supportedCpuid()).find((e) => e.function === 0x80000008);
    return leaf ? (leaf.eax & 0xff) - 1 : 0;
  } finally {
    kvm.close();
  }
}

interface Series {
  values: number[];
  errors: string[];
}
const series = (): Series => ({ values: [], errors: [] });

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { rounds: { type: "string" }, n: { type: "string" }, touches: { type: "string" }, warm: { type: "string" }, backends: { type: "string" } },
  });
  const rounds = Math.max(1, Number(values.rounds ?? 5));
  const n = Math.max(2, Number(values.n ?? 100));
  const touches = Math.max(2, Number(values.touches ?? 200));
  const warm = Math.max(0, Number(values.warm ?? 10));
  const kernel = process.env.TSVMM_LAB ?? "not the lab";
  const result: Record<string, any> = { kernel, rounds, n, touches, warm, backends: {} };
  const emit = () => process.stdout.write(`CONVERT-LAB-RESULT ${JSON.stringify(result)}\n`);

  const missing = [GUEST, CLOOP].filter((f) => !fs.existsSync(f));
  if (missing.length) {
    result.skipped = `not built: ${missing.map((f) => path.relative(ROOT, f)).join(", ")} (make -C test/bench convert, on the host: the lab sees build/ read-only)`;
    emit();
    return;
  }
  let verdict;
  try {
    verdict = assessHost(probeHost());
  } catch (e) {
    result.skipped = `no usable KVM: ${(e as Error).message}`;
    emit();
    return;
  }
  const only = values.backends?.split(",");
  const backends = (["attributes", "memslots"] as const).filter((b) => verdict.backends[b].available && (!only || only.includes(b)));
  for (const b of ["attributes", "memslots"] as const)
    if (!verdict.backends[b].available) result.backends[b] = { skipped: verdict.backends[b].reason };
  if (!verdict.hypercallExit) result.note = "this KVM delivers no KVM_EXIT_HYPERCALL: tsvmm's guest converts through the port doorbell";
  const sharedBit = sharedBitOfCpu();
  log(`kernel ${kernel}: backends ${backends.join(", ") || "none"}, shared bit ${sharedBit}, ${rounds} rounds + 1 warm-up, n=${n}, touches=${touches}, warm=${warm}`);

  for (const b of backends) {
    const row: Record<string, any> = {
      tsvmm: { 4096: series(), [2 << 20]: series(), engine4096: series(), engine2m: series() },
      cIoctl: { 4096: series(), [2 << 20]: series() },
      cHypercall: { 4096: series(), [2 << 20]: series() },
      tsvmmTouched: { 4096: series(), [2 << 20]: series() },
      tsvmmSmp: Object.fromEntries(SMP_VCPUS.map((v) => [v, series()])),
      cSmp: Object.fromEntries(SMP_VCPUS.map((v) => [v, series()])),
      cTouched: { 4096: series(), [2 << 20]: series() },
      // guest ticks per round: the conversion to private, then the first touch of its pages
      firstTouch: verdict.preFault.available
        ? { plainConvert: series(), plainTouch: series(), prefaultConvert: series(), prefaultTouch: series() }
        : { skipped: verdict.preFault.reason },
      perConversion: {},
    };
    // nobody listening: on attributes the vCPU threads answer the conversions themselves; on
    // memslots the engine answers them on the main thread without building events
    row.quiet = { 4096: series(), [2 << 20]: series() };
    if (b === "attributes")
      Object.assign(row, {
        quietTouched: { 4096: series(), [2 << 20]: series() },
        quietSmp: Object.fromEntries(SMP_VCPUS.map((v) => [v, series()])),
      });
    if (b === "memslots") {
      row.implicit = {
        tsvmmCycle: series(),
        tsvmmCycleMean: series(),
        tsvmmEngine: series(),
        quietCycle: series(),
        quietCycleMean: series(),
        cCycle: series(),
        cCycleMean: series(),
        cHandling: series(),
      };
      if (!sharedBit) row.implicitSkipped = "no CPUID 0x80000008: no shared bit";
    } else {
      row.implicitSkipped =
        "the aliased layout (--shared-bit) is memslots-only: on a SW_PROTECTED VM KVM derives private/shared from the attributes, so no exit 39 is a conversion request";
    }
    result.backends[b] = row;
  }

  let layout: { low: string; mem: string; gpa: string } | undefined;
  let implicitGpa: string | undefined;
  const add = (s: Series, v: number | undefined, err?: string) => {
    if (err) s.errors.push(err);
    else if (v !== undefined && Number.isFinite(v)) s.values.push(v);
  };

  for (let round = 0; round <= rounds; round++) {
    const keep = round > 0; // round 0 warms caches, the JIT and the lab's page cache
    const order = round % 2 ? [...backends].reverse() : backends;
    for (const b of order) {
      const row = result.backends[b];
      const tsFirst = round % 2 === 0;
      const runTs = async () => {
        const t = await tsvmm(b, `mode=convert size=4k,2m n=${n} warm=${warm}`);
        if (t.setup) layout = { low: t.setup.free_base, mem: t.setup.ram_end, gpa: t.setup.gpa };
        if (!keep) {
          if (t.error) log(`warm-up tsvmm ${b}: ${t.error}`);
          return;
        }
        for (const size of SIZES) {
          add(row.tsvmm[size], t.convert?.[size]?.ns, t.error);
          add(size === 4096 ? row.tsvmm.engine4096 : row.tsvmm.engine2m, t.convert?.[size]?.engineUs);
        }
        if (t.convert) (row.guestTicks ??= []).push(t.convert);
        /** The same run quietly: its ticks per conversion at the event run's ns per tick */
        const quietly = async (cmdline: string, loud: TsvmmRun, keys: Array<[string, Series | undefined, number | undefined]>, cpus?: number) => {
          const wanted = keys.filter((k): k is [string, Series, number | undefined] => k[1] !== undefined);
          if (!wanted.length) return;
          const q = await tsvmm(b, cmdline, { cpus, quiet: true });
          for (const [key, into, loudNs] of wanted) {
            const qt = q.ticks?.[key];
            const lt = loud.ticks?.[key];
            add(into, qt && lt && loudNs ? (qt * loudNs) / lt : undefined, q.error ?? (qt ? undefined : `no ${key} ticks`));
          }
        };
        const convertArgs = `mode=convert size=4k,2m n=${n} warm=${warm}`;
        await quietly(convertArgs, t, SIZES.map((size) => [`convert ${size}`, row.quiet?.[size], t.convert?.[size]?.ns]));
        const touched = await tsvmm(b, `mode=convert touch=1 size=4k,2m n=${n} warm=${warm}`);
        for (const size of SIZES) add(row.tsvmmTouched[size], touched.touched?.[size]?.ns, touched.error);
        await quietly(`mode=convert touch=1 size=4k,2m n=${n} warm=${warm}`, touched, SIZES.map((size) => [`touched ${size}`, row.quietTouched?.[size], touched.touched?.[size]?.ns]));
        for (const cpus of SMP_VCPUS) {
          const s = await tsvmm(b, `mode=smp n=${n} warm=${warm}`, { cpus });
          add(row.tsvmmSmp[cpus], s.smp?.[cpus]?.ns, s.error);
          await quietly(`mode=smp n=${n} warm=${warm}`, s, [[`smp ${cpus}`, row.quietSmp?.[cpus], s.smp?.[cpus]?.ns]], cpus);
        }
        if (verdict.preFault.available)
          for (const prefault of [false, true]) {
            const f = await tsvmm(b, `mode=first-touch size=2m n=${n} warm=${warm}`, { prefault });
            const ft = f.firstTouch?.[2 << 20];
            add(prefault ? row.firstTouch.prefaultConvert : row.firstTouch.plainConvert, ft?.convertTicks, f.error);
            add(prefault ? row.firstTouch.prefaultTouch : row.firstTouch.plainTouch, ft?.touchTicks);
          }
        if (b === "memslots" && sharedBit) {
          const i = await tsvmm(b, `mode=implicit n=${touches} warm=${warm}`, { sharedBit });
          if (i.setup) implicitGpa = i.setup.gpa;
          add(row.implicit.tsvmmCycle, i.implicit?.cycleNs, i.error);
          add(row.implicit.tsvmmCycleMean, i.implicit?.cycleMeanNs);
          add(row.implicit.tsvmmEngine, i.implicit?.engineUs);
          if (i.implicit) (row.implicitGuestTicks ??= []).push(i.implicit);
          // nobody listening: the guest's ticks per touch at the event run's ns per tick
          const q = await tsvmm(b, `mode=implicit n=${touches} warm=${warm}`, { sharedBit, quiet: true });
          const loud = i.implicit;
          const nsPerTick = loud && loud.guestTicksTotal > 0 ? loud.cycleMeanNs / (loud.guestTicksTotal / touches) : undefined;
          const quiet = q.implicitTicks;
          const why = q.error ?? i.error ?? (quiet ? (nsPerTick ? undefined : "no ticks in the event run") : "no implicit ticks");
          add(row.implicit.quietCycle, quiet && nsPerTick ? quiet.median * nsPerTick : undefined, why);
          add(row.implicit.quietCycleMean, quiet && nsPerTick ? (quiet.total / touches) * nsPerTick : undefined);
        }
      };
      const runC = async () => {
        const base = ["--backend", b, "--n", String(n), "--warm", String(warm)];
        if (layout) base.push("--low", layout.low, "--mem", layout.mem, "--gpa", layout.gpa);
        const c = await cLoop([...base, "--modes", "ioctl,hypercall,touched", "--sizes", SIZES.join(",")]);
        if (keep)
          for (const size of SIZES) {
            const io = c.json?.results.find((x: any) => x.mode === "ioctl" && x.size === size);
            const hc = c.json?.results.find((x: any) => x.mode === "hypercall" && x.size === size);
            const touched = c.json?.results.find((x: any) => x.mode === "touched" && x.size === size);
            add(row.cIoctl[size], io?.ns_per_conversion, c.error);
            add(row.cHypercall[size], hc?.ns_per_conversion, c.error);
            add(row.cTouched[size], touched?.ns_per_conversion, c.error);
            if (io) row.perConversion[size] = io.per_conversion;
          }
        else if (c.error) log(`warm-up C ${b}: ${c.error}`);
        for (const cpus of SMP_VCPUS) {
          const s = await cLoop([...base, "--modes", "smp", "--vcpus", String(cpus)]);
          if (keep) add(row.cSmp[cpus], s.json?.results.find((x: any) => x.mode === "smp")?.ns_per_conversion, s.error);
        }
        if (b === "memslots" && sharedBit) {
          const args = ["--backend", b, "--modes", "implicit", "--n", String(touches), "--warm", String(warm), "--shared-bit", String(sharedBit)];
          if (layout) args.push("--low", layout.low, "--mem", layout.mem, "--gpa", implicitGpa ?? layout.gpa);
          const i = await cLoop(args);
          const res = i.json?.results[0];
          if (keep) {
            add(row.implicit.cCycle, res?.cycle_median_ns, i.error);
            add(row.implicit.cCycleMean, res?.cycle_mean_ns);
            add(row.implicit.cHandling, res?.handling_median_ns);
            if (res) row.implicit.perConversion = res.per_conversion;
          } else if (i.error) log(`warm-up C implicit: ${i.error}`);
        }
      };
      if (tsFirst) {
        await runTs();
        await runC();
      } else {
        await runC();
        await runTs();
      }
      log(`round ${round}${keep ? "" : " (warm-up, dropped)"} ${b} done`);
    }
  }
  result.layout = layout;
  result.implicitGpa = implicitGpa;
  result.sharedBit = sharedBit;
  emit();
}

main().catch((e: Error) => {
  process.stdout.write(`CONVERT-LAB-RESULT ${JSON.stringify({ kernel: process.env.TSVMM_LAB, skipped: `convert-lab crashed: ${e.stack ?? e.message}` })}\n`);
  process.exitCode = 1;
});
