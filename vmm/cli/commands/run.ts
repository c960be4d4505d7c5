import type { CommandModule } from "yargs";
import { ConsoleMode, DEFAULT_LINUX_MEM, DEFAULT_MEM, runGuest } from "../../run";
import { parseCount, parseRanges, parseSeconds, parseSize } from "../parse";
import { CMDLINE_SIZE, MAX_CPUS } from "../../machine/abi";
import { ExitStatus, UsageError } from "../../errors";
import { DEFAULT_KERNEL_EVENTS } from "../../trace/kernel";
import { attachTerminalInput } from "../terminal";
import { abortOnStop } from "../stop";
import { ConsoleLogWriter, LOG_HOLD_MS } from "../../console/logWriter";
import { MAX_IMAGE_SIZE } from "../../guests";
import type { MonitorInput } from "../../control/monitor";

export interface RunArgs {
  guest?: string;
  kernel?: string;
  initrd?: string;
  mem?: string;
  // Declared without a yargs type, so a bad value reaches our parsers as typed (not as NaN).
  cpus: unknown;
  timeout: unknown;
  console: ConsoleMode;
  trace?: string;
  "kernel-events"?: string;
  cmdline: string;
  quiet: boolean;
  private?: string;
  backend: "auto" | "attributes" | "memslots";
  "shared-bit"?: unknown;
  "on-fault": "convert" | "deny" | "stop";
  "on-hypercall": "convert" | "deny";
  prealloc: boolean;
  prefault: boolean;
  discard: "always" | "never";
  "convert-via"?: "hypercall" | "doorbell";
  break?: string[];
  monitor: boolean;
  "monitor-script"?: string;
  gdb?: string;
  "gdb-wait": boolean;
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
  GUEST_RESET: "a multiboot or Linux guest reset the machine (i8042 0xfe to port 0x64, port 0xcf9)",
  GUEST_PANIC: "a multiboot or Linux guest panicked (a panic line on the console)",
  TIMEOUT: "timeout (--timeout)",
  HANGUP: "SIGHUP",
  INTERRUPTED: "SIGINT (Ctrl-C, or Ctrl-A x on a terminal)",
  STDOUT_CLOSED: "stdout was closed, e.g. `tsvmm run hello | head -1`",
  TERMINATED: "SIGTERM",
};

export const runCommand: CommandModule<object, RunArgs> = {
  command: "run [guest]",
  describe: "Boot a test guest, a multiboot kernel or a Linux bzImage with guest_memfd RAM and its console on COM1",
  builder: (y) =>
    y
      .positional("guest", {
        type: "string",
        describe: "a shipped guest (see `tsvmm guests`), a path to a static x86-64 ELF linked at 1 MiB, or a multiboot (v1) kernel",
      })
      .option("kernel", {
        type: "string",
        describe: "boot this Linux bzImage (boot protocol 2.10+, 64-bit entry) instead of a guest; console=ttyS0 puts its console on COM1",
        group: "Multiboot and Linux guests:",
      })
      .option("initrd", {
        type: "string",
        describe: "Linux: the initramfs. Multiboot: modules, comma-separated, each 'FILE[ ARGS]'",
        group: "Multiboot and Linux guests:",
      })
      .option("mem", {
        type: "string",
        describe: `guest RAM size: a bare number is MiB (as QEMU's -m); K, M, G, T suffixes are powers of 1024, B is bytes. tsvmm guests: 2M to 3G, default ${DEFAULT_MEM >> 20n}M; multiboot: default ${DEFAULT_MEM >> 20n}M; Linux: default ${DEFAULT_LINUX_MEM >> 20n}M; above 3G, RAM continues at 4 GiB`,
      })
      .option("cpus", { requiresArg: true, default: 1, describe: `vCPUs (1 to ${MAX_CPUS}): tsvmm guests start each at the firmware entry; multiboot and Linux guests start vCPU 0, the others wait for INIT/SIPI` })
      .option("timeout", { requiresArg: true, describe: "stop the guest after this many seconds and exit 124 (0 = no limit; default 60, none with --monitor/--gdb)" })
      .option("console", {
        choices: ["raw", "screen"] as const,
        default: "raw" as const,
        describe: "raw streams the guest's bytes to stdout; screen renders them through a headless terminal and prints the final screen",
      })
      .option("trace", {
        type: "string",
        nargs: 1, // so that a lone "-" is the value, not a positional
        describe: "write every event (start with the run's facts, conversions, memory faults, host requests, halts, end) as NDJSON to this file; - writes it to stdout and moves the guest's console to stderr. `tsvmm trace FILE` shows it (docs/trace.md)",
      })
      .option("kernel-events", {
        type: "string",
        describe: `with --trace: record KVM's own trace events through tracefs during the run (root; a kernel with KVM's trace events, e.g. \`tsvmm lab --kernel stock\`) and merge them into the trace on its time base; a comma-separated list of SYSTEM:EVENT or SYSTEM (all of it), or nothing for ${DEFAULT_KERNEL_EVENTS.join(",")}`,
      })
      .option("cmdline", {
        type: "string",
        default: "",
        alias: "append",
        describe: `tsvmm guests: text for the boot page (at most ${CMDLINE_SIZE - 1} bytes), e.g. fault=pf; multiboot and Linux: the kernel command line`,
      })
      .option("quiet", { type: "boolean", default: false, alias: "q", describe: "print only the guest's console (and failures); conversions are then answered on the vCPU threads (attributes backend, no --trace)" })
      .option("private", {
        type: "string",
        describe: "RAM that starts private: all (everything above the guest image), none, or ranges START-END / START+SIZE (sizes as in --mem; 0x numbers are bytes). Default: all for guests that convert memory (convert, implicit, smp-convert), none otherwise",
        group: "Private memory:",
      })
      .option("backend", {
        choices: ["auto", "attributes", "memslots"] as const,
        default: "auto" as const,
        describe: "attributes: KVM_X86_SW_PROTECTED_VM + KVM_SET_MEMORY_ATTRIBUTES; memslots: default VM, private and shared guest_memfd slots rebuilt per conversion; auto: attributes where the host has it, else memslots. Multiboot and Linux guests: all RAM shared, on plain shared RAM unless attributes or memslots is named",
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
        describe: "on KVM_EXIT_MEMORY_FAULT: convert and re-run; deny: stop that vCPU with a report; stop: stop the VM with the event and registers (exit 75), or with --monitor/--gdb pause there (continue re-runs the access)",
        group: "Private memory:",
      })
      .option("on-hypercall", {
        choices: ["convert", "deny"] as const,
        default: "convert" as const,
        describe: "on KVM_HC_MAP_GPA_RANGE (or the doorbell): convert, or deny with EINVAL to the guest",
        group: "Private memory:",
      })
      .option("prealloc", { type: "boolean", default: false, describe: "fallocate all private memory up front instead of on demand", group: "Private memory:" })
      .option("prefault", {
        type: "boolean",
        default: false,
        describe:
          "after each guest conversion to private, map the range in KVM's page tables (KVM_PRE_FAULT_MEMORY, as QEMU does after KVM_HC_MAP_GPA_RANGE): the conversion takes longer, the guest's first touch of each page does not fault. Needs KVM_CAP_PRE_FAULT_MEMORY (`tsvmm caps`)",
        group: "Private memory:",
      })
      .option("discard", {
        choices: ["always", "never"] as const,
        default: "always" as const,
        describe: "always: punch the side a converted page left (as QEMU, SNP and TDX: a page reads zero after a round trip); never: keep both copies, so shared data survives a private round trip (as the kernel's private_mem_conversions_test)",
        group: "Private memory:",
      })
      .option("convert-via", {
        choices: ["hypercall", "doorbell"] as const,
        describe: "how guests ask for conversions: KVM_HC_MAP_GPA_RANGE by vmcall/vmmcall, or the port doorbell with the same registers. Default: the hypercall where KVM delivers it to userspace, else the doorbell",
        group: "Private memory:",
      })
      .option("break", {
        type: "string",
        array: true,
        describe:
          "pause every vCPU when an event matches: conversion[,range=R,to=private|shared,source=hypercall|doorbell|fault|monitor|api,vcpu=N], fault, refused, exit=NAME, addr=SYMBOL|ADDRESS (instruction), watch=SYMBOL|ADDRESS[+LEN][,access=w|rw] (data: LEN 1/2/4/8, aligned; addr= and watch= share 4 debug registers; `tsvmm caps` says whether they work here). Stops show RIP as symbol+offset (file:line). Without --monitor or --gdb each stop is printed and the VM goes on",
        group: "Debugging:",
      })
      .option("monitor", {
        type: "boolean",
        default: false,
        describe: "start paused with a command prompt (`help` lists the commands; Ctrl-C pauses); commands are read from stdin when it is not a terminal",
        group: "Debugging:",
      })
      .option("monitor-script", { type: "string", describe: "start paused and run the monitor commands in FILE; when it ends the VM runs on", group: "Debugging:" })
      .option("gdb", { type: "string", describe: "GDB stub on tcp:PORT (localhost) or unix:PATH; gdb GUEST.elf -ex 'target remote :PORT'", group: "Debugging:" })
      .option("gdb-wait", { type: "boolean", default: false, describe: "start paused until a debugger attaches (--gdb, default tcp:1234)", group: "Debugging:" })
      .example("$0 run hello", "boot the default test guest")
      .example("$0 run multiboot --cpus 2", "the multiboot test kernel: info block, fw_cfg, INIT/SIPI, PIT and UART interrupts")
      .example("$0 lab -- tsvmm run --kernel bzImage --initrd initramfs.cpio --append 'console=ttyS0'", "Linux is practical on a real KVM (or in the lab), not on an emulating one")
      .example("$0 run smp --cpus 4", "every vCPU reports in")
      .example("$0 run fault --cmdline fault=pf", "take a page fault; the firmware reports it and tsvmm exits 71")
      .example("$0 run spin --timeout 2", "a guest that never exits is stopped after 2 s with its registers (exit 124)")
      .example("$0 lab -- tsvmm run convert --backend memslots", "private memory needs a real KVM: the nested lab has one")
      .example("$0 run implicit --shared-bit 40 --trace t.ndjson", "implicit conversions on KVM_EXIT_MEMORY_FAULT, every event in the trace")
      .example("$0 run hello --monitor --break addr=tsvmm_main", "stop at the guest's main function and look around")
      .example("$0 run hello --gdb tcp:1234 --gdb-wait", "then: gdb build/guest/hello.elf -ex 'target remote :1234'")
      .example("$0 run hello --trace - | jq -c .", "the trace on stdout, the console on stderr")
      .epilog(
        [
          "Exit status: the guest's own (0-63, written to port 0xf4), or tsvmm's:",
          ...Object.entries(STATUS_MEANINGS).map(([name, meaning]) => `  ${String(ExitStatus[name as keyof typeof STATUS_MEANINGS]).padStart(3)}  ${meaning}`),
          "",
          "SIGINT, SIGTERM and SIGHUP stop the VM cleanly (summary, the trace's end event); a second one of the same kind ends tsvmm at once.",
          `Run-log lines (stderr) wait for the end of the guest's console line (stdout), at most ${LOG_HOLD_MS} ms, then start on a new line.`,
          `A guest image is a regular file of at most ${MAX_IMAGE_SIZE >> 30} GiB.`,
          "Multiboot and Linux guests end with 0 when the kernel powers off ('reboot: Power down' or, without ACPI, 'Power off not available: System halted instead', then every vCPU halted) or writes its status to port 0xf4.",
          "With a terminal on stdin, what you type reaches the guest's COM1 receiver.",
        ].join("\n"),
      )
      .strict(),
  handler: async (args) => {
    const memSize = args.mem === undefined ? undefined : parseSize("--mem", args.mem);
    const cpus = parseCount("--cpus", args.cpus, 1, MAX_CPUS);
    const debugging = args.monitor || args["monitor-script"] !== undefined || args.gdb !== undefined || args["gdb-wait"];
    const timeout = parseSeconds("--timeout", args.timeout ?? (debugging ? 0 : 60));
    const kernelEvents = args["kernel-events"] === undefined ? undefined : args["kernel-events"].split(",").map((e) => e.trim()).filter(Boolean);
    if (kernelEvents && !args.trace) throw new UsageError("--kernel-events needs --trace FILE", "the kernel's events are merged into the trace: add --trace FILE (or --trace -)");
    const privateRanges = args.private === undefined ? undefined : parseRanges("--private", args.private);
    // Only whether it is a bit of a 64-bit address; the VM checks it against this CPU.
    const sharedBit =
      args["shared-bit"] === undefined
        ? undefined
        : parseCount("--shared-bit", args["shared-bit"], 1, 63, "give the bit of the guest-physical address that selects the shared view, e.g. --shared-bit 39");
    // With --trace - stdout carries the trace alone.
    const output = new ConsoleLogWriter(args.trace === "-" ? process.stderr : process.stdout, process.stderr);
    // A monitor on the terminal or on stdin owns stdin: the guest gets no keyboard then.
    const monitor: MonitorInput | undefined =
      args["monitor-script"] !== undefined
        ? (await import("../../control/session")).readMonitorScript(args["monitor-script"])
        : args.monitor
          ? process.stdin.isTTY
            ? { kind: "terminal", input: process.stdin, output: process.stdout }
            : { kind: "stream", input: process.stdin }
          : undefined;
    const log = (line: string) => {
      if (!args.quiet) output.log(`tsvmm: ${line}`);
    };
    const abort = new AbortController();
    const detachStop = abortOnStop(abort);
    let detachInput: (() => void) | undefined;
    try {
      const result = await runGuest({
        guest: args.guest,
        kernel: args.kernel,
        initrd: args.initrd,
        memSize,
        cpus,
        timeout,
        cmdline: args.cmdline,
        console: args.console,
        output: { write: (bytes) => output.console(bytes) },
        trace: args.trace,
        kernelEvents: kernelEvents && (kernelEvents.length ? kernelEvents : DEFAULT_KERNEL_EVENTS),
        // --quiet: no run log at all, so conversions need no events (the vCPU threads may answer them)
        log: args.quiet ? undefined : log,
        signal: abort.signal,
        onInput:
          monitor?.kind === "terminal" || monitor?.kind === "stream"
            ? undefined
            : (send) => (detachInput = attachTerminalInput(send, () => abort.abort({ status: ExitStatus.INTERRUPTED, reason: "interrupted from the terminal" }))),
        debug:
          debugging || args.break?.length
            ? { breaks: args.break, monitor, gdb: args.gdb, gdbWait: args["gdb-wait"], write: (text) => output.console(Buffer.from(text)) }
            : undefined,
        privateMemory: {
          private: privateRanges,
          backend: args.backend,
          sharedBit,
          onFault: args["on-fault"],
          onHypercall: args["on-hypercall"],
          prealloc: args.prealloc,
          prefault: args.prefault,
          discard: args.discard,
          convertVia: args["convert-via"],
        },
      });
      detachInput?.();
      output.end();
      if (result.screen !== undefined) output.console(Buffer.from(result.screen + "\n"));
      const failed = result.status !== ExitStatus.OK;
      const e = result.exits;
      const summary = `${args.guest ?? args.kernel}: ${result.reason} after ${result.seconds.toFixed(3)} s (${e.total} exits: ${e.native} handled natively, ${e.typescript} in TypeScript)`;
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
