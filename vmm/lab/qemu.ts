// QEMU for the lab: where it is, its command line (TCG, an EPYC with SVM and nested paging, the
// host's root and the run's exchange directory over 9p), and starting it so that it dies with
// tsvmm lab. QEMU never touches the terminal: no -nographic, stdin ignored, -display none
// -monitor none; its console goes to the run directory's console.log.
import { ChildProcess, spawn } from "node:child_process";
import * as os from "node:os";
import { LabError, LabStatus } from "./errors";
import { LabKernel } from "./kernel";
import { installCommand, packageNamed } from "./packages";
import { dyingWithUs, Progress, which } from "./proc";
import { StagedRun } from "./stage";

export interface LabRunSpec {
  kernel: LabKernel;
  initramfs: string;
  cpus: number;
  memMiB: number;
  argv: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** limit on the command, from the moment it starts in the lab */
  timeoutMs: number;
  /** limit from QEMU's start until the command starts */
  bootTimeoutMs: number;
  progress: Progress;
  /** copy the lab's console to stderr as it arrives */
  verbose: boolean;
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
}

export interface LabRunResult {
  status: number;
  /** QEMU start → command start */
  bootMs: number;
  /** command start → command end (as seen by the host) */
  commandMs: number;
  totalMs: number;
}

export function findQemu(): string {
  const name = process.env.TSVMM_LAB_QEMU || "qemu-system-x86_64";
  const q = which(name);
  if (!q) {
    throw new LabError(
      `${name} is not installed: the lab runs in QEMU`,
      LabStatus.NO_QEMU,
      `${installCommand([packageNamed("qemu-system-x86")])}  (Debian/Ubuntu; or set TSVMM_LAB_QEMU to a qemu-system-x86_64)`,
    );
  }
  return q;
}

/** QEMU's arguments for a staged run. */
export function qemuArgs(spec: LabRunSpec, run: StagedRun): string[] {
  // pci=noacpi: PCI interrupts from the PIR table instead of ACPI links, whose setup costs ~0.3 s
  // per virtio device under TCG (sw-protected boot 2.6 s -> 1.6 s; ACPI still provides the timers).
  const append = ["console=ttyS0", "panic=-1", "oops=panic", "pci=noacpi", spec.verbose ? "loglevel=7" : "quiet", process.env.TSVMM_LAB_APPEND ?? ""]
    .join(" ")
    .trim();
  const args = [
    "-nodefaults", "-no-user-config",
    "-accel", labAccel(),
    "-cpu", "EPYC,+svm,+npt",
    // One vCPU per socket: SeaBIOS's MP table lists only the first CPU of each package, and the
    // sw-protected kernel found its CPUs there while it had no ACPI.
    "-smp", `${spec.cpus},sockets=${spec.cpus},cores=1,threads=1`,
    "-m", String(spec.memMiB),
    "-display", "none", "-monitor", "none", "-no-reboot",
    "-serial", `file:${run.consoleLog}`,
    "-kernel", spec.kernel.image,
    "-initrd", spec.initramfs,
    "-append", append,
    "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
    "-virtfs", `local,path=${run.labio},mount_tag=labio,security_model=none,multidevs=remap`,
  ];
  if (run.scratch) args.push("-virtfs", `local,path=${run.scratch},mount_tag=scratch,security_model=none,multidevs=remap`);
  const extra = process.env.TSVMM_LAB_QEMU_ARGS?.trim();
  if (extra) args.push(...extra.split(/\s+/));
  return args;
}

/**
 * One TCG thread for all vCPUs: with multi-threaded TCG the lab kernel's own code patching (the
 * preempt-notifier static key in __schedule, flipped whenever the first or last KVM VM comes or
 * goes) races with the other vCPU and ends in "Oops: int3" in __schedule: measured 3 of 5
 * stock-kernel lab tiers. Single-threaded it passed every time, and was no slower on 2 cores.
 */
export function labAccel(): string {
  return process.env.TSVMM_LAB_ACCEL || "tcg,thread=single";
}

/**
 * The host CPU that all of a one-CPU lab's QEMU threads run on, or undefined to let them float.
 * Linux guests booting in a one-CPU lab froze the lab (its clock stopped, status 89) far more often
 * when QEMU's TCG thread and its main loop (timers, 9p) ran in parallel on an idle host than when
 * they shared one CPU: on a quiet host, floating 2 of 3 and 3 of 4 labs froze, pinned with
 * taskset 0 of 5 (docs/exit-path.md). Two-CPU labs float as before. TSVMM_LAB_PIN=none turns it
 * off, TSVMM_LAB_PIN=N picks the CPU.
 */
export function labPinnedCpu(labCpus: number): number | undefined {
  const pin = process.env.TSVMM_LAB_PIN;
  if (pin === "none") return undefined;
  if (pin !== undefined && /^\d+$/.test(pin)) return Number(pin);
  if (labCpus !== 1) return undefined;
  return process.pid % os.cpus().length; // labs started side by side land on different CPUs
}

/** Start QEMU so that it dies with tsvmm lab (dyingWithUs), on one host CPU when `cpu` is given
 *  (taskset, from util-linux like setpriv). Its stdout is ignored, stderr piped. */
export function startQemu(qemu: string, args: string[], progress: Progress, cpu?: number): ChildProcess {
  const taskset = cpu === undefined ? undefined : which("taskset");
  if (cpu !== undefined && !taskset) progress.warn(`no taskset (${packageNamed("util-linux").name}): the one-CPU lab's QEMU is not pinned to a CPU, and freezes more often`);
  const [file, argv] = taskset ? dyingWithUs(taskset, ["-c", String(cpu), qemu, ...args]) : dyingWithUs(qemu, args);
  if (file === qemu || file === taskset) progress.warn(`no setpriv (${packageNamed("util-linux").name}): QEMU would outlive a SIGKILLed tsvmm lab`);
  try {
    return spawn(file, argv, { stdio: ["ignore", "ignore", "pipe"] });
  } catch (e) {
    throw new LabError(`cannot start ${qemu}: ${(e as Error).message}`, LabStatus.NO_QEMU);
  }
}
