// The debugger where private memory is real: conversion, refusal and memory-fault breakpoints
// through the monitor, the TypeScript API and its example, on every backend this kernel offers.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { assessHost, probeHost } from "../../vmm/host/caps";
import { Vm } from "../../vmm/api";
import { labCli, sharedBit } from "./support";
import { ROOT } from "../support/cli";

const verdict = assessHost(probeHost());
const backends = (["attributes", "memslots"] as const).filter((b) => verdict.backends[b].available);
const T = { timeout: 300_000 };
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-lab-debug-"));


for (const backend of backends) {
  test(`monitor: stop at a conversion to private and at a refused request, look, run to the end (${backend})`, T, async () => {
    const file = path.join(tmp, `convert-${backend}.mon`);
    fs.writeFileSync(
      file,
      ["watch count", "break conversion,to=private,source=hypercall", "continue", "why", "delete 1", "break refused", "continue", "events 2", "delete 2", "continue"].join("\n") + "\n",
    );
    const r = await labCli(["run", "convert", "--backend", backend, "--monitor-script", file, "--quiet"]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const out = r.stdout;
    const stop = /stopped: breakpoint 1 \(conversion,to=private,source=hypercall\): conversion #\d+ vCPU 0 hypercall (0x[0-9a-f]+)\+0x([0-9a-f]+) \S+→private: ok/.exec(out);
    assert.ok(stop, out);
    // RIP with file:line from the guest's .debug_line
    assert.match(out, /rip is \S+ \(\S+\.[chS]:\d+\)\n/);
    // watchpoints are refused by the same check as addr= and single-step where the debug registers never fire
    const refusal = verdict.debugging.watchRefusal;
    if (refusal) assert.ok(out.includes(`(tsvmm) watch count\nerror: watch=count,access=w is refused: ${refusal}`), out);
    else assert.match(out, /\(tsvmm\) watch count\nwatchpoint 1: 4 bytes at 0x[0-9a-f]+ \(count\)/);
    // the stop shows the page states around the GPA: the converted page lies in a private run
    const around = out.slice(out.indexOf(`pages around ${stop[1]}:`)).split("\n(tsvmm)")[0];
    const gpa = BigInt(stop[1]);
    const runs = [...around.matchAll(/^ +(0x[0-9a-f]+)-(0x[0-9a-f]+) (private|shared)/gm)];
    assert.ok(runs.some((m) => BigInt(m[1]) <= gpa && gpa < BigInt(m[2]) && m[3] === "private"), around);
    assert.match(out, /\(tsvmm\) why\nbreakpoint 1 \(conversion,to=private,source=hypercall\)/);
    assert.match(out, /stopped: breakpoint 2 \(refused\): conversion #\d+ vCPU 0 hypercall \S+ .*EINVAL/);
    assert.match(out, /the VM ended: guest exited with status 0/);
    assert.doesNotMatch(out, /^not ok/m);
  });
}

test("monitor: a fault breakpoint stops at a real KVM_EXIT_MEMORY_FAULT (implicit conversion); the host cannot read the private page", T, async () => {
  const file = path.join(tmp, "implicit.mon");
  fs.writeFileSync(file, ["break fault", "continue", "delete 1", "continue"].join("\n") + "\n");
  const r = await labCli(["run", "implicit", "--backend", "memslots", "--shared-bit", String(sharedBit()), "--monitor-script", file, "--quiet"]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /stopped: breakpoint 1 \(fault\): conversion #\d+ vCPU \d fault 0x[0-9a-f]+\+0x1000 \S+→\S+: ok/);
});

for (const backend of backends) {
  test(`API: until a conversion to private, private pages are unreadable, host convert is recorded with source api (${backend})`, T, async () => {
    const vm = await Vm.boot({ guest: "convert", privateMemory: { backend }, timeout: 240 });
    const e = await vm.until("conversion", (c) => c.to === "private" && c.source === "hypercall");
    assert.ok(e, "a conversion to private happened");
    assert.equal(e.outcome, "converted");
    assert.ok(vm.pages({ start: e.gpa, end: e.gpa + e.size }).every((r) => r.state === "private"));
    assert.throws(() => vm.read(e.gpa, 16), /private page 0x[0-9a-f]+: the host cannot read private memory/);
    assert.match(vm.why(), /^until: conversion #\d+ vCPU 0 hypercall/);
    assert.match(vm.symbolize(vm.registers(0).regs.rip), /^[a-z_]/);
    assert.match(await vm.monitor("pages"), /private/);
    const r = await vm.finish();
    assert.equal(r.status, 0, r.reason);
  });
}

test("the watch-conversions example runs to its end", T, () => {
  const r = spawnSync(process.execPath, [path.join(ROOT, "dist", "examples", "watch-conversions.js")], { encoding: "utf8", timeout: 240_000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /paused at: until: conversion/);
  assert.match(r.stdout, /host read refused: .*cannot read private memory/);
  assert.match(r.stdout, /exit status 0/);
});

test("--on-fault stop with a debugger pauses at the fault; a host conversion lets the access retry and the guest go on", T, async () => {
  const bit = sharedBit();
  const vm = await Vm.boot({ guest: "implicit", privateMemory: { backend: "memslots", sharedBit: bit, onFault: "stop" }, timeout: 240 });
  const first = vm.stopped();
  await vm.resume();
  const stop = await first;
  assert.ok(stop, "paused at a fault");
  assert.equal(stop.reason, "fault");
  const m = /KVM_EXIT_MEMORY_FAULT gpa=(0x[0-9a-f]+) .*refused \(--on-fault stop\) \(the VM is paused instead of ending/.exec(stop.text);
  assert.ok(m, stop.text);
  const gpa = BigInt(m[1]);
  const alias = 1n << BigInt(bit);
  const page = gpa & ~alias & ~0xfffn;
  assert.equal(await vm.convert({ start: page, end: page + 0x1000n }, gpa & alias ? "shared" : "private"), 0);
  const second = vm.stopped();
  await vm.resume();
  const next = await second;
  // the converted access went through: the next stop (if any) is at another page
  if (next) assert.doesNotMatch(next.text, new RegExp(`gpa=${m[1]} `));
  const r = await vm.kill();
  assert.ok(r.status === 130 || r.status === 0, r.reason);
});

test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
