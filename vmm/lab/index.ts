// The nested lab: prepare a kernel and an initramfs (cached), boot them in QEMU with the host's
// root over 9p, run one command inside, return its status. See vmm/cli/commands/lab.ts for the
// user's view and vmm/lab/init.sh for what the lab does after boot.
import * as fs from "node:fs";
import { PrivateApt } from "./apt";
import { LabError, LabStatus } from "./errors";
import { buildInitramfs, prepareBusybox } from "./initramfs";
import { LabKernel, LabKernelKind, prepareKernel } from "./kernel";
import { labCacheDir, mkdirp, withLock } from "./paths";
import { Progress, seconds } from "./proc";
import { findQemu, LabRunResult } from "./qemu";
import { runInLab } from "./session";

export { LabStatus, LabError } from "./errors";
export { LAB_KERNEL_KINDS } from "./kernel";
export type { LabKernelKind } from "./kernel";

/** A limit given in seconds by an environment variable (or the default), in milliseconds */
function envSecondsInMs(name: string, dfltSeconds: number): number {
  const v = Number(process.env[name]);
  return (Number.isFinite(v) && v > 0 ? v : dfltSeconds) * 1000;
}

export interface Prepared {
  kernel: LabKernel;
  initramfs: string;
  ms: number;
}

/** Kernel and initramfs for a kind, from the cache or freshly downloaded/built. */
export async function prepareLab(kind: LabKernelKind, progress: Progress): Promise<Prepared> {
  const t0 = Date.now();
  const cacheDir = mkdirp(labCacheDir());
  const downloadTimeoutMs = envSecondsInMs("TSVMM_LAB_DOWNLOAD_TIMEOUT", 900);
  // One lock per kind: a stock run does not wait for a sw-protected build (apt has its own lock).
  return withLock(
    `${cacheDir}/.lock-${kind}`,
    envSecondsInMs("TSVMM_LAB_BUILD_TIMEOUT", 3600) + 600_000,
    (pid) => progress.say(`waiting for another tsvmm lab (pid ${pid}) that is preparing ${cacheDir}`),
    async () => {
      const apt = new PrivateApt(mkdirp(`${cacheDir}/apt`));
      const busybox = await prepareBusybox(apt, cacheDir, progress, downloadTimeoutMs);
      const kernel = await prepareKernel(kind, {
        progress,
        cacheDir,
        apt,
        indexMaxAgeMs: envSecondsInMs("TSVMM_LAB_INDEX_MAX_AGE", 12 * 3600),
        downloadTimeoutMs,
        buildTimeoutMs: envSecondsInMs("TSVMM_LAB_BUILD_TIMEOUT", 3600),
        busybox: busybox.path,
      });
      let initramfs: string;
      try {
        initramfs = buildInitramfs(kernel, busybox, cacheDir);
      } catch (err) {
        if (err instanceof LabError) throw err;
        throw new LabError(`cannot build the initramfs: ${(err as Error).message}`, LabStatus.INITRAMFS_FAILED);
      }
      const ms = Date.now() - t0;
      progress.say(
        `${kind} kernel ${kernel.version} ${kernel.cached ? "from the cache" : "ready"} (${kernel.image}, initramfs ${(fs.statSync(initramfs).size / 1e6).toFixed(1)} MB): ${seconds(ms)}`,
      );
      return { kernel, initramfs, ms };
    },
  );
}

export interface LabOptions {
  kernel: LabKernelKind;
  cpus: number;
  memMiB: number;
  /** command limit in seconds (0 = none) */
  timeoutS: number;
  argv: string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  quiet?: boolean;
  verbose?: boolean;
}

export async function runLab(opts: LabOptions): Promise<LabRunResult> {
  const progress = new Progress(opts.quiet);
  findQemu(); // fail before any download when QEMU is missing
  const prepared = await prepareLab(opts.kernel, progress);
  return runInLab({
    kernel: prepared.kernel,
    initramfs: prepared.initramfs,
    cpus: opts.cpus,
    memMiB: opts.memMiB,
    argv: opts.argv,
    cwd: opts.cwd ?? process.cwd(),
    env: opts.env ?? process.env,
    timeoutMs: opts.timeoutS > 0 ? opts.timeoutS * 1000 : 365 * 24 * 3600_000,
    bootTimeoutMs: envSecondsInMs("TSVMM_LAB_BOOT_TIMEOUT", 300),
    progress,
    verbose: !!opts.verbose,
  });
}
