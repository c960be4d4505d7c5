// Staging a lab run: its private directory under os.tmpdir() and what the lab's init reads there.
//   console.log    QEMU's -serial file: the lab's console and init's markers
//   owner          pid of the tsvmm lab that owns the run: a directory whose owner is gone is
//                  stale (a killed run) and removed by the next run; a failed run's directory is
//                  kept for diagnosis and has no owner file
//   labio/         -virtfs tag "labio" (writable): run.sh, keep, scratch and bin/tsvmm written
//                  here; stdout, stderr and status written by the lab
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { repoRoot } from "./paths";
import { pidAlive, Progress } from "./proc";

const PREFIX = "tsvmm-lab-";

export interface StagedRun {
  dir: string;
  labio: string;
  consoleLog: string;
  /** <cwd>/.lab-scratch, shared writable with the lab, when it could be created */
  scratch?: string;
}

export interface StageSpec {
  kind: string;
  argv: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  progress: Progress;
}

/** Remove run directories left by tsvmm lab runs that were killed (their owner pid is gone). */
export function removeStaleRunDirs(tmp = os.tmpdir()): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(tmp).filter((n) => n.startsWith(PREFIX));
  } catch {
    return removed;
  }
  for (const n of names) {
    const dir = path.join(tmp, n);
    let owner: number;
    try {
      owner = Number(fs.readFileSync(path.join(dir, "owner"), "utf8"));
    } catch {
      continue; // kept on purpose, or not ours
    }
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && !pidAlive(owner)) {
      fs.rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    }
  }
  return removed;
}

/** Create the run directory and everything the lab's init reads from it. */
export function stageRun(spec: StageSpec): StagedRun {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), PREFIX));
  fs.writeFileSync(path.join(dir, "owner"), String(process.pid));
  const labio = path.join(dir, "labio");
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
  env.TSVMM_LAB = spec.kind;
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
  return { dir, labio, consoleLog: path.join(dir, "console.log"), scratch };
}

/** Keep a failed run's directory for diagnosis: without an owner it is never taken for stale. */
export function keepRunDir(run: StagedRun): void {
  fs.rmSync(path.join(run.dir, "owner"), { force: true });
}

export function isKept(run: StagedRun): boolean {
  return fs.existsSync(run.dir) && !fs.existsSync(path.join(run.dir, "owner"));
}

export function removeRunDir(run: StagedRun): void {
  fs.rmSync(run.dir, { recursive: true, force: true });
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

