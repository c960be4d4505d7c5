import type { CommandModule } from "yargs";
import { ConsoleMode, DEFAULT_MEM, runGuest } from "../../run";
import { parseCount, parseRanges, parseSeconds, parseSize } from "../parse";
import { CMDLINE_SIZE, MAX_CPUS } from "../../machine/abi";
import { ExitStatus } from "../../errors";
import { attachTerminalInput } from "../terminal";
import { abortOnStop } from "../stop";
import { ConsoleLogWriter, LOG_HOLD_MS } from "../../console/logWriter";
import { MAX_IMAGE_SIZE } from "../../guests";

export interface RunArgs {
  guest: string;
  mem: string;
  // Declared without a yargs type, so a bad value reaches our parsers as typed (not as NaN).
  cpus: unknown;
  timeout: unknown;
  console: ConsoleMode;
  trace?: string;
  cmdline: string;
  quiet: boolean;
  private?: string;
  backend: "auto" | "attributes" | "memslots";
  "shared-bit"?: unknown;
  "on-fault": "convert" | "deny" | "stop";
  "on-hypercall": "convert" | "deny";
  prealloc: boolean;
}

/** What each of tsvmm's own statuses means; `run --help` and the README list them all. */
const STATUS_MEANINGS: Record<Exclude<keyof typeof ExitStatus, "OK">, string> = {
  USAGE: "bad command line (nothing was started)",
  BAD_IMAGE: "bad guest image (nothing was started)",
  HOST_UNSUPPORTED: "this host's KVM lacks a capability the run needs",
  INTERNAL: "VMM error",
  GUEST_EXCEPTION: "guest exception (the firmware's report is printed)",
  TRIPLE_FAULT: "triple fault",
  KVM_INTERNAL_ERROR: "KVM internal or emulation error, or a failed VM entry",
  UNHANDLED_EXIT: "unhandled exit (MMIO outside RAM, every vCPU halted, ...)",
  MEMORY_FAULT: "a memory fault stopped the VM (--on-fault stop, or no private memory to convert)",
  BAD_HYPERCALL: "bad hypercall or doorbell number",
  BAD_GUEST_STATUS: "the guest wrote an out-of-range status (the value is in the message)",
  OUTPUT_FAILED: "stdout or the --trace file stopped accepting writes (disk full, file size limit)",
  TIMEOUT: "timeout (--timeout)",
  HANGUP: "SIGHUP",
  INTERRUPTED: "SIGINT (Ctrl-C, or Ctrl-A x on a terminal)",
  STDOUT_CLOSED: "stdout was closed, e.g. `tsvmm run hello | head -1`",
  TERMINATED: "SIGTERM",
};

export const runCommand: CommandModule<object, RunArgs> = {
  command: "run <guest>",
  describe: "Boot a test guest (or any ELF) with guest_memfd RAM and its console on COM1",
  builder: (y) =>
    y
      .positional("guest", {
        type: "string",
        demandOption: true,
        describe: "a shipped guest (see `tsvmm guests`) or a path to a static x86-64 ELF linked at 1 MiB",
      })
      .option("mem", {
        type: "string",
        default: `${DEFAULT_MEM >> 20n}M`,
        describe: "guest RAM size, 2M to 3G: a bare number is MiB (as QEMU's -m); K, M, G, T suffixes are powers of 1024, B is bytes",
      })
      .option("cpus", { requiresArg: true, default: 1, describe: `vCPUs, each started at the firmware entry with its index (1 to ${MAX_CPUS})` })
      .option("timeout", { requiresArg: true, default: 60, describe: "stop the guest after this many seconds and exit 124 (0 = no limit)" })
      .option("console", {
        choices: ["raw", "screen"] as const,
        default: "raw" as const,
        describe: "raw streams the guest's bytes to stdout; screen renders them through a headless terminal and prints the final screen",
      })
      .option("trace", { type: "string", describe: "write every event (conversions, memory faults, host requests, halts, start, end) as NDJSON to this file" })
      .option("cmdline", { type: "string", default: "", describe: `text for the guest's boot page (at most ${CMDLINE_SIZE - 1} bytes), e.g. fault=pf` })
      .option("quiet", { type: "boolean", default: false, alias: "q", describe: "print only the guest's console (and failures)" })
      .option("private", {
        type: "string",
        describe: "RAM that starts private: all (everything above the guest image), none, or ranges START-END / START+SIZE (sizes as in --mem; 0x numbers are bytes). Default: all for guests that convert memory (convert, implicit, smp-convert), none otherwise",
        group: "Private memory:",
      })
      .option("backend", {
        choices: ["auto", "attributes", "memslots"] as const,
        default: "auto" as const,
        describe: "attributes: KVM_X86_SW_PROTECTED_VM + KVM_SET_MEMORY_ATTRIBUTES; memslots: default VM, private and shared guest_memfd slots rebuilt per conversion; auto: attributes where the host has it, else memslots",
        group: "Private memory:",
      })
      .option("shared-bit", {
        requiresArg: true,
        describe: "aliased layout (memslots): page p is private at p and shared at p | 2^N, N from 32 to this CPU's physical address bits - 1; touching the other view is a KVM_EXIT_MEMORY_FAULT that converts it",
        group: "Private memory:",
      })
      .option("on-fault", {
        choices: ["convert", "deny", "stop"] as const,
        default: "convert" as const,
        describe: "on KVM_EXIT_MEMORY_FAULT: convert and re-run; deny: stop that vCPU with a report; stop: stop the VM with the event and registers (exit 75)",
        group: "Private memory:",
      })
      .option("on-hypercall", {
        choices: ["convert", "deny"] as const,
        default: "convert" as const,
        describe: "on KVM_HC_MAP_GPA_RANGE (or the doorbell): convert, or deny with EINVAL to the guest",
        group: "Private memory:",
      })
      .option("prealloc", { type: "boolean", default: false, describe: "fallocate all private memory up front instead of on demand", group: "Private memory:" })
      .example("$0 run hello", "boot the default test guest")
      .example("$0 run smp --cpus 4", "every vCPU reports in")
      .example("$0 run fault --cmdline fault=pf", "take a page fault; the firmware reports it and tsvmm exits 71")
      .example("$0 run spin --timeout 2", "a guest that never exits is stopped after 2 s with its registers (exit 124)")
      .example("$0 lab -- tsvmm run convert --backend memslots", "private memory needs a real KVM: the nested lab has one")
      .example("$0 run implicit --shared-bit 40 --trace t.ndjson", "implicit conversions on KVM_EXIT_MEMORY_FAULT, every event in the trace")
      .epilog(
        [
          "Exit status: the guest's own (0-63, written to port 0xf4), or tsvmm's:",
          ...Object.entries(STATUS_MEANINGS).map(([name, meaning]) => `  ${String(ExitStatus[name as keyof typeof STATUS_MEANINGS]).padStart(3)}  ${meaning}`),
          "",
          "SIGINT, SIGTERM and SIGHUP stop the VM cleanly (summary, the trace's end event); a second one of the same kind ends tsvmm at once.",
          `Run-log lines (stderr) wait for the end of the guest's console line (stdout), at most ${LOG_HOLD_MS} ms, then start on a new line.`,
          `A guest image is a regular file of at most ${MAX_IMAGE_SIZE >> 30} GiB.`,
          "With a terminal on stdin, what you type reaches the guest's COM1 receiver.",
        ].join("\n"),
      )
      .strict(),
  handler: async (args) => {
    // yargs renders its help text (for showHelp) right after calling a handler, synchronously:
    // ~0.1 s on a slow machine. Let that happen before the VM starts, not while it runs.
    await null;
    const memSize = parseSize("--mem", args.mem);
    const cpus = parseCount("--cpus", args.cpus, 1, MAX_CPUS);
    const timeout = parseSeconds("--timeout", args.timeout);
    const privateRanges = args.private === undefined ? undefined : parseRanges("--private", args.private);
    // Only whether it is a bit of a 64-bit address; the VM checks it against this CPU.
    const sharedBit =
      args["shared-bit"] === undefined
        ? undefined
        : parseCount("--shared-bit", args["shared-bit"], 1, 63, "give the bit of the guest-physical address that selects the shared view, e.g. --shared-bit 39");
    const output = new ConsoleLogWriter(process.stdout, process.stderr);
    const log = (line: string) => {
      if (!args.quiet) output.log(`tsvmm: ${line}`);
    };
    const abort = new AbortController();
    const detachStop = abortOnStop(abort);
    let detachInput: (() => void) | undefined;
    try {
      const result = await runGuest({
        guest: args.guest,
        memSize,
        cpus,
        timeout,
        cmdline: args.cmdline,
        console: args.console,
        output: { write: (bytes) => output.console(bytes) },
        trace: args.trace,
        log,
        signal: abort.signal,
        onInput: (send) =>
          (detachInput = attachTerminalInput(send, () => abort.abort({ status: ExitStatus.INTERRUPTED, reason: "interrupted from the terminal" }))),
        privateMemory: {
          private: privateRanges,
          backend: args.backend,
          sharedBit,
          onFault: args["on-fault"],
          onHypercall: args["on-hypercall"],
          prealloc: args.prealloc,
        },
      });
      detachInput?.();
      output.end();
      if (result.screen !== undefined) output.console(Buffer.from(result.screen + "\n"));
      const failed = result.status !== ExitStatus.OK;
      const e = result.exits;
      const summary = `${args.guest}: ${result.reason} after ${result.seconds.toFixed(3)} s (${e.total} exits: ${e.native} handled natively, ${e.typescript} in TypeScript)`;
      if (failed) {
        output.log(`tsvmm: ${summary}`);
        if (result.report) output.log(result.report);
        if (result.lastLine) output.log(`  last console line: ${JSON.stringify(result.lastLine)}`);
      } else log(summary);
      process.exitCode = result.status;
    } finally {
      detachInput?.();
      detachStop();
      output.end();
    }
  },
};
