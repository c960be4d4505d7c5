import { test } from "node:test";
import assert from "node:assert/strict";
import { describeBreakSpec, MachineEvent, matches, parseBreakSpec, parseRange } from "../../vmm/control/breakSpec";
import { UsageError } from "../../vmm/errors";
import { Exit } from "../../vmm/kvm/uapi";

const conv = (over: Partial<Extract<MachineEvent, { kind: "conversion" }>> = {}): MachineEvent => ({
  kind: "conversion", vcpu: 0, source: "hypercall", gpa: 0x200000n, size: 0x1000n, from: "shared", to: "private", outcome: "converted", result: "ok", seq: 1, ...over,
});

test("parses every kind, with commas or spaces", () => {
  assert.deepEqual(parseBreakSpec("conversion"), { kind: "conversion" });
  assert.deepEqual(parseBreakSpec("conversion,range=0x200000+2M,to=private,source=hypercall,vcpu=1"), {
    kind: "conversion", range: { start: 0x200000n, end: 0x400000n }, to: "private", source: "hypercall", vcpu: 1,
  });
  assert.deepEqual(parseBreakSpec("conversion to=shared source=monitor"), { kind: "conversion", to: "shared", source: "monitor" });
  assert.deepEqual(parseBreakSpec("fault,range=2M-4M"), { kind: "fault", range: { start: 0x200000n, end: 0x400000n } });
  assert.deepEqual(parseBreakSpec("refused,vcpu=0"), { kind: "refused", vcpu: 0 });
  assert.deepEqual(parseBreakSpec("exit=IO"), { kind: "exit", reason: Exit.IO });
  assert.deepEqual(parseBreakSpec("exit=KVM_EXIT_MEMORY_FAULT"), { kind: "exit", reason: 39 });
  assert.deepEqual(parseBreakSpec("addr=tsvmm_main"), { kind: "addr", target: "tsvmm_main" });
  assert.equal(describeBreakSpec(parseBreakSpec("conversion,range=2M+4K,to=private")), "conversion,range=0x200000-0x201000,to=private");
  assert.equal(describeBreakSpec(parseBreakSpec("exit=39")), "exit=MEMORY_FAULT");
});

test("bad specs are usage errors naming the option and the fix", () => {
  const bad: Array<[string, RegExp]> = [
    ["", /needs a SPEC/],
    ["conversions", /unknown breakpoint kind "conversions"/],
    ["conversion,to=secret", /to=secret/],
    ["conversion,source=guest", /source=guest/],
    ["fault,to=private", /fault takes no to=/],
    ["exit=BOGUS", /unknown exit reason "BOGUS"/],
    ["exit", /exit needs a name/],
    ["addr", /addr needs a symbol/],
    ["conversion,range=4M-2M", /empty/],
    ["conversion,range=lots", /not a range/],
    ["refused,vcpu=x", /vcpu=x/],
    ["conversion private", /not KEY=VALUE/],
  ];
  for (const [spec, pattern] of bad)
    assert.throws(() => parseBreakSpec(spec), (e: unknown) => e instanceof UsageError && e.message.startsWith("--break") && pattern.test(e.message), spec);
  assert.throws(() => parseRange("pages", "0x1000"), /pages: "0x1000" is not a range/);
});

test("matching: conversions by range, direction, source and vCPU; faults; refusals; exits", () => {
  assert.ok(matches(parseBreakSpec("conversion"), conv()));
  assert.ok(matches(parseBreakSpec("conversion,range=0x200000+4K"), conv()));
  assert.ok(!matches(parseBreakSpec("conversion,range=0x201000+4K"), conv()));
  assert.ok(matches(parseBreakSpec("conversion,range=0x1ff000+8K"), conv()));
  assert.ok(!matches(parseBreakSpec("conversion,to=shared"), conv()));
  assert.ok(!matches(parseBreakSpec("conversion,source=fault"), conv()));
  assert.ok(matches(parseBreakSpec("conversion,source=monitor"), conv({ source: "monitor", vcpu: -1 })));
  assert.ok(matches(parseBreakSpec("conversion,source=api"), conv({ source: "cli", vcpu: -1 })));
  assert.ok(!matches(parseBreakSpec("conversion,vcpu=1"), conv()));
  assert.ok(!matches(parseBreakSpec("conversion"), conv({ outcome: "refused", result: "EINVAL: x" })));
  assert.ok(matches(parseBreakSpec("refused"), conv({ outcome: "refused", result: "EINVAL: x" })));
  assert.ok(matches(parseBreakSpec("fault"), conv({ source: "fault", outcome: "refused" })));
  assert.ok(matches(parseBreakSpec("fault"), conv({ source: "fault" })));
  assert.ok(!matches(parseBreakSpec("fault"), conv()));
  assert.ok(matches(parseBreakSpec("exit=HLT"), { kind: "exit", vcpu: 0, reason: Exit.HLT }));
  assert.ok(!matches(parseBreakSpec("exit=HLT"), { kind: "exit", vcpu: 0, reason: Exit.IO }));
  assert.ok(!matches(parseBreakSpec("addr=0x100000"), { kind: "exit", vcpu: 0, reason: Exit.DEBUG }));
});

test("watch=: symbol or address, optional +LEN, access w (default) or rw; bad ones are usage errors", () => {
  assert.deepEqual(parseBreakSpec("watch=count"), { kind: "watch", target: "count", length: undefined, access: "w" });
  assert.deepEqual(parseBreakSpec("watch=0x103000+8,access=rw"), { kind: "watch", target: "0x103000", length: 8, access: "rw" });
  assert.deepEqual(parseBreakSpec("watch=count+0x2"), { kind: "watch", target: "count", length: 2, access: "w" });
  assert.equal(describeBreakSpec(parseBreakSpec("watch=0x103000+4 access=rw")), "watch=0x103000+4,access=rw");
  assert.throws(() => parseBreakSpec("watch="), /watch needs a symbol or address/);
  assert.throws(() => parseBreakSpec("watch=count,access=r"), (e: unknown) => e instanceof UsageError && /x86 cannot watch reads alone/.test(e.describe()));
  assert.throws(() => parseBreakSpec("watch=count,vcpu=1"), /watch takes no vcpu=/);
  assert.equal(matches(parseBreakSpec("watch=count"), conv()), false, "the CPU matches watchpoints, not events");
});
