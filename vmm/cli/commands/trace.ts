import * as fs from "node:fs";
import type { CommandModule } from "yargs";
import { parseRanges } from "../parse";
import { ExitStatus, TsvmmError, UsageError } from "../../errors";
import { readTraceFile } from "../../trace/reader";
import { formatReport } from "../../trace/report";
import { toHtml } from "../../trace/html";
import { toPerfetto } from "../../trace/perfetto";

export interface TraceArgs {
  file: string;
  html?: string;
  perfetto?: string;
  since?: number;
  until?: number;
  range?: string;
  vcpu?: number;
  limit: number;
  width: number;
}

function milliseconds(option: string, value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isFinite(value) || value < 0) throw new UsageError(`${option} ${JSON.stringify(value)} is not a time`, `give milliseconds since the VM started, e.g. ${option} 12.5`);
  return value;
}

function write(option: string, file: string, text: string): void {
  try {
    fs.writeFileSync(file, text);
  } catch (err) {
    throw new TsvmmError(`${option} ${file}: cannot write (${(err as NodeJS.ErrnoException).code})`, ExitStatus.USAGE, "name a file in a writable directory");
  }
  process.stderr.write(`tsvmm: wrote ${file} (${(text.length / 1024).toFixed(0)} KiB)\n`);
}

export const traceCommand: CommandModule<object, TraceArgs> = {
  command: "trace <file>",
  describe: "Show a run recorded with `tsvmm run --trace FILE`: a report, a self-contained HTML page, or Perfetto JSON",
  builder: (y) =>
    y
      .positional("file", { type: "string", demandOption: true, describe: "an NDJSON trace from `tsvmm run --trace FILE` (any format version)" })
      .option("html", {
        type: "string",
        describe: "write one self-contained page (no network): a timeline with a lane per vCPU, the page states over time (zoom and pan), the summary and the refused requests",
      })
      .option("perfetto", {
        type: "string",
        describe: "write Chrome trace-event JSON for ui.perfetto.dev or chrome://tracing: a track per vCPU, a slice per conversion, counters of private and shared pages",
      })
      .option("since", { type: "number", describe: "report: only events at or after this many ms since the VM started", group: "Report filters:" })
      .option("until", { type: "number", describe: "report: only events up to this ms; the page map shows the states at that time", group: "Report filters:" })
      .option("range", { type: "string", describe: "report: only events touching these GPA ranges (START-END or START+SIZE, comma-separated); the page map shows them alone", group: "Report filters:" })
      .option("vcpu", { type: "number", describe: "report: only this vCPU's events (-1 = the VMM's own, -2 = KVM events no vCPU claims)", group: "Report filters:" })
      .option("limit", { type: "number", default: 40, describe: "report: timeline lines per vCPU (0 = all)", group: "Report filters:" })
      .option("width", { type: "number", default: 64, describe: "report: glyphs per line of the page map", group: "Report filters:" })
      .example("$0 trace conv.ndjson", "counts, latency percentiles, refusals, the page map at the end, the timeline per vCPU")
      .example("$0 trace conv.ndjson --range 16M+1M --until 20", "what happened to one MiB during the first 20 ms")
      .example("$0 trace conv.ndjson --html conv.html --perfetto conv.json", "a page for the browser and a file for ui.perfetto.dev")
      .example("$0 run convert --trace - | $0 trace /dev/stdin", "record and read in one pipe")
      .epilog("The format of the trace, every record and field, is in docs/trace.md. The filters narrow the report; --html and --perfetto show the whole run.")
      .strict(),
  handler: (args) => {
    const since = milliseconds("--since", args.since);
    const until = milliseconds("--until", args.until);
    let ranges: Array<{ start: number; end: number }> | undefined;
    if (args.range !== undefined) {
      const r = parseRanges("--range", args.range);
      if (r === "none") throw new UsageError("--range none selects nothing", "give START-END or START+SIZE, or leave --range out");
      if (r !== "all") ranges = r.map((x) => ({ start: Number(x.start), end: Number(x.end) }));
    }
    if (args.vcpu !== undefined && (!Number.isInteger(args.vcpu) || args.vcpu < -2))
      throw new UsageError(`--vcpu ${args.vcpu} is not a vCPU`, "give a vCPU index (0, 1, ...), -1 for the VMM's own events or -2 for KVM events no vCPU claims");
    const trace = readTraceFile(args.file);
    if (args.html) write("--html", args.html, toHtml(trace));
    if (args.perfetto) write("--perfetto", args.perfetto, JSON.stringify(toPerfetto(trace)));
    if (args.html || args.perfetto) return;
    process.stdout.write(formatReport(trace, { since, until, ranges, vcpu: args.vcpu, limit: args.limit, width: Math.max(8, args.width) }));
  },
};
