// Where the lab keeps things: the checkout it belongs to and the per-user cache.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { pidAlive } from "./proc";

/** The checkout this code runs from (the directory holding vmm/lab/init.sh), source or dist. */
export function repoRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, "vmm", "lab", "init.sh")) && fs.existsSync(path.join(dir, "package.json"))) {
      return dir;
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the tsvmm checkout above ${__dirname} (looked for vmm/lab/init.sh)`);
    dir = up;
  }
}

/** Files kept in the repository that the lab needs at run time. */
export function labSourceFile(name: string): string {
  return path.join(repoRoot(), "vmm", "lab", name);
}

/** $XDG_CACHE_HOME/tsvmm/lab, else ~/.cache/tsvmm/lab; TSVMM_LAB_CACHE overrides. */
export function labCacheDir(): string {
  if (process.env.TSVMM_LAB_CACHE) return path.resolve(process.env.TSVMM_LAB_CACHE);
  const base = process.env.XDG_CACHE_HOME && path.isAbsolute(process.env.XDG_CACHE_HOME)
    ? process.env.XDG_CACHE_HOME
    : path.join(os.homedir(), ".cache");
  return path.join(base, "tsvmm", "lab");
}

export function mkdirp(dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** Replace dst with the finished src atomically (same filesystem), so a cache entry is whole or absent. */
export function publish(src: string, dst: string): void {
  fs.rmSync(dst, { recursive: true, force: true });
  try {
    fs.renameSync(src, dst);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
    const tmp = `${dst}.tmp-${process.pid}`;
    fs.cpSync(src, tmp, { recursive: true });
    fs.renameSync(tmp, dst);
    fs.rmSync(src, { recursive: true, force: true });
  }
}

/**
 * Hold a lock (a directory holding the owner's pid) while preparing the cache, so two
 * `tsvmm lab` runs never download or build the same thing at once. A lock whose owner is gone
 * is taken over.
 */
export async function withLock<T>(lockDir: string, waitMs: number, onWait: (pid: number) => void, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + waitMs;
  let told = false;
  for (;;) {
    try {
      fs.mkdirSync(lockDir);
      fs.writeFileSync(path.join(lockDir, "pid"), String(process.pid));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      let pid = 0;
      try {
        pid = Number(fs.readFileSync(path.join(lockDir, "pid"), "utf8")) || 0;
      } catch {
        /* being written */
      }
      if (pid && !pidAlive(pid)) {
        fs.rmSync(lockDir, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`${lockDir} is still held by pid ${pid} after ${waitMs / 1000} s`);
      if (!told && pid) {
        onWait(pid);
        told = true;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lockDir, { recursive: true, force: true });
  }
}
