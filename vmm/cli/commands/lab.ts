import type { CommandModule } from "yargs";
import { UsageError } from "../../errors";
import { LAB_KERNEL_KINDS, LabKernelKind, LabStatus, prepareLab, runLab } from "../../lab";
import { Progress } from "../../lab/proc";
import { parseCount, parseSeconds, parseSize } from "../parse";

/** The lab's kernel, init and Node need this much memory. */
const MIN_MEM_MIB = 256;

export interface LabArgs {
  kernel: LabKernelKind;
  cpus: string;
  mem: string;
  timeout: string;
  "prepare-only": boolean;
  quiet: boolean;
  verbose: boolean;
  cmd?: (string | number)[];
  _: (string | number)[];
  "--"?: (string | number)[];
}

const DESCRIPTION = [
  "Run a command inside the nested lab: a real KVM with nested paging.",
  "",
  "The lab is QEMU (TCG, -cpu EPYC,+svm,+npt) booting a Linux kernel whose kvm_amd runs guests with nested paging, so hypercall exits, KVM_EXIT_MEMORY_FAULT and private memory behave as on real hardware, even on a host whose own KVM cannot show them. Both kernels come from Debian (sid):",
  "* sw-protected (default): built from linux-source with vmm/lab/kernel/sw-protected.config; adds VM type 1 (KVM_X86_SW_PROTECTED_VM) and KVM_SET_MEMORY_ATTRIBUTES(PRIVATE).",
  "* stock: Debian's own linux-image and modules, what a distribution kernel offers.",
  "Both are cached under $XDG_CACHE_HOME/tsvmm/lab (else ~/.cache/tsvmm/lab) and fetched or rebuilt only when Debian's version or the config fragment changes: the first sw-protected run builds a kernel (minutes), later runs boot in seconds.",
  "",
  "Inside the lab:",
  "* / is the host's root, read-only, at the same paths (node, this checkout, its build).",
  "* /tmp is a fresh tmpfs; the checkout and the working directory stay visible even when they live under /tmp.",
  "* ./.lab-scratch (created in the working directory) is writable and shared with the host.",
  "* /dev/kvm is the lab's KVM, and the command runs as root in the lab.",
  "* The working directory, environment and arguments are the caller's; `tsvmm` is on PATH; TSVMM_LAB names the kernel and TSVMM_LAB_SCRATCH the scratch directory.",
  "* tracefs is mounted at /sys/kernel/tracing, with KVM's trace events under events/kvm.",
  "The command's stdin is /dev/null; its stdout and stderr come back separately, and its exit status is tsvmm lab's.",
  "",
  "Exit statuses of the lab itself (each with a message \"tsvmm: lab: ...\" on stderr):",
  `* ${LabStatus.NO_QEMU}: QEMU is missing (apt-get install qemu-system-x86)`,
  `* ${LabStatus.NO_APT}: Debian's archive cannot be reached and nothing is cached`,
  `* ${LabStatus.NO_BUILD_TOOLS}: kernel build tools are missing (the apt-get line is printed)`,
  `* ${LabStatus.BUILD_FAILED}: the kernel build failed (the log path is printed)`,
  `* ${LabStatus.INITRAMFS_FAILED}: the initramfs could not be built`,
  `* ${LabStatus.LAB_PANIC}: the lab kernel panicked or its init failed (last console lines printed)`,
  `* ${LabStatus.BOOT_TIMEOUT}: the lab did not boot in time (QEMU killed)`,
  `* ${LabStatus.NO_STATUS}: QEMU ended without the lab reporting a status`,
  `* ${LabStatus.FROZEN}: the lab froze (the lab's clock stood still for a minute while the command ran; QEMU killed)`,
  `* ${LabStatus.TIMEOUT}: the command ran longer than --timeout (QEMU killed)`,
  `* ${LabStatus.INTERRUPTED}: interrupted by SIGINT or SIGTERM (QEMU killed, the run directory removed)`,
  "QEMU dies with tsvmm lab even when tsvmm lab is killed (SIGKILL); the run directory such a run leaves in the temporary directory is removed by the next tsvmm lab.",
  "",
  "Environment: TSVMM_LAB_CACHE (cache directory), TSVMM_LAB_QEMU (QEMU binary), TSVMM_LAB_MIRROR and TSVMM_LAB_SUITE (Debian archive; default http://deb.debian.org/debian sid), TSVMM_LAB_BOOT_TIMEOUT, TSVMM_LAB_BUILD_TIMEOUT, TSVMM_LAB_DOWNLOAD_TIMEOUT (seconds), TSVMM_LAB_ACCEL (QEMU -accel, default tcg,thread=single), TSVMM_LAB_APPEND (more lab kernel parameters), TSVMM_LAB_QEMU_ARGS (more QEMU options, e.g. a -monitor socket), TSVMM_LAB_PIN (none, or the host CPU a one-CPU lab's QEMU runs on; default: one chosen by pid), TSVMM_LAB_BUILD_DIR (where the kernel is built; default /dev/shm when it has 4 GB free).",
].join("\n");

export const labCommand: CommandModule<object, LabArgs> = {
  command: "lab [cmd..]",
  describe: "Run a command inside the nested lab (QEMU + a Linux whose KVM has nested paging)",
  builder: (y) =>
    y
      .usage(`$0 lab [options] -- CMD [ARGS...]\n\n${DESCRIPTION}`)
      .parserConfiguration({ "populate--": true })
      .positional("cmd", { type: "string", array: true, describe: "the command to run in the lab (after --)" })
      .option("kernel", {
        choices: LAB_KERNEL_KINDS as LabKernelKind[],
        default: "sw-protected" as LabKernelKind,
        describe: "which lab kernel to boot",
      })
      .option("cpus", { type: "string", default: "2", describe: "vCPUs of the lab (1 to 8)" })
      .option("mem", { type: "string", default: "2G", describe: `memory of the lab, read as \`tsvmm run --mem\` reads it (e.g. 2048M, 4G; at least ${MIN_MEM_MIB}M)` })
      .option("timeout", {
        type: "string",
        default: "1800",
        describe: "limit on the command in seconds, from its start in the lab (0 = none); the lab is killed after it",
      })
      .option("prepare-only", {
        type: "boolean",
        default: false,
        describe: "only download/build the kernel and initramfs (fill the cache), run nothing",
      })
      .option("quiet", { type: "boolean", default: false, describe: "no progress lines on stderr" })
      .option("verbose", { type: "boolean", default: false, describe: "copy the lab's console to stderr" })
      .example("$0 lab -- tsvmm caps --json", "what the lab's KVM offers (kvm_amd, native execution, VM type 1, PRIVATE)")
      .example("$0 lab --kernel sw-protected -- tsvmm run hello", "boot the hello test guest on a real KVM")
      .example("$0 lab --kernel stock -- cat /sys/module/kvm_amd/parameters/npt", "Debian's kernel: is nested paging on?")
      .example("$0 lab --prepare-only --kernel stock", "fill the cache (CI does this first)")
      .example("$0 lab --timeout 1500 -- node dist/test/lab/tier.js", "the lab test tier on one kernel (npm run test:lab runs it on both)")
      .strict(),
  handler: async (args) => {
    const argv = (args["--"]?.length ? args["--"] : (args.cmd ?? [])).map(String);
    const cpus = parseCount("--cpus", args.cpus, 1, 8);
    const timeoutS = parseSeconds("--timeout", args.timeout);
    const memMiB = Number(parseSize("--mem", args.mem) >> 20n);
    if (memMiB < MIN_MEM_MIB) throw new UsageError(`--mem ${args.mem} is too small for the lab`, `give it at least ${MIN_MEM_MIB}M, e.g. --mem 2G`);
    if (args["prepare-only"]) {
      if (argv.length) throw new UsageError("--prepare-only runs no command", "drop the command or --prepare-only");
      await prepareLab(args.kernel, new Progress(args.quiet));
      return;
    }
    if (!argv.length) {
      throw new UsageError("name the command to run in the lab after --", "e.g. tsvmm lab -- tsvmm caps --json");
    }
    const result = await runLab({
      kernel: args.kernel,
      cpus,
      memMiB,
      timeoutS,
      argv,
      quiet: args.quiet,
      verbose: args.verbose,
    });
    process.exitCode = result.status;
  },
};
