// Boot the lab in QEMU (TCG, an EPYC with SVM and nested paging), run one command in it and
// bring back its stdout, stderr and exit status.
//
// Channels between host and lab (all created per run in a private directory under os.tmpdir()):
//   console.log    -serial file: the lab kernel's console, init's progress markers
//                  (TSVMM-LAB-STAGE, TSVMM-LAB-FAIL) and the exit marker TSVMM-LAB-EXIT <status>
//   labio/         -virtfs tag "labio" (writable): run.sh, keep, scratch and bin/tsvmm written by
//                  the host; stdout, stderr and status written by the lab. The host follows
//                  stdout and stderr while the command runs and copies them to its own.
// QEMU never touches the terminal: no -nographic, stdin ignored, -display none -monitor none.
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { LabError, LabStatus } from "./errors";
import { LabKernel } from "./kernel";
import { installCommand, packageNamed } from "./packages";
import { repoRoot } from "./paths";
import { Progress, seconds, which } from "./proc";

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

/** Quote for /bin/sh. */
export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Paths under /tmp that the lab's tmpfs on /tmp must not hide, parents first, no nesting. */
export function keepPaths(paths: string[]): string[] {
  const real = [...new Set(paths.map((p) => {
    try {
      return fs.realpathSync(p);
    } catch {
      return path.resolve(p);
    }
  }))]
    .filter((p) => p.startsWith("/tmp/"))
    .sort((a, b) => a.length - b.length);
  const out: string[] = [];
  for (const p of real) if (!out.some((k) => p === k || p.startsWith(k + "/"))) out.push(p);
  return out;
}

/** The script the lab runs chrooted into the host's root: working directory, environment, argv. */
export function runScript(argv: string[], cwd: string, env: Record<string, string>): string {
  const assigns = Object.entries(env)
    .filter(([k]) => k && !k.includes("=") && !k.includes("\0"))
    .map(([k, v]) => shq(`${k}=${v}`));
  return [
    "#!/bin/sh",
    "# written by tsvmm lab (vmm/lab/qemu.ts); run by the lab's /init inside the chroot",
    `cd ${shq(cwd)} 2>/dev/null || { echo ${shq(`tsvmm lab: cannot enter ${cwd} inside the lab`)} >&2; exit 126; }`,
    `exec /usr/bin/env -i \\\n  ${assigns.join(" \\\n  ")} \\\n  ${argv.map(shq).join(" ")}`,
    "",
  ].join("\n");
}

const NOISE = [/TCG doesn't support requested feature/];

class Follower {
  private pos = 0;
  private fd: number | undefined;
  constructor(private readonly file: string) {}

  /** New bytes since the last call. */
  read(): Buffer {
    if (this.fd === undefined) {
      try {
        this.fd = fs.openSync(this.file, "r");
      } catch {
        return Buffer.alloc(0);
      }
    }
    const size = fs.fstatSync(this.fd).size;
    if (size < this.pos) this.pos = 0; // truncated by the lab's `>` redirect
    if (size === this.pos) return Buffer.alloc(0);
    const buf = Buffer.alloc(size - this.pos);
    const n = fs.readSync(this.fd, buf, 0, buf.length, this.pos);
    this.pos += n;
    return buf.subarray(0, n);
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
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
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-lab-"));
  const labio = path.join(runDir, "labio");
  const consoleLog = path.join(runDir, "console.log");
  fs.mkdirSync(path.join(labio, "bin"), { recursive: true });
  const repo = repoRoot();

  // Scratch: <cwd>/.lab-scratch, writable in the lab at the same path.
  let scratch: string | undefined = spec.cwd === "/" ? undefined : path.join(spec.cwd, ".lab-scratch");
  if (scratch) {
    try {
      fs.mkdirSync(scratch, { recursive: true });
    } catch (e) {
      spec.progress.warn(`no writable scratch in the lab: cannot create ${scratch} (${(e as Error).message})`);
      scratch = undefined;
    }
  }

  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(spec.env)) if (v !== undefined && k !== "_" && k !== "OLDPWD") env[k] = v;
  env.PWD = spec.cwd;
  env.PATH = ["/run/tsvmm-lab/bin", path.join(repo, "bin"), env.PATH || "/usr/local/bin:/usr/bin:/bin"].join(":");
  env.TSVMM_LAB = spec.kernel.kind;
  if (scratch) env.TSVMM_LAB_SCRATCH = scratch;

  fs.writeFileSync(path.join(labio, "run.sh"), runScript(spec.argv, spec.cwd, env), { mode: 0o755 });
  fs.writeFileSync(path.join(labio, "keep"), keepPaths([repo, spec.cwd]).map((p) => p + "\n").join(""));
  fs.writeFileSync(path.join(labio, "scratch"), scratch ? scratch + "\n" : "");
  fs.writeFileSync(
    path.join(labio, "bin", "tsvmm"),
    `#!/bin/sh\nexec ${shq(process.execPath)} ${shq(path.join(repo, "bin", "tsvmm.js"))} "$@"\n`,
    { mode: 0o755 },
  );
  for (const f of ["stdout", "stderr"]) fs.writeFileSync(path.join(labio, f), "");

  // pci=noacpi: PCI interrupts from the PIR table instead of ACPI links, whose setup costs ~0.3 s
  // per virtio device under TCG (sw-protected boot 2.6 s -> 1.6 s; ACPI still provides the timers).
  const append = ["console=ttyS0", "panic=-1", "oops=panic", "pci=noacpi", spec.verbose ? "loglevel=7" : "quiet", process.env.TSVMM_LAB_APPEND ?? ""]
    .join(" ")
    .trim();
  // One TCG thread for all vCPUs: with multi-threaded TCG the lab kernel's own code patching
  // (the preempt-notifier static key in __schedule, flipped whenever the first or last KVM VM
  // comes or goes) races with the other vCPU and ends in "Oops: int3" in __schedule: measured 3
  // of 5 stock-kernel lab tiers. Single-threaded it passed every time, and was no slower on 2 cores.
  const accel = process.env.TSVMM_LAB_ACCEL || "tcg,thread=single";
  const args = [
    "-nodefaults", "-no-user-config",
    "-accel", accel,
    "-cpu", "EPYC,+svm,+npt",
    // One vCPU per socket: SeaBIOS's MP table lists only the first CPU of each package, and the
    // sw-protected kernel (no ACPI) finds its CPUs in the MP table.
    "-smp", `${spec.cpus},sockets=${spec.cpus},cores=1,threads=1`,
    "-m", String(spec.memMiB),
    "-display", "none", "-monitor", "none", "-no-reboot",
    "-serial", `file:${consoleLog}`,
    "-kernel", spec.kernel.image,
    "-initrd", spec.initramfs,
    "-append", append,
    "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
    "-virtfs", `local,path=${labio},mount_tag=labio,security_model=none,multidevs=remap`,
  ];
  if (scratch) args.push("-virtfs", `local,path=${scratch},mount_tag=scratch,security_model=none,multidevs=remap`);

  const t0 = Date.now();
  spec.progress.say(
    `booting the lab (${spec.kernel.kind} kernel ${spec.kernel.version}, ${spec.cpus} vCPUs, ${spec.memMiB} MiB, QEMU -accel ${accel} -cpu EPYC,+svm,+npt) ...`,
  );
  let child: ChildProcess;
  try {
    child = spawn(qemu, args, { stdio: ["ignore", "ignore", "pipe"] });
  } catch (e) {
    throw new LabError(`cannot start ${qemu}: ${(e as Error).message}`, LabStatus.NO_QEMU);
  }
  let qemuStderr = "";
  child.stderr!.setEncoding("utf8").on("data", (d: string) => {
    qemuStderr += d;
  });

  const consoleF = new Follower(consoleLog);
  const stdoutF = new Follower(path.join(labio, "stdout"));
  const stderrF = new Follower(path.join(labio, "stderr"));
  const consoleLines: string[] = [];
  let partial = "";
  let commandAt = 0;
  let endAt = 0;
  let exitMarker: number | undefined;
  let failReason: string | undefined;
  let panic = false;
  let killedFor: "boot" | "timeout" | "interrupt" | "linger" | undefined;

  const kill = (why: typeof killedFor) => {
    if (killedFor) return;
    killedFor = why;
    if (child.pid) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
  };

  const poll = () => {
    const c = consoleF.read();
    if (c.length) {
      const text = partial + c.toString("utf8");
      const lines = text.split(/\r?\n/);
      partial = lines.pop() ?? "";
      for (const raw of lines) {
        const line = raw.replace(/\r/g, "");
        consoleLines.push(line);
        if (consoleLines.length > 200) consoleLines.shift();
        if (spec.verbose) err.write(`lab| ${line}\n`);
        let m: RegExpExecArray | null;
        if ((m = /TSVMM-LAB-STAGE (\w+)(?: ([\d.]+))?/.exec(line))) {
          const labClock = m[2] ? ` (lab clock ${m[2]} s)` : "";
          if (m[1] === "init") spec.progress.say(`lab kernel up, init running: ${seconds(Date.now() - t0)}${labClock}`);
          else if (m[1] === "modules") spec.progress.say(`modules loaded: ${seconds(Date.now() - t0)}${labClock}`);
          else if (m[1] === "command") {
            commandAt = Date.now();
            spec.progress.say(`lab ready in ${seconds(commandAt - t0)}${labClock}; running: ${spec.argv.join(" ")}`);
          }
        } else if ((m = /TSVMM-LAB-EXIT (\d+)/.exec(line))) {
          exitMarker = Number(m[1]);
          endAt = Date.now();
        } else if ((m = /TSVMM-LAB-FAIL (.*)$/.exec(line))) {
          failReason = m[1];
        } else if (/Kernel panic|end Kernel panic/.test(line)) {
          panic = true;
        }
      }
    }
    const o = stdoutF.read();
    if (o.length) out.write(o);
    const e = stderrF.read();
    if (e.length) err.write(e);

    const now = Date.now();
    if (!commandAt && !exitMarker && now - t0 > spec.bootTimeoutMs) kill("boot");
    if (commandAt && exitMarker === undefined && now - commandAt > spec.timeoutMs) kill("timeout");
    if (exitMarker !== undefined && now - endAt > 30_000) kill("linger");
  };

  const onSignal = (sig: NodeJS.Signals) => {
    spec.progress.warn(`${sig}: stopping the lab (QEMU pid ${child.pid})`);
    kill("interrupt");
  };
  const onExit = () => kill("interrupt");
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("exit", onExit);
  const timer = setInterval(poll, 50);

  const qemuExit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    child.on("error", (error) => resolve({ code: null, signal: null, error }));
    child.on("exit", (code, signal) => resolve({ code, signal }));
  });
  clearInterval(timer);
  process.removeListener("SIGINT", onSignal);
  process.removeListener("SIGTERM", onSignal);
  process.removeListener("exit", onExit);
  poll();
  setImmediate(() => {
    out.removeListener("error", ignoreEpipe);
    err.removeListener("error", ignoreEpipe);
  });
  if (partial) consoleLines.push(partial);
  consoleF.close();
  stdoutF.close();
  stderrF.close();
  const totalMs = Date.now() - t0;

  let status: number | undefined;
  try {
    const s = fs.readFileSync(path.join(labio, "status"), "utf8").trim();
    if (/^\d+$/.test(s)) status = Number(s);
  } catch {
    /* no status file */
  }
  if (status === undefined) status = exitMarker;

  const noise = (l: string) => !l.trim() || NOISE.some((r) => r.test(l));
  const qemuMsg = qemuStderr.split("\n").filter((l) => !noise(l)).join("\n").trim();
  const tail = (n: number) =>
    consoleLines
      .filter((l) => l.trim())
      .slice(-n)
      .map((l) => "    " + l)
      .join("\n");
  const keepRun = () => `(console and files kept in ${runDir})`;

  if (killedFor === "interrupt") {
    throw new LabError(`interrupted; the lab (QEMU pid ${child.pid}) was killed`, LabStatus.INTERRUPTED);
  }
  if (status !== undefined) {
    fs.rmSync(runDir, { recursive: true, force: true });
    const commandMs = (endAt || Date.now()) - (commandAt || t0);
    spec.progress.say(
      `command exited with status ${status} after ${seconds(commandMs)} in the lab; lab total ${seconds(totalMs)}`,
    );
    return { status, bootMs: (commandAt || t0) - t0, commandMs, totalMs };
  }
  if (killedFor === "timeout") {
    throw new LabError(
      `the command ran longer than --timeout ${spec.timeoutMs / 1000} s; the lab (QEMU pid ${child.pid}) was killed ${keepRun()}`,
      LabStatus.TIMEOUT,
    );
  }
  if (killedFor === "boot") {
    throw new LabError(
      `the lab did not reach the command within ${spec.bootTimeoutMs / 1000} s (TSVMM_LAB_BOOT_TIMEOUT); QEMU pid ${child.pid} was killed ${keepRun()}. Last console lines:\n${tail(25) || "    (nothing on the console)"}`,
      LabStatus.BOOT_TIMEOUT,
    );
  }
  if (failReason || panic) {
    // Show the panic message itself (and what led to it), not only the stack dump after it.
    const at = consoleLines.findIndex((l) => /Kernel panic/.test(l));
    const shown = at >= 0
      ? consoleLines.slice(Math.max(0, at - 12), at + 4).map((l) => "    " + l).join("\n")
      : tail(30);
    throw new LabError(
      `${failReason ? `the lab's init failed: ${failReason}` : "the lab kernel panicked"} ${keepRun()}. ${at >= 0 ? "Console around the panic" : "Last console lines"}:\n${shown}`,
      LabStatus.LAB_PANIC,
      spec.kernel.kind === "sw-protected" ? "compare with --kernel stock; the config fragment is vmm/lab/kernel/sw-protected.config" : undefined,
    );
  }
  const how = qemuExit.error
    ? `could not run: ${qemuExit.error.message}`
    : qemuExit.signal
      ? `was killed by ${qemuExit.signal}`
      : `exited with ${qemuExit.code}`;
  throw new LabError(
    `QEMU ${how} before the lab reported a status ${keepRun()}${qemuMsg ? `\n  qemu: ${qemuMsg.split("\n").join("\n  qemu: ")}` : ""}${
      consoleLines.length ? `\nLast console lines:\n${tail(20)}` : ""
    }`,
    LabStatus.NO_STATUS,
  );
}
