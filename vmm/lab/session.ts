// One lab run: stage its directory (stage.ts), start QEMU (qemu.ts), watch the console and the
// command's output until QEMU ends (watch.ts), then tell how the run ended: the command's status,
// or the lab's own failure as a LabError. The run directory is removed unless a failure keeps it
// for diagnosis; directories of killed runs are removed by the next run.
import * as fs from "node:fs";
import * as path from "node:path";
import { LabError, LabStatus } from "./errors";
import { findQemu, labAccel, labPinnedCpu, LabRunResult, LabRunSpec, qemuArgs, startQemu } from "./qemu";
import { seconds } from "./proc";
import { isKept, keepRunDir, removeRunDir, removeStaleRunDirs, stageRun, StagedRun } from "./stage";
import { FROZEN_MS, KillReason, LabWatcher } from "./watch";

const NOISE = [/TCG doesn't support requested feature/];

interface QemuExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
  pid?: number;
  stderr: string;
}

export async function runInLab(spec: LabRunSpec): Promise<LabRunResult> {
  const qemu = findQemu();
  const out = spec.stdout ?? process.stdout;
  const err = spec.stderr ?? process.stderr;
  // A reader that goes away (`tsvmm lab -- ... | head`) must not crash the lab's supervisor.
  const ignoreEpipe = (e: NodeJS.ErrnoException) => {
    if (e.code !== "EPIPE") throw e;
  };
  out.on("error", ignoreEpipe);
  err.on("error", ignoreEpipe);
  for (const dir of removeStaleRunDirs()) spec.progress.say(`removed ${dir}, left by a tsvmm lab that was killed`);
  const run = stageRun({ kind: spec.kernel.kind, argv: spec.argv, cwd: spec.cwd, env: spec.env, progress: spec.progress });
  try {
    const cpu = labPinnedCpu(spec.cpus);
    spec.progress.say(
      `booting the lab (${spec.kernel.kind} kernel ${spec.kernel.version}, ${spec.cpus} vCPUs, ${spec.memMiB} MiB, QEMU -accel ${labAccel()} -cpu EPYC,+svm,+npt${cpu === undefined ? "" : `, on host CPU ${cpu}`}) ...`,
    );
    const watcher = new LabWatcher({ ...run, argv: spec.argv, bootTimeoutMs: spec.bootTimeoutMs, timeoutMs: spec.timeoutMs, progress: spec.progress, verbose: spec.verbose, out, err });
    const { exit, killedFor } = await watchQemu(qemu, qemuArgs(spec, run), cpu, watcher, spec, run);
    return judge(spec, run, watcher, exit, killedFor);
  } catch (e) {
    if (!isKept(run)) removeRunDir(run); // interrupted, or a failure of ours before any verdict
    throw e;
  } finally {
    setImmediate(() => {
      out.removeListener("error", ignoreEpipe);
      err.removeListener("error", ignoreEpipe);
    });
  }
}

/** Run QEMU to its end, polling the watcher; SIGINT/SIGTERM or our exit kill it. */
async function watchQemu(qemu: string, args: string[], cpu: number | undefined, watcher: LabWatcher, spec: LabRunSpec, run: StagedRun): Promise<{ exit: QemuExit; killedFor?: KillReason }> {
  const child = startQemu(qemu, args, spec.progress, cpu);
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  let killedFor: KillReason | undefined;
  const kill = (why: KillReason) => {
    if (killedFor) return;
    killedFor = why;
    try {
      if (child.pid) process.kill(child.pid, "SIGKILL");
    } catch {
      /* gone */
    }
  };
  const onSignal = (sig: NodeJS.Signals) => {
    spec.progress.warn(`${sig}: stopping the lab (QEMU pid ${child.pid})`);
    kill("interrupt");
  };
  const onExit = () => {
    kill("interrupt");
    removeRunDir(run);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("exit", onExit);
  const timer = setInterval(() => {
    const why = watcher.poll();
    if (why) kill(why);
  }, 50);
  const exit = await new Promise<QemuExit>((resolve) => {
    child.on("error", (error) => resolve({ code: null, signal: null, error, pid: child.pid, stderr }));
    child.on("exit", (code, signal) => resolve({ code, signal, pid: child.pid, stderr }));
  });
  clearInterval(timer);
  process.removeListener("SIGINT", onSignal);
  process.removeListener("SIGTERM", onSignal);
  process.removeListener("exit", onExit);
  watcher.finish();
  exit.stderr = stderr;
  return { exit, killedFor };
}

/** How the run ended: the command's status, or a LabError saying what went wrong. */
function judge(spec: LabRunSpec, run: StagedRun, w: LabWatcher, exit: QemuExit, killedFor: KillReason | undefined): LabRunResult {
  const totalMs = Date.now() - w.started;
  if (killedFor === "interrupt") {
    throw new LabError(`interrupted; the lab (QEMU pid ${exit.pid}) was killed`, LabStatus.INTERRUPTED);
  }
  const status = readStatus(run) ?? w.exitMarker;
  if (status !== undefined) {
    removeRunDir(run);
    const commandMs = (w.endAt || Date.now()) - (w.commandAt || w.started);
    spec.progress.say(`command exited with status ${status} after ${seconds(commandMs)} in the lab; lab total ${seconds(totalMs)}`);
    return { status, bootMs: (w.commandAt || w.started) - w.started, commandMs, totalMs };
  }

  keepRunDir(run);
  const kept = `(console and files kept in ${run.dir})`;
  if (killedFor === "timeout") {
    return fail(`the command ran longer than --timeout ${spec.timeoutMs / 1000} s; the lab (QEMU pid ${exit.pid}) was killed ${kept}`, LabStatus.TIMEOUT);
  }
  if (killedFor === "frozen") {
    return fail(
      `the lab froze: the lab's clock stood still for ${FROZEN_MS / 1000} s while the command ran (its kernel stopped taking timer interrupts; seen in one-CPU labs under TCG, below tsvmm: not a failure of the command); QEMU pid ${exit.pid} was killed ${kept}. Last console lines:\n${w.tail(10) || "    (nothing on the console)"}`,
      LabStatus.FROZEN,
      "run it again; `npm test` runs a lab tier (or a Linux case) whose lab froze again, up to twice",
    );
  }
  if (killedFor === "boot") {
    return fail(
      `the lab did not reach the command within ${spec.bootTimeoutMs / 1000} s (TSVMM_LAB_BOOT_TIMEOUT); QEMU pid ${exit.pid} was killed ${kept}. Last console lines:\n${w.tail(25) || "    (nothing on the console)"}`,
      LabStatus.BOOT_TIMEOUT,
    );
  }
  if (w.failReason || w.panic) {
    // Show the panic message itself (and what led to it), not only the stack dump after it.
    const at = w.consoleLines.findIndex((l) => /Kernel panic/.test(l));
    const shown = at >= 0 ? w.consoleLines.slice(Math.max(0, at - 12), at + 4).map((l) => "    " + l).join("\n") : w.tail(30);
    return fail(
      `${w.failReason ? `the lab's init failed: ${w.failReason}` : "the lab kernel panicked"} ${kept}. ${at >= 0 ? "Console around the panic" : "Last console lines"}:\n${shown}`,
      LabStatus.LAB_PANIC,
      spec.kernel.kind === "sw-protected" ? "compare with --kernel stock; the config fragment is vmm/lab/kernel/sw-protected.config" : undefined,
    );
  }
  const how = exit.error ? `could not run: ${exit.error.message}` : exit.signal ? `was killed by ${exit.signal}` : `exited with ${exit.code}`;
  const qemuMsg = exit.stderr
    .split("\n")
    .filter((l) => l.trim() && !NOISE.some((r) => r.test(l)))
    .join("\n")
    .trim();
  return fail(
    `QEMU ${how} before the lab reported a status ${kept}${qemuMsg ? `\n  qemu: ${qemuMsg.split("\n").join("\n  qemu: ")}` : ""}${
      w.consoleLines.length ? `\nLast console lines:\n${w.tail(20)}` : ""
    }`,
    LabStatus.NO_STATUS,
  );
}

function fail(message: string, status: number, hint?: string): never {
  throw new LabError(message, status, hint);
}

function readStatus(run: StagedRun): number | undefined {
  try {
    const s = fs.readFileSync(path.join(run.labio, "status"), "utf8").trim();
    return /^\d+$/.test(s) ? Number(s) : undefined;
  } catch {
    return undefined;
  }
}
