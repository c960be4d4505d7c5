// Private memory on a real KVM: the conversion guests on every backend this kernel offers, the
// implicit path through real KVM_EXIT_MEMORY_FAULT exits, the policies, and the trace.
// Runs in-process (one Node for the whole tier): Node starts slowly under TCG.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { runGuest, GuestRun, RunOptions } from "../../vmm/run";
import { assessHost, probeHost } from "../../vmm/host/caps";
import { labCli, sharedBit } from "./support";

const verdict = assessHost(probeHost());
const backends = (["attributes", "memslots"] as const).filter((b) => verdict.backends[b].available);
const T = { timeout: 300_000 };


async function run(opts: RunOptions): Promise<GuestRun & { events: Array<Record<string, unknown>> }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-lab-"));
  const trace = path.join(dir, "trace.ndjson");
  try {
    const r = await runGuest({ timeout: 240, ...opts, trace });
    const events = fs.readFileSync(trace, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    return { ...r, events };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Unevictable memory in bytes (/proc/meminfo): guest_memfd keeps its pages there */
function unevictable(): number {
  return Number(/^Unevictable:\s+(\d+) kB$/m.exec(fs.readFileSync("/proc/meminfo", "utf8"))![1]) * 1024;
}

function assertTapPassed(r: GuestRun): void {
  const plan = /^1\.\.(\d+)$/m.exec(r.console);
  assert.ok(plan, `no TAP plan in:\n${r.console}`);
  const ok = r.console.match(/^ok \d+/gm) ?? [];
  assert.deepEqual(r.console.match(/^not ok.*$/gm) ?? [], [], "failed TAP lines");
  assert.equal(ok.length, Number(plan[1]), "every planned check ran and passed");
  assert.equal(r.status, 0, `${r.reason}\n${r.report ?? ""}`);
}

test("this kernel offers private memory (the lab is where it is proven)", () => {
  assert.ok(backends.includes("memslots"), verdict.backends.memslots.reason);
  if (process.env.TSVMM_LAB === "sw-protected") assert.ok(backends.includes("attributes"), verdict.backends.attributes.reason);
  assert.equal(verdict.hypercallExit, true);
  assert.equal(verdict.memoryFaultExit, true);
});

for (const backend of backends) {
  test(`convert: the private_mem_conversions_test scenarios pass on the ${backend} backend`, T, async () => {
    const r = await run({ guest: "convert", privateMemory: { backend } });
    assertTapPassed(r);
    const tally = r.conversions!.tally;
    assert.ok(tally["hypercall-to-private"] > 0 && tally["hypercall-to-shared"] > 0, JSON.stringify(tally));
    assert.ok(tally["hypercall-refused"] >= 4, "the guest's invalid requests were refused and recorded");
    const conv = r.events.filter((e) => e.kind === "conversion");
    for (const e of conv) for (const k of ["seq", "time", "vcpu", "source", "gpa", "size", "from", "to", "discard", "result", "ns"]) assert.ok(k in e, `event field ${k}`);
    assert.ok(conv.some((e) => e.to === "private" && (e.discard as number) > 0), "conversions to private discard the shared side");
    assert.ok(r.conversions!.summary.some((l) => /pages now: \d+ private, \d+ shared/.test(l)));
  });

  // Lab only: it needs private memory, and reads the lab kernel's page accounting.
  test(`convert with --prealloc: the private side is allocated before the guest runs, same results (${backend})`, T, async () => {
    const before = unevictable();
    let upFront = 0;
    const r = await run({ guest: "convert", privateMemory: { backend, prealloc: true }, onMachine: () => (upFront = unevictable() - before) });
    assertTapPassed(r);
    // RAM above the guest image (~63 of the 64 MiB) is private and fallocated at once.
    assert.ok(upFront >= 56 << 20, `${upFront >> 20} MiB of guest_memfd allocated before the guest ran`);
    let lazy = 0;
    const again = unevictable();
    const control = await run({ guest: "convert", privateMemory: { backend }, onMachine: () => (lazy = unevictable() - again) });
    assertTapPassed(control);
    assert.ok(lazy < 8 << 20, `without --prealloc ${lazy >> 20} MiB were allocated up front`);
  });

  test(`convert --prefault: every conversion to private is pre-faulted, same results (${backend})`, T, async () => {
    const r = await run({ guest: "convert", privateMemory: { backend, prefault: true } });
    assertTapPassed(r);
    const toPrivate = r.events.filter((e) => e.kind === "conversion" && e.source === "hypercall" && e.to === "private" && String(e.result).startsWith("ok"));
    assert.ok(toPrivate.length > 0);
    for (const e of toPrivate) assert.match(String(e.result), /, pre-faulted$/, `event #${e.seq}: ${e.result}`);
    assert.equal(r.conversions!.tally["prefault-failed"], undefined, JSON.stringify(r.conversions!.tally));
    // The summary counts what KVM_PRE_FAULT_MEMORY mapped: the sizes of those requests.
    const kib = toPrivate.reduce((n, e) => n + (e.size as number), 0) >> 10;
    assert.ok(r.conversions!.summary.some((l) => l.includes(`(with --prefault: ${kib} KiB pre-faulted)`)), r.conversions!.summary.join("\n"));
    // Without it nothing says pre-faulted.
    const plain = await run({ guest: "convert", privateMemory: { backend } });
    assert.ok(!plain.events.some((e) => /pre-fault/.test(String(e.result))));
  });

  test(`convert --convert-via doorbell: the port doorbell on a KVM that delivers hypercalls (${backend})`, T, async () => {
    const r = await run({ guest: "convert", privateMemory: { backend, convertVia: "doorbell" } });
    assertTapPassed(r);
    assert.match(r.console, /^convert: backend \w+, doorbell/m, "the boot page named the doorbell");
    const tally = r.conversions!.tally;
    assert.ok(tally["doorbell-to-private"] > 0 && tally["doorbell-to-shared"] > 0, JSON.stringify(tally));
    assert.ok(tally["doorbell-refused"] >= 4, "the guest's invalid requests were refused through the doorbell too");
    assert.deepEqual(Object.keys(tally).filter((k) => k.startsWith("hypercall")), []);
  });

  test(`convert --discard never: shared data survives a private round trip, private data a shared one (${backend})`, T, async () => {
    const r = await run({ guest: "convert", cmdline: "discard=never", privateMemory: { backend, discard: "never" } });
    assertTapPassed(r);
    const done = r.events.filter((e) => e.kind === "conversion" && String(e.result).startsWith("ok,"));
    assert.ok(done.length >= 4 && done.every((e) => e.discard === 0 && /kept the (shared|private) copy \(--discard never\)/.test(String(e.result))));
    assert.ok(r.conversions!.summary.some((l) => /--discard never: both copies of every page kept/.test(l)));
    // The control: the same guest expectations with the default policy fail where data was discarded.
    const always = await run({ guest: "convert", cmdline: "discard=never", privateMemory: { backend } });
    assert.notEqual(always.status, 0);
    assert.match(always.console, /^not ok 2 .*$/m);
  });

  test(`--on-hypercall deny: every conversion is refused with EINVAL and recorded (${backend})`, T, async () => {
    const r = await run({ guest: "convert", privateMemory: { backend, onHypercall: "deny" } });
    assert.notEqual(r.status, 0, "the guest notices its conversions fail");
    const denied = r.events.filter((e) => e.kind === "conversion" && String(e.result).startsWith("denied"));
    assert.ok(denied.length > 0);
    assert.equal(r.conversions!.tally["hypercall-to-private"] ?? 0, 0);
  });
}

// A test that is only "boot this guest on these backends, its TAP must pass" runs as one matrix
// of `tsvmm test`: the command users run, one process, several VMs at once.
test(`smp-convert through \`tsvmm test\`: 2 and 4 vCPUs converting at once leave the map the guest computed (${backends.join(", ")})`, { timeout: 900_000 }, async () => {
  const args = ["test", "smp-convert", "--backend", backends.join(","), "--cpus", "2,4", "--timeout", "300", "--unsupported", "fail", "--tap"];
  const r = await labCli(args, 880_000);
  assert.equal(r.status, 0, `tsvmm ${args.join(" ")}: status ${r.status}\n${r.stdout}\n${r.stderr}`);
  const entries = backends.flatMap((backend) => [2, 4].map((cpus) => `smp-convert backend=${backend} cpus=${cpus}`));
  assert.match(r.stdout, new RegExp(`^1\\.\\.${entries.length}$`, "m"), "one test point per entry");
  for (const name of entries) assert.match(r.stdout, new RegExp(`^ok \\d+ - ${name}$`, "m"), `${name} passed`);
  // each entry carries the guest's own TAP as its subtest: a plan, every point ok
  const plans = [...r.stdout.matchAll(/^ {4}1\.\.(\d+)$/gm)].map((m) => Number(m[1]));
  assert.equal(plans.length, entries.length, "every entry reported the guest's TAP");
  assert.ok(plans.every((n) => n > 0));
  assert.equal((r.stdout.match(/^ {4}ok \d+/gm) ?? []).length, plans.reduce((a, b) => a + b, 0), "every planned guest check passed");
  assert.doesNotMatch(r.stdout, /^\s*not ok/m);
});

test("implicit: each first touch of the other view is one KVM_EXIT_MEMORY_FAULT and one conversion", T, async () => {
  const r = await run({ guest: "implicit", privateMemory: { backend: "memslots", sharedBit: sharedBit() } });
  assertTapPassed(r);
  const expected = Number(/^# expected-implicit-conversions (\d+)$/m.exec(r.console)![1]);
  const faults = r.events.filter((e) => e.kind === "conversion" && e.source === "fault");
  assert.equal(faults.filter((e) => e.result === "ok").length, expected);
  assert.equal(faults.length, expected, "no extra memory-fault events (no repeats, no races on 1 vCPU)");
  assert.ok(faults.every((e) => e.size === 4096));
});

test("--on-fault stop: the first implicit access stops the VM with the event and registers (75)", T, async () => {
  const r = await run({ guest: "implicit", privateMemory: { backend: "memslots", sharedBit: sharedBit(), onFault: "stop" } });
  assert.equal(r.status, 75, r.reason);
  assert.match(r.reason, /KVM_EXIT_MEMORY_FAULT gpa=0x[0-9a-f]+ size=0x1000 flags=0x0 \(EFAULT\).*--on-fault stop/);
  assert.match(r.report ?? "", /rip=/);
});

test("--on-fault deny: the faulting vCPU stops with a report; with no vCPU left the VM ends (75)", T, async () => {
  const r = await run({ guest: "implicit", privateMemory: { backend: "memslots", sharedBit: sharedBit(), onFault: "deny" } });
  assert.equal(r.status, 75, r.reason);
  assert.match(r.reason, /every vCPU stopped/);
});

test("fault=bp: int3 reaches the firmware's #BP handler on a real KVM (71)", T, async () => {
  const r = await runGuest({ guest: "fault", cmdline: "fault=bp", timeout: 120 });
  assert.equal(r.status, 71, r.reason);
  assert.match(r.console, /exception 3 \(#BP\)/);
});

const exitScenarios: Array<{ backend: "attributes" | "memslots"; exit: string; flags: string; broken: RegExp }> = [
  { backend: "attributes", exit: "delete", flags: "0x8", broken: /deleted under the running vCPU/ },
  { backend: "attributes", exit: "no-gmem", flags: "0x8", broken: /without KVM_MEM_GUEST_MEMFD/ },
  { backend: "memslots", exit: "release", flags: "0x0", broken: /guest_memfd released/ },
];

for (const s of exitScenarios.filter((x) => backends.includes(x.backend))) {
  test(`exits (${s.exit}, ${s.backend}): KVM_EXIT_MEMORY_FAULT flags ${s.flags} at the test slot; convert re-makes it and the guest goes on`, T, async () => {
    const r = await run({ guest: "exits", cmdline: `exit=${s.exit}`, privateMemory: { backend: s.backend } });
    assertTapPassed(r);
    const faults = r.events.filter((e) => e.kind === "conversion" && e.source === "fault");
    assert.equal(faults.length, 1, JSON.stringify(faults));
    assert.equal(faults[0].gpa, "0xc0000000");
    assert.equal(faults[0].size, 4096);
    assert.equal(faults[0].flags, s.flags);
    assert.match(String(faults[0].result), s.broken);
    assert.match(String(faults[0].result), /re-made with a new guest_memfd/);
  });

  for (const policy of ["deny", "stop"] as const) {
    test(`exits (${s.exit}, ${s.backend}) with --on-fault ${policy}: the VM ends with 75 and the exit`, T, async () => {
      const r = await run({ guest: "exits", cmdline: `exit=${s.exit}`, privateMemory: { backend: s.backend, onFault: policy } });
      assert.equal(r.status, 75, r.reason);
      assert.match(policy === "stop" ? r.reason : r.reason, new RegExp(`gpa=0xc0000000 size=0x1000 flags=${s.flags}`));
      if (policy === "stop") assert.match(r.report ?? "", /rip=/);
    });
  }
}
