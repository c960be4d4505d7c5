// KVM's own trace events merged into a trace (--kernel-events), on the lab's real KVM: both lab
// kernels have tracefs and KVM's trace events (the sw-protected one from its config).
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { labCli } from "./support";
import { parseTrace } from "../../vmm/trace/reader";

test("--kernel-events: KVM's hypercall exits are in the trace, on the vCPU and just before tsvmm's conversion", { timeout: 600_000 }, async () => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-kernel-")), "trace.ndjson");
  const r = await labCli(["run", "smp-convert", "--cpus", "2", "--backend", "memslots", "--trace", file, "--kernel-events", "kvm:kvm_exit,kvm:kvm_hypercall"], 500_000);
  assert.equal(r.status, 0, `status ${r.status}\n${r.stderr}`);
  assert.match(r.stderr, /kernel events: \d+ recorded/);
  const trace = parseTrace(fs.readFileSync(file, "utf8"), file);
  const kernel = trace.events.filter((e) => e.kind === "kernel");
  const exits = kernel.filter((e) => e.event === "kvm_exit");
  const hypercalls = kernel.filter((e) => e.event === "kvm_hypercall" && /^nr 0xc /.test(e.what!.replace("kvm_hypercall: ", "")));
  assert.ok(exits.length > 0, "kvm_exit events");
  assert.deepEqual([...new Set(exits.map((e) => e.vcpu))].sort(), [0, 1], "kvm_exit names both vCPUs");
  const conversions = trace.events.filter((e) => e.kind === "conversion" && e.source === "hypercall");
  assert.ok(conversions.length > 0);
  assert.ok(hypercalls.length >= conversions.length, `${hypercalls.length} KVM_HC_MAP_GPA_RANGE hypercalls in the kernel for ${conversions.length} conversions`);
  // Each conversion starts after its hypercall left the kernel, on the same vCPU, and soon after.
  const gaps: number[] = [];
  for (const c of conversions) {
    const started = c.time - (c.ns ?? 0) / 1e6;
    const before = hypercalls.filter((h) => h.vcpu === c.vcpu && h.time <= started + 0.001);
    assert.ok(before.length, `a kernel hypercall on vCPU ${c.vcpu} before conversion #${c.seq} at ${started.toFixed(3)} ms`);
    gaps.push(started - before[before.length - 1].time);
  }
  gaps.sort((a, b) => a - b);
  const median = gaps[gaps.length >> 1];
  process.stderr.write(`# kernel events: ${kernel.length}; hypercall → conversion start: median ${median.toFixed(3)} ms, max ${gaps[gaps.length - 1].toFixed(3)} ms\n`);
  assert.ok(median >= 0 && median < 100, `the kernel's hypercall and tsvmm's conversion line up (median gap ${median} ms)`);
});
