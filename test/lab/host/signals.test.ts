// `tsvmm lab` stopped from outside: SIGINT and SIGTERM kill QEMU and remove the run directory;
// after SIGKILL, QEMU dies with it (parent-death signal) and the next run removes the directory
// the killed one left. Boots the stock lab kernel (cached after the first use).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { TSVMM, tsvmm } from "../../support/cli";
import { removeStaleRunDirs } from "../../../vmm/lab/stage";
import { pidAlive } from "../../../vmm/lab/proc";

const LIMIT = 600_000;

/** The run directory of a tsvmm lab (its owner file names the pid). */
function runDirOf(pid: number): string | undefined {
  for (const n of fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith("tsvmm-lab-"))) {
    const dir = path.join(os.tmpdir(), n);
    try {
      if (Number(fs.readFileSync(path.join(dir, "owner"), "utf8")) === pid) return dir;
    } catch {
      /* not a live run */
    }
  }
  return undefined;
}

/** Pids of processes whose command line mentions `text` (QEMU's names the run directory). */
function pidsMentioning(text: string): number[] {
  const out: number[] = [];
  for (const n of fs.readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    try {
      if (fs.readFileSync(`/proc/${n}/cmdline`, "utf8").includes(text)) out.push(Number(n));
    } catch {
      /* gone */
    }
  }
  return out;
}

async function until(what: string, cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Start `tsvmm lab --kernel stock -- sleep 600` and wait until the command runs in the lab. */
async function labRunning(): Promise<{ pid: number; dir: string; qemu: number[]; stderr: () => string; ended: Promise<{ code: number | null; signal: NodeJS.Signals | null }> }> {
  const child = spawn(process.execPath, [TSVMM, "lab", "--kernel", "stock", "--timeout", "900", "--", "sleep", "600"], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  child.stdout.resume();
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const pid = child.pid!;
  try {
    await until("the lab runs its command", () => /lab ready in/.test(stderr), LIMIT - 60_000);
  } catch (e) {
    child.kill("SIGKILL");
    throw new Error(`${(e as Error).message}\n${stderr}`);
  }
  const dir = runDirOf(pid);
  assert.ok(dir, `a run directory owned by ${pid}`);
  const qemu = pidsMentioning(dir!).filter((p) => p !== pid);
  assert.ok(qemu.length > 0, "QEMU runs with the run directory on its command line");
  return { pid, dir: dir!, qemu, stderr: () => stderr, ended };
}

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  test(`${sig}: QEMU is killed, the run directory removed, status 130`, { timeout: LIMIT }, async () => {
    const lab = await labRunning();
    process.kill(lab.pid, sig);
    const end = await lab.ended;
    assert.equal(end.code, 130, lab.stderr());
    assert.match(lab.stderr(), new RegExp(`${sig}: stopping the lab`));
    assert.equal(fs.existsSync(lab.dir), false, `${lab.dir} removed`);
    await until("QEMU is gone", () => lab.qemu.every((p) => !pidAlive(p)), 5000);
  });
}

test("SIGKILL: QEMU dies with tsvmm lab; the next run removes the directory it left", { timeout: LIMIT }, async () => {
  const lab = await labRunning();
  process.kill(lab.pid, "SIGKILL");
  await lab.ended;
  await until("QEMU is gone (parent-death signal)", () => lab.qemu.every((p) => !pidAlive(p)), 5000);
  assert.ok(fs.existsSync(lab.dir), "a SIGKILLed run cannot remove its own directory");
  const next = await tsvmm(["lab", "--kernel", "stock", "--", "true"], { limitMs: LIMIT - 60_000 });
  assert.equal(next.status, 0, next.stderr);
  assert.ok(next.stderr.includes(`removed ${lab.dir}, left by a tsvmm lab that was killed`), next.stderr);
  assert.equal(fs.existsSync(lab.dir), false);
});

test("removeStaleRunDirs removes only directories whose owner is gone", () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "lab-stale-"));
  try {
    const gone = spawnSync("true").pid!;
    const make = (name: string, owner?: number) => {
      fs.mkdirSync(path.join(tmp, name));
      if (owner !== undefined) fs.writeFileSync(path.join(tmp, name, "owner"), String(owner));
    };
    make("tsvmm-lab-live", process.ppid);
    make("tsvmm-lab-dead", gone);
    make("tsvmm-lab-kept");
    make("other-dead", gone);
    assert.deepEqual(removeStaleRunDirs(tmp), [path.join(tmp, "tsvmm-lab-dead")]);
    assert.deepEqual(fs.readdirSync(tmp).sort(), ["other-dead", "tsvmm-lab-kept", "tsvmm-lab-live"]);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
