// Kernel events (--kernel-events): tracefs text on the trace's time base, and how the views show it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { KERNEL_LANE, parseTracefs } from "../../vmm/trace/kernel";
import { parseTrace } from "../../vmm/trace/reader";
import { toPerfetto, tidOf } from "../../vmm/trace/perfetto";
import { MARK_CLASSES, pageData } from "../../vmm/trace/html";
import { formatReport } from "../../vmm/trace/report";

// Lines as tracefs prints them (the first two from this project's PVM host, kvm_exit in the
// format of the kernel's kvm_exit tracepoint), with the header tracefs puts first.
const TRACEFS = `# tracer: nop
#
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
            node-8644    [001] .....  2199.184705: kvm_pio: pio_read at 0x3ff size 1 count 1 val 0x0 
            node-8644    [001] .....  2199.184722: kvm_userspace_exit: reason KVM_EXIT_IO (2)
            node-8700    [000] .....  2199.200000: kvm_exit: vcpu 1 reason npf rip 0x100a3c info1 0x0000000000000006 info2 0x0000000000201000 intr_info 0x00000000 error_code 0x00000000 requests 0x0000000000000000
 tsvmm vcpu 0-8700    [000] d..1.  2199.200010: kvm_hypercall: nr 0xc a0 0x200000 a1 0x1 a2 0x10 a3 0x0
            node-8644    [001] .....  2199.100000: kvm_pio: before the VM started
`;
const START_NS = 2199_150_000_000n;

test("tracefs lines become records in ms since the trace's start; a thread's vCPU is the one its events name", () => {
  const records = parseTracefs(TRACEFS, START_NS);
  assert.equal(records.length, 4, "header lines and events before the start are dropped");
  assert.deepEqual(
    records.map((r) => [r.event, r.time, r.vcpu, r.tid, r.cpu]),
    [
      ["kvm_pio", 34.705, KERNEL_LANE, 8644, 1],
      ["kvm_userspace_exit", 34.722, KERNEL_LANE, 8644, 1],
      ["kvm_exit", 50, 1, 8700, 0],
      ["kvm_hypercall", 50.01, 1, 8700, 0],
    ],
  );
  assert.equal(records[3].task, "tsvmm vcpu 0", "task names may hold spaces and dashes");
  assert.equal(records[3].text, "nr 0xc a0 0x200000 a1 0x1 a2 0x10 a3 0x0");
});

test("kernel records in a trace: their own lane or their vCPU's, counted in the report, instants in Perfetto", () => {
  const start = { seq: 0, time: 0, vcpu: -1, kind: "start", format: "tsvmm-trace", version: 1, guest: "t", cpus: 2, ram: 1 << 20, pageSize: 4096, backend: "shared", backing: "memfd", sharedBit: 0, sharedLimit: "0x0", pages: [{ first: 0, count: 256, state: "shared" }], clock: { monotonicNs: String(START_NS), wall: "" } };
  const lines = [start, { seq: 1, time: 60, vcpu: -1, kind: "end", status: 0, reason: "ok" }, ...parseTracefs(TRACEFS, START_NS).map((r, i) => ({ seq: 2 + i, ...r }))];
  const trace = parseTrace(lines.map((l) => JSON.stringify(l)).join("\n"), "k");
  assert.equal(trace.events.length, 4);
  assert.match(formatReport(trace), /by kind +kernel 4/);
  assert.match(formatReport(trace), /KVM \(no vCPU\) \(2 events\)/);
  const data = pageData(trace);
  assert.deepEqual(data.lanes.map((l) => l.name), ["vCPU 0", "vCPU 1", "KVM (no vCPU)"], "every vCPU, then KVM's own lane");
  const kernelClass = MARK_CLASSES.findIndex((c) => c.id === "kernel");
  assert.deepEqual(data.c, [kernelClass, kernelClass, kernelClass, kernelClass]);
  const perfetto = toPerfetto(trace).traceEvents;
  const instants = perfetto.filter((e) => e.ph === "i" && e.cat === "kernel");
  assert.deepEqual(instants.map((e) => [e.name, e.tid, e.ts]), [
    ["kvm_pio", tidOf(KERNEL_LANE), 34705],
    ["kvm_userspace_exit", tidOf(KERNEL_LANE), 34722],
    ["kvm_exit", tidOf(1), 50000],
    ["kvm_hypercall", tidOf(1), 50010],
  ]);
  assert.ok(perfetto.some((e) => e.ph === "M" && e.tid === tidOf(KERNEL_LANE) && e.args?.name === "KVM (no vCPU)"));
});
