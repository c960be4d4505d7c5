// The recogniser of the nested stack's guest stall (test/support/linuxGuest.ts), on tsvmm's own
// timeout reports: the stall's, as seen in the lab, and the look-alikes it must not take for it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { nestedStall } from "../support/linuxGuest";

const TIMED_OUT = "tsvmm: bzImage: timed out after 120 s (--timeout) after 120.146 s (10392 exits: 9841 handled natively, 354 in TypeScript)";
const registers = (vcpu: number, rip: string, rflags: string) =>
  [
    `  vCPU ${vcpu} registers (64-bit long mode):`,
    `    rip=${rip} rsp=ffffc90000003d48 rflags=${rflags}`,
    "    rax=0000000000000001 rbx=ffff88800015fca8 rcx=ffffffff810014f9 rdx=0000000000000001",
    "    cs=0010 base=0000000000000000 limit=ffffffff type=b l=1 db=0",
  ].join("\n");

test("the lab's stall: a timeout with vCPU 0 in the kernel, interrupts off", () => {
  const report = [TIMED_OUT, registers(0, "ffffffff81619685", "00000002"), '  last console line: "Speculative Store Bypass: Vulnerable"'].join("\n");
  assert.equal(nestedStall(124, report), "vCPU 0 still running with interrupts off in the kernel at rip=ffffffff81619685, rflags=00000002");
});

test("two vCPUs: the one with interrupts off is named; CRLF from a terminal is fine", () => {
  const report = [TIMED_OUT, registers(0, "ffffffff81000e2e", "00000246"), registers(1, "ffffffff8161967d", "00000046")].join("\r\n");
  assert.match(nestedStall(124, report) ?? "", /^vCPU 1 .* rip=ffffffff8161967d, rflags=00000046$/);
});

test("not the stall: a guest idle with interrupts on, user mode, another status, no timeout line", () => {
  assert.equal(nestedStall(124, [TIMED_OUT, registers(0, "ffffffff81000e2e", "00000246")].join("\n")), undefined);
  assert.equal(nestedStall(124, [TIMED_OUT, registers(0, "00000000004011a0", "00000002")].join("\n")), undefined);
  assert.equal(nestedStall(74, [TIMED_OUT, registers(0, "ffffffff81619685", "00000002")].join("\n")), undefined);
  assert.equal(nestedStall(124, registers(0, "ffffffff81619685", "00000002")), undefined);
  assert.equal(nestedStall(124, `${TIMED_OUT}\n  vCPU 0 (registers unavailable: EBUSY)`), undefined);
});
