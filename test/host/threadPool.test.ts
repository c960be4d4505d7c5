// vCPU worker threads are lent from a pool (vmm/machine/threads.ts): a machine's threads go back
// to it once they have closed their vCPUs, and the next machine in the process runs on them.
// The tests build on each other's pool, in order.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import * as path from "node:path";
import { Vm } from "../../vmm/api";
import { loadAddon } from "../../vmm/native";
import { runGuest } from "../../vmm/run";
import { expandMatrix } from "../../vmm/matrix/plan";
import { runMatrix } from "../../vmm/matrix/runner";
import { startVcpuThread, vcpuThreadPool } from "../../vmm/machine/threads";
import type { Machine } from "../../vmm/machine/machine";
import { requireKvm } from "../support/host";

const T = { timeout: 60_000 };

/** The machine runGuest/Vm.boot creates, for its threadIds */
function machineOf(): { onMachine: (m: Machine) => void; ids: () => number[] } {
  let machine: Machine | undefined;
  return { onMachine: (m) => (machine = m), ids: () => [...machine!.threadIds] };
}

test("a machine's vCPU threads go back to the pool; the next machine's vCPUs run on them (a debugger stop in between)", T, async (t) => {
  if (!requireKvm(t)) return;
  const first = machineOf();
  // Through the API, stopped at an exit the vCPU thread handed over (the in-flight count at work)
  const vm = await Vm.boot({ guest: "smp", cpus: 2, timeout: 30, onMachine: first.onMachine });
  assert.ok(await vm.until("exit"), "stopped at an exit");
  const r1 = await vm.finish();
  assert.equal(r1.status, 0, r1.reason);
  assert.match(r1.console, /all 2 vCPUs reported/);
  const firstIds = first.ids();
  assert.equal(firstIds.length, 2);
  assert.equal(new Set(firstIds).size, 2, "a thread per vCPU");
  assert.deepEqual(new Set(vcpuThreadPool().idle), new Set(firstIds), "both threads are idle again");
  const started = vcpuThreadPool().started;

  const second = machineOf();
  const r2 = await runGuest({ guest: "hello", timeout: 30, onMachine: second.onMachine });
  assert.equal(r2.status, 0, r2.reason);
  assert.match(r2.console, /tsvmm hello: booted on vCPU 0 of 1/);
  assert.doesNotMatch(r2.console, /^not ok/m);
  assert.doesNotMatch(r2.console, /reporting/, "nothing of the first machine's guest");
  assert.ok(firstIds.includes(second.ids()[0]), `the second machine's vCPU ran on thread ${second.ids()[0]}, one of ${firstIds}`);
  assert.equal(vcpuThreadPool().started, started, "no thread was started for it");
  assert.deepEqual(new Set(vcpuThreadPool().idle), new Set(firstIds));
});

test("a machine with more vCPUs than idle threads takes the pooled ones and starts the rest", T, async (t) => {
  if (!requireKvm(t)) return;
  const before = vcpuThreadPool();
  const m = machineOf();
  const r = await runGuest({ guest: "smp", cpus: before.idle.length + 2, timeout: 30, onMachine: m.onMachine });
  const cpus = before.idle.length + 2;
  assert.equal(r.status, 0, r.reason);
  assert.match(r.console, new RegExp(`all ${cpus} vCPUs reported`));
  const ids = m.ids();
  assert.equal(new Set(ids).size, cpus);
  for (const id of before.idle) assert.ok(ids.includes(id), `pooled thread ${id} was used`);
  assert.equal(vcpuThreadPool().started, before.started + 2);
  assert.deepEqual(new Set(vcpuThreadPool().idle), new Set(ids), "all of them idle afterwards");
});

test("a matrix, 2 VMs at a time, starts no more threads than it runs vCPUs at once", T, async (t) => {
  if (!requireKvm(t)) return;
  const entries = expandMatrix({ guests: ["hello", "smp"], backends: ["default"], cpus: [1, 2], cmdlines: [""], repeat: 3 });
  const before = vcpuThreadPool();
  const results = await runMatrix(entries, { jobs: 2, timeout: 30, unsupported: "fail" });
  for (const r of results) assert.equal(r.outcome, "pass", `${r.entry.name}: ${r.reason}\n${r.console}`);
  assert.equal(results.length, 12);
  // 18 vCPUs in all, at most 4 at once (2 machines of 2): only what the idle pool lacked is started
  const started = vcpuThreadPool().started - before.started;
  assert.ok(started <= Math.max(0, 4 - before.idle.length), `${started} threads started, ${before.idle.length} were idle`);
});

test("a vCPU thread that fails is not reused", T, async (t) => {
  if (!requireKvm(t)) return;
  const addon = loadAddon();
  const kvm = new addon.Kvm("/dev/kvm");
  const vm = kvm.createVm(0);
  const vcpu = vm.createVcpu(0);
  try {
    const before = vcpuThreadPool();
    let failure: Error | undefined;
    let failed = -1;
    const done = new Promise<void>((resolve) => {
      // A UART state too small for the thread's Serial8250: main() throws before it runs the vCPU
      const id = startVcpuThread(
        { handle: vcpu.handle, serial: new SharedArrayBuffer(4), exits: new SharedArrayBuffer(16) },
        {
          message: (m) => assert.fail(`unexpected ${JSON.stringify(m)}`),
          error: (err) => (failure = err),
          done: () => resolve(),
        },
      );
      assert.ok(before.idle.includes(id), "it took a pooled thread");
      failed = id;
    });
    await done;
    assert.match(failure?.message ?? "", /Invalid typed array length|out of bounds|RangeError/i);
    assert.ok(!vcpuThreadPool().idle.includes(failed), "the failed thread is not idle");
    assert.equal(vcpuThreadPool().idle.length, before.idle.length - 1);
    // the pool still serves: the next machine runs
    const r = await runGuest({ guest: "hello", timeout: 30 });
    assert.equal(r.status, 0, r.reason);
  } finally {
    vcpu.close();
    vm.close();
    kvm.close();
  }
});

test("a process whose idle pooled threads outlive its machines exits on its own", T, async (t) => {
  if (!requireKvm(t)) return;
  const dist = JSON.stringify(path.join(__dirname, "..", "..", "vmm"));
  const script = `
    const { runGuest } = require(${dist} + "/run");
    const { vcpuThreadPool } = require(${dist} + "/machine/threads");
    runGuest({ guest: "smp", cpus: 3, timeout: 30 }).then((r) => console.log(r.status, vcpuThreadPool().idle.length));`;
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b) => (stdout += b));
  child.stderr.on("data", (b) => (stderr += b));
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  const [code, signal] = (await once(child, "exit")) as [number | null, string | null];
  clearTimeout(timer);
  assert.equal(signal, null, `killed after 30 s: idle threads kept the process alive (${stdout})`);
  assert.equal(code, 0, stderr);
  assert.equal(stdout.trim(), "0 3", "the guest passed and 3 threads were idle when the script ended");
});
