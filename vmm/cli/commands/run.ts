import type { CommandModule } from "yargs";
import { ConsoleMode, DEFAULT_LINUX_MEM, DEFAULT_MEM, runGuest } from "../../run";
import { parseCount, parseRanges, parseSeconds, parseSize } from "../parse";
import { MAX_CPUS } from "../../machine/abi";
import { ExitStatus } from "../../errors";
import { attachTerminalInput } from "../terminal";

export interface RunArgs {
  guest?: string;
  kernel?: string;
  initrd?: string;
  mem?: string;
  cpus: number;
  timeout: number;
  console: ConsoleMode;
  trace?: string;
  cmdline: string;
  quiet: boolean;
  private?: string;
  backend: "auto" | "attributes" | "memslots";
  "shared-bit"?: number;
  "on-fault": "convert" | "deny" | "stop";
  "on-hypercall": "convert" | "deny";
  prealloc: boolean;
}

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
      .option("mem", { type: "string", describe: `guest RAM size (K/M/G suffix). tsvmm guests: 2M to 3G, default ${DEFAULT_MEM >> 20n}M; multiboot: default ${DEFAULT_MEM >> 20n}M, Linux: default ${DEFAULT_LINUX_MEM >> 20n}M, above 3G RAM continues at 4 GiB` })
      .option("cpus", { type: "number", default: 1, describe: `vCPUs (1 to ${MAX_CPUS}): tsvmm guests start each at the firmware entry; multiboot and Linux guests start vCPU 0, the others wait for INIT/SIPI` })
      .option("timeout", { type: "number", default: 60, describe: "stop the guest after this many seconds and exit 124 (0 = no limit)" })
      .option("console", {
        choices: ["raw", "screen"] as const,
        default: "raw" as const,
        describe: "raw streams the guest's bytes to stdout; screen renders them through a headless terminal and prints the final screen",
      })
      .option("trace", { type: "string", describe: "write every event (conversions, memory faults, host requests, halts, start, end) as NDJSON to this file" })
      .option("cmdline", {
        type: "string",
        default: "",
        alias: "append",
        describe: "tsvmm guests: text for the boot page, e.g. fault=pf; multiboot and Linux: the kernel command line",
      })
      .option("quiet", { type: "boolean", default: false, alias: "q", describe: "print only the guest's console (and failures)" })
      .option("private", {
        type: "string",
        describe: "RAM that starts private: all (everything above the guest image), none, or ranges START-END / START+SIZE. Default: all for guests that convert memory (convert, implicit, smp-convert), none otherwise",
        group: "Private memory:",
      })
      .option("backend", {
        choices: ["auto", "attributes", "memslots"] as const,
        default: "auto" as const,
        describe: "attributes: KVM_X86_SW_PROTECTED_VM + KVM_SET_MEMORY_ATTRIBUTES; memslots: default VM, private and shared guest_memfd slots rebuilt per conversion; auto: attributes where the host has it, else memslots",
        group: "Private memory:",
      })
      .option("shared-bit", {
        type: "number",
        describe: "aliased layout (memslots): page p is private at p and shared at p | 2^N; touching the other view is a KVM_EXIT_MEMORY_FAULT that converts it",
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
      .example("$0 run multiboot --cpus 2", "the multiboot test kernel: info block, fw_cfg, INIT/SIPI, PIT and UART interrupts")
      .example("$0 lab -- tsvmm run --kernel bzImage --initrd initramfs.cpio --append 'console=ttyS0'", "Linux is practical on a real KVM (or in the lab), not on an emulating one")
      .example("$0 run smp --cpus 4", "every vCPU reports in")
      .example("$0 run fault --cmdline fault=pf", "take a page fault; the firmware reports it and tsvmm exits 71")
      .example("$0 run spin --timeout 2", "a guest that never exits is stopped after 2 s with its registers (exit 124)")
      .example("$0 lab -- tsvmm run convert --backend memslots", "private memory needs a real KVM: the nested lab has one")
      .example("$0 run implicit --shared-bit 40 --trace conv.ndjson", "implicit conversions on KVM_EXIT_MEMORY_FAULT, every event in the trace")
      .epilog(
        [
          "Exit status: the guest's own status (0-63, written to port 0xf4), or",
          "  64 bad command line, 65 bad guest image, 69 host lacks a capability, 70 VMM error,",
          "  71 guest exception, 72 triple fault, 73 KVM internal/emulation error, 74 unhandled exit,",
          "  75 memory fault, 79 guest reset (i8042, port 0xcf9), 80 guest panic (seen on the console),",
          "  124 timeout, 130 interrupted (Ctrl-C, or Ctrl-A x on a terminal).",
          "Multiboot and Linux guests: 0 when the kernel powers off ('reboot: Power down', then every",
          "  vCPU halted) or writes its status to port 0xf4; 74 when every vCPU halted with interrupts off.",
          "With a terminal on stdin, what you type reaches the guest's COM1 receiver.",
        ].join("\n"),
      )
      .strict(),
  handler: async (args) => {
    const memSize = args.mem === undefined ? undefined : parseSize("--mem", args.mem);
    const cpus = parseCount("--cpus", args.cpus, 1, MAX_CPUS);
    const timeout = parseSeconds("--timeout", args.timeout);
    const log = (line: string) => {
      if (!args.quiet) process.stderr.write(`tsvmm: ${line}\n`);
    };
    const abort = new AbortController();
    const onSigint = () => abort.abort();
    process.once("SIGINT", onSigint);
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
        output: process.stdout,
        trace: args.trace,
        log,
        signal: abort.signal,
        onInput: (send) => (detachInput = attachTerminalInput(send, () => abort.abort())),
        privateMemory: {
          private: args.private === undefined ? undefined : parseRanges("--private", args.private),
          backend: args.backend,
          sharedBit: args["shared-bit"],
          onFault: args["on-fault"],
          onHypercall: args["on-hypercall"],
          prealloc: args.prealloc,
        },
      });
      detachInput?.();
      if (result.screen !== undefined) process.stdout.write(result.screen + "\n");
      const failed = result.status !== ExitStatus.OK;
      const e = result.exits;
      const summary = `${args.guest ?? args.kernel}: ${result.reason} after ${result.seconds.toFixed(3)} s (${e.total} exits: ${e.native} handled natively, ${e.typescript} in TypeScript)`;
      if (failed) {
        process.stderr.write(`tsvmm: ${summary}\n`);
        if (result.report) process.stderr.write(result.report + "\n");
        if (result.lastLine) process.stderr.write(`  last console line: ${JSON.stringify(result.lastLine)}\n`);
      } else log(summary);
      process.exitCode = result.status;
    } finally {
      detachInput?.();
      process.removeListener("SIGINT", onSigint);
    }
  },
};
