import * as fs from "node:fs";
import * as os from "node:os";
import type { CommandModule } from "yargs";
import { DEFAULT_MEM } from "../../run";
import { parseCount, parseSeconds, parseSize } from "../parse";
import { CLI_FLAGS } from "../flags";
import { MAX_CPUS } from "../../machine/abi";
import { ExitStatus, UsageError } from "../../errors";
import { DEFAULT_AXES, expandMatrix, parseBackendList, parseCountList } from "../../matrix/plan";
import { checkEntries, EntryResult, runMatrix, stopRequestOf } from "../../matrix/runner";
import { abortOnStop } from "../stop";
import { summarize, summaryLine } from "../../matrix/report";
import { tapEntry, tapFooter, tapHeader } from "../../matrix/tapReport";
import { junitReport } from "../../matrix/junit";
import { assessHost, probeHost, Verdict } from "../../host/caps";

export interface TestArgs {
  guests: string[];
  backend: string;
  cpus: string;
  cmdline?: string | string[];
  // Declared without a yargs type, so a bad value reaches our parsers as typed (not as NaN).
  repeat: unknown;
  jobs: unknown;
  timeout: unknown;
  mem: string;
  tap: boolean;
  junit?: string;
  "trace-dir"?: string;
  unsupported: "skip" | "fail";
}

/** Exit status when some entry failed (the guest statuses are each entry's, in the reports) */
const SOME_FAILED = 1;

export const testCommand: CommandModule<object, TestArgs> = {
  command: "test <guests..>",
  describe: "Boot a matrix of guests (x backends x vCPU counts x command lines) in one process, several at once; report each as TAP or JUnit",
  builder: (y) =>
    y
      .positional("guests", {
        type: "string",
        array: true,
        demandOption: true,
        describe: "shipped guests (see `tsvmm guests`) or paths to static x86-64 ELFs linked at 1 MiB",
      })
      .option("backend", {
        type: "string",
        default: DEFAULT_AXES.backends.join(","),
        describe:
          "comma-separated RAM backends, each an axis value: default (as `tsvmm run` does for the guest), shared (no private memory), attributes, memslots (private memory with that backend; only where KVM keeps pages private, e.g. in `tsvmm lab`)",
      })
      .option("cpus", { type: "string", default: String(DEFAULT_AXES.cpus[0]), describe: `vCPU counts, comma-separated, ranges allowed: 1,2,4 or 1-4 (1 to ${MAX_CPUS})` })
      .option("cmdline", { type: "string", describe: "a guest command line; give it several times for an axis: --cmdline fault=ud --cmdline fault=pf" })
      .option("repeat", { default: 1, describe: "boot every combination this many times (entries named rep=1..N)" })
      .option("jobs", { default: os.availableParallelism(), describe: "VMs running at once in this process (default: this machine's CPUs)" })
      .option("timeout", { default: 60, describe: "seconds each entry may run; a guest still running then fails its entry (status 124, with registers) and the run goes on (0 = no limit)" })
      .option("mem", { type: "string", default: `${DEFAULT_MEM >> 20n}M`, describe: "guest RAM of every entry (K/M/G suffix; 2M to 3G)" })
      .option("tap", { type: "boolean", default: false, describe: "write TAP version 14 to stdout: one test point per entry, the guest's own TAP as its subtest, a YAML block with status, reason and (for failures) registers and console" })
      .option("junit", { type: "string", describe: "write JUnit XML to this file: a <testsuite> per entry with a `run` test case and one per guest test point" })
      .option("trace-dir", { type: "string", describe: "write each entry's event trace as NDJSON into this directory (NNN-<entry>.ndjson)" })
      .option("unsupported", {
        choices: ["skip", "fail"] as const,
        default: process.env.CI === "true" ? ("fail" as const) : ("skip" as const),
        describe: "an entry this host cannot run (status 69, e.g. private memory on a KVM that keeps no page private) is skipped with the reason, or fails (the default under CI=true)",
      })
      .example("$0 test hello smp fault", "three guests, one entry each")
      .example("$0 test smp --cpus 1,2,4 --repeat 5 --jobs 4", "15 entries, four VMs at a time")
      .example("$0 test hello spin --timeout 2", "spin fails its entry after 2 s with its registers; hello still passes")
      .example("$0 test hello smp --tap --junit report.xml", "TAP on stdout and JUnit XML for CI")
      .example("$0 lab -- tsvmm test convert implicit --backend attributes,memslots --tap", "private memory needs a real KVM: the nested lab has one")
      .epilog(
        [
          "Each entry is judged by what `tsvmm run` would exit with: status 0 passes, unless the guest's own TAP",
          "(1..N, ok/not ok lines) shows a failed test or a plan it did not keep; a guest that skips all its tests",
          "(1..0 # SKIP why) is a skip; any other status fails the entry (see `tsvmm run --help` for the statuses).",
          "Entries run in matrix order (guest, backend, vCPUs, command line, repetition), `--jobs` at a time; each",
          "has its own VM, console, time limit and trace. Without --tap, one line per entry as it finishes, then a summary.",
          "",
          "Exit status: 0 every entry passed or was skipped, 1 some entry failed, 64 bad command line,",
          "  65 bad guest image (nothing was started); on SIGINT (130), SIGTERM (143) or SIGHUP (129) the running",
          "  entries stop with that status, no new ones start, the reports are still written, and tsvmm exits with it.",
        ].join("\n"),
      )
      .strict(),
  handler: async (args) => {
    const memSize = parseSize("--mem", args.mem);
    const entries = expandMatrix({
      guests: args.guests,
      backends: parseBackendList("--backend", args.backend),
      cpus: parseCountList("--cpus", args.cpus, 1, MAX_CPUS),
      cmdlines: args.cmdline === undefined ? DEFAULT_AXES.cmdlines : ([] as string[]).concat(args.cmdline).map(String),
      repeat: parseCount("--repeat", args.repeat, 1, 100_000),
    });
    const jobs = parseCount("--jobs", args.jobs, 1, 1024);
    const timeout = parseSeconds("--timeout", args.timeout);
    checkEntries(entries, memSize);
    if (args.junit) checkWritable("--junit", args.junit);

    const abort = new AbortController();
    const detachStop = abortOnStop(abort);
    const out = (text: string) => process.stdout.write(text);
    // TAP goes in matrix order: a finished entry waits for the ones before it.
    const finished = new Map<number, EntryResult>();
    let printed = 0;
    if (args.tap) out(tapHeader(entries.length));
    const started = performance.now();
    try {
      const results = await runMatrix(entries, {
        jobs,
        timeout,
        memSize,
        unsupported: args.unsupported,
        traceDir: args["trace-dir"],
        signal: abort.signal,
        settingNames: CLI_FLAGS,
        verdict: probeOnce(),
        onResult: (r) => {
          if (!args.tap) return out(humanLine(r));
          finished.set(r.entry.index, r);
          for (let next; (next = finished.get(printed)); printed++) out(tapEntry(next, printed + 1));
        },
      });
      const summary = summarize(results, (performance.now() - started) / 1000);
      if (args.tap) {
        out(tapFooter(summary));
        process.stderr.write(`tsvmm: ${summaryLine(summary)}\n`);
      } else out(`${summaryLine(summary)}\n`);
      if (args.junit) fs.writeFileSync(args.junit, junitReport(results, summary));
      process.exitCode = abort.signal.aborted ? stopRequestOf(abort.signal).status : summary.failed ? SOME_FAILED : ExitStatus.OK;
    } finally {
      detachStop();
    }
  },
};

/** "PASS  hello  0.052 s  guest exited with status 0 (3/3 guest tests)", and for a failure its report */
function humanLine(r: EntryResult): string {
  const label = { pass: "PASS", fail: "FAIL", skip: "SKIP" }[r.outcome];
  const points = r.tap?.points.length ? ` (${r.tap.points.filter((p) => p.ok).length}/${r.tap.points.length} guest tests ok)` : "";
  const lines = [`${label}  ${r.entry.name}  ${r.seconds.toFixed(3)} s  ${r.reason}${points}`];
  if (r.outcome === "fail") {
    if (r.report) lines.push(...r.report.split("\n").map((l) => `      ${l}`));
    if (r.lastLine) lines.push(`      last console line: ${JSON.stringify(r.lastLine)}`);
  }
  return lines.join("\n") + "\n";
}

/** The host's verdict for every entry; undefined when the probe fails, so each entry reports why */
function probeOnce(): Verdict | undefined {
  try {
    return assessHost(probeHost());
  } catch {
    return undefined;
  }
}

/** Refuse an unwritable report file before any guest runs, not after the whole matrix */
function checkWritable(option: string, file: string): void {
  try {
    fs.closeSync(fs.openSync(file, "a"));
  } catch (err) {
    throw new UsageError(`${option} ${file}: cannot open for writing (${(err as NodeJS.ErrnoException).code})`, "name a file in a directory you may write to");
  }
}
