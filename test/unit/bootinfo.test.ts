// Cross-checks the TypeScript mirror of the guest ABI against guest/include/tsvmm/abi.h, compiled.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as abi from "../../vmm/machine/abi";
import { ExitStatus } from "../../vmm/errors";

const ROOT = path.resolve(__dirname, "..", "..", "..");

/** Compile a C program against abi.h and return what it prints, parsed as JSON. */
function compileAndRun(program: string): Record<string, any> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-abi-"));
  try {
    const src = path.join(dir, "abi.c");
    fs.writeFileSync(src, program);
    const exe = path.join(dir, "abi");
    execFileSync("gcc", ["-I", path.join(ROOT, "guest", "include"), "-o", exe, src], { timeout: 20000 });
    return JSON.parse(execFileSync(exe, { timeout: 5000 }).toString());
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test("abi.ts matches abi.h (offsets and constants, compiled with gcc)", () => {
  const c = compileAndRun(
    `#include <stdio.h>
#include <stddef.h>
#include "tsvmm/abi.h"
#define F(m) printf("\\"%s\\": %zu,\\n", #m, offsetof(struct tsvmm_boot_info, m))
int main(void) {
  printf("{\\n");
  F(magic); F(version); F(cpu_count); F(guest_entry); F(free_base); F(ram_range_count); F(backend);
  F(shared_bit); F(convert_method); F(convert_port); F(exit_port); F(console_port); F(ram); F(cmdline);
  printf("\\"size\\": %zu, \\"boot_gpa\\": %d, \\"fw\\": %d, \\"stacks\\": %d, \\"stack\\": %d, \\"cpus\\": %d, \\"guest\\": %d,\\n",
    sizeof(struct tsvmm_boot_info), TSVMM_BOOT_INFO_GPA, TSVMM_FIRMWARE_BASE, TSVMM_STACKS_BASE, TSVMM_STACK_SIZE, TSVMM_MAX_CPUS, TSVMM_GUEST_BASE);
  printf("\\"console\\": %d, \\"exit\\": %d, \\"convert\\": %d, \\"magic_value\\": \\"%llx\\"}\\n",
    TSVMM_CONSOLE_PORT, TSVMM_EXIT_PORT, TSVMM_CONVERT_PORT, (unsigned long long)TSVMM_BOOT_MAGIC);
  return 0;
}
`,
  );

  assert.equal(c.size, abi.BOOT_INFO_SIZE);
  assert.equal(c.boot_gpa, abi.BOOT_INFO_GPA);
  assert.equal(c.fw, abi.FIRMWARE_BASE);
  assert.equal(c.stacks, abi.STACKS_BASE);
  assert.equal(c.stack, abi.STACK_SIZE);
  assert.equal(c.cpus, abi.MAX_CPUS);
  assert.equal(c.guest, abi.GUEST_BASE);
  assert.equal(c.console, abi.CONSOLE_PORT);
  assert.equal(c.exit, abi.EXIT_PORT);
  assert.equal(c.convert, abi.CONVERT_PORT);
  assert.equal(BigInt("0x" + c.magic_value), abi.BOOT_MAGIC);

  const b = abi.encodeBootInfo({
    cpuCount: 3,
    guestEntry: 0x100040n,
    freeBase: 0x105000n,
    ram: [{ base: 0n, size: 64n << 20n, flags: 0 }, { base: 1n << 32n, size: 0x1000n, flags: abi.RAM_PRIVATE }],
    backend: abi.BackendId.memslots,
    sharedBit: 39,
    convertMethod: abi.ConvertMethod.doorbell,
    cmdline: "fault=pf",
  });
  assert.equal(b.length, c.size);
  assert.equal(b.readBigUInt64LE(c.magic), abi.BOOT_MAGIC);
  assert.equal(b.readUInt32LE(c.version), abi.BOOT_VERSION);
  assert.equal(b.readUInt32LE(c.cpu_count), 3);
  assert.equal(b.readBigUInt64LE(c.guest_entry), 0x100040n);
  assert.equal(b.readBigUInt64LE(c.free_base), 0x105000n);
  assert.equal(b.readUInt32LE(c.ram_range_count), 2);
  assert.equal(b.readUInt32LE(c.backend), 2);
  assert.equal(b.readUInt32LE(c.shared_bit), 39);
  assert.equal(b.readUInt32LE(c.convert_method), 3);
  assert.equal(b.readUInt16LE(c.convert_port), abi.CONVERT_PORT);
  assert.equal(b.readUInt16LE(c.exit_port), abi.EXIT_PORT);
  assert.equal(b.readUInt16LE(c.console_port), abi.CONSOLE_PORT);
  assert.equal(b.readBigUInt64LE(c.ram + 24), 1n << 32n);
  assert.equal(b.readUInt32LE(c.ram + 24 + 16), abi.RAM_PRIVATE);
  assert.equal(b.toString("utf8", c.cmdline, c.cmdline + 8), "fault=pf");
  assert.equal(b[c.cmdline + 8], 0);
});

test("the boot page refuses what does not fit", () => {
  const base = { cpuCount: 1, guestEntry: 0n, freeBase: 0n, backend: 0, sharedBit: 0, convertMethod: 0 };
  assert.throws(() => abi.encodeBootInfo({ ...base, ram: [], cmdline: "x".repeat(600) }), /command line is limited/);
  assert.throws(() => abi.encodeBootInfo({ ...base, ram: Array(17).fill({ base: 0n, size: 0n, flags: 0 }), cmdline: "" }), /at most 16/);
});

test("host requests and exit statuses match abi.h (compiled with gcc), and encode/decode use its offsets", () => {
  const c = compileAndRun(`#include <stdio.h>
#include <stddef.h>
#include "tsvmm/abi.h"
#define F(m) printf("\\"%s\\": %zu,\\n", #m, offsetof(struct tsvmm_host_request, m))
#define K(n) printf("\\"%s\\": %d,\\n", #n, (int)(n))
int main(void) {
  printf("{\\n");
  F(op); F(result); F(gpa); F(size); F(expect); F(fill); F(flags); F(found); F(value);
  K(TSVMM_HOST_PORT); K(TSVMM_HOST_CHECK_SHARED); K(TSVMM_HOST_CHECK_PRIVATE); K(TSVMM_HOST_PUNCH_PRIVATE);
  K(TSVMM_HOST_COUNT_PRIVATE); K(TSVMM_HOST_TEST_SLOT_CREATE); K(TSVMM_HOST_TEST_SLOT_BREAK);
  K(TSVMM_BREAK_DELETE); K(TSVMM_BREAK_NO_GMEM); K(TSVMM_BREAK_RELEASE); K(TSVMM_HOST_FLAG_FILL);
  K(TSVMM_STATUS_PASS); K(TSVMM_STATUS_BAD_CMDLINE); K(TSVMM_STATUS_BAD_IMAGE); K(TSVMM_STATUS_NO_CAPABILITY);
  K(TSVMM_STATUS_INTERNAL); K(TSVMM_STATUS_GUEST_EXCEPTION); K(TSVMM_STATUS_SHUTDOWN); K(TSVMM_STATUS_KVM_ERROR);
  K(TSVMM_STATUS_UNHANDLED_EXIT); K(TSVMM_STATUS_MEMORY_FAULT); K(TSVMM_STATUS_BAD_HYPERCALL);
  K(TSVMM_STATUS_BAD_STATUS); K(TSVMM_STATUS_GUEST_MAX); K(TSVMM_STATUS_TIMEOUT); K(TSVMM_STATUS_SIGINT);
  K(TSVMM_STATUS_OUTPUT_FAILED); K(TSVMM_STATUS_GUEST_RESET); K(TSVMM_STATUS_GUEST_PANIC); K(TSVMM_STATUS_SIGHUP); K(TSVMM_STATUS_STDOUT_CLOSED); K(TSVMM_STATUS_SIGTERM);
  printf("\\"bytes\\": %zu}\\n", sizeof(struct tsvmm_host_request));
  return 0;
}
`);
  assert.equal(c.bytes, abi.HOST_REQUEST_SIZE);
  assert.equal(c.TSVMM_HOST_PORT, abi.HOST_PORT);
  assert.deepEqual(abi.HostOp, {
    CHECK_SHARED: c.TSVMM_HOST_CHECK_SHARED,
    CHECK_PRIVATE: c.TSVMM_HOST_CHECK_PRIVATE,
    PUNCH_PRIVATE: c.TSVMM_HOST_PUNCH_PRIVATE,
    COUNT_PRIVATE: c.TSVMM_HOST_COUNT_PRIVATE,
    TEST_SLOT_CREATE: c.TSVMM_HOST_TEST_SLOT_CREATE,
    TEST_SLOT_BREAK: c.TSVMM_HOST_TEST_SLOT_BREAK,
  });
  assert.deepEqual(abi.HostBreak, { DELETE: c.TSVMM_BREAK_DELETE, NO_GMEM: c.TSVMM_BREAK_NO_GMEM, RELEASE: c.TSVMM_BREAK_RELEASE });
  assert.equal(abi.HOST_FLAG_FILL, c.TSVMM_HOST_FLAG_FILL);
  assert.deepEqual(ExitStatus, {
    OK: c.TSVMM_STATUS_PASS,
    USAGE: c.TSVMM_STATUS_BAD_CMDLINE,
    BAD_IMAGE: c.TSVMM_STATUS_BAD_IMAGE,
    HOST_UNSUPPORTED: c.TSVMM_STATUS_NO_CAPABILITY,
    INTERNAL: c.TSVMM_STATUS_INTERNAL,
    GUEST_EXCEPTION: c.TSVMM_STATUS_GUEST_EXCEPTION,
    TRIPLE_FAULT: c.TSVMM_STATUS_SHUTDOWN,
    KVM_INTERNAL_ERROR: c.TSVMM_STATUS_KVM_ERROR,
    UNHANDLED_EXIT: c.TSVMM_STATUS_UNHANDLED_EXIT,
    MEMORY_FAULT: c.TSVMM_STATUS_MEMORY_FAULT,
    BAD_HYPERCALL: c.TSVMM_STATUS_BAD_HYPERCALL,
    BAD_GUEST_STATUS: c.TSVMM_STATUS_BAD_STATUS,
    OUTPUT_FAILED: c.TSVMM_STATUS_OUTPUT_FAILED,
    GUEST_RESET: c.TSVMM_STATUS_GUEST_RESET,
    GUEST_PANIC: c.TSVMM_STATUS_GUEST_PANIC,
    TIMEOUT: c.TSVMM_STATUS_TIMEOUT,
    HANGUP: c.TSVMM_STATUS_SIGHUP,
    INTERRUPTED: c.TSVMM_STATUS_SIGINT,
    STDOUT_CLOSED: c.TSVMM_STATUS_STDOUT_CLOSED,
    TERMINATED: c.TSVMM_STATUS_SIGTERM,
  });
  assert.equal(abi.GUEST_STATUS_MAX, c.TSVMM_STATUS_GUEST_MAX);
  assert.deepEqual(abi.FIRMWARE_STATUSES, [c.TSVMM_STATUS_INTERNAL, c.TSVMM_STATUS_GUEST_EXCEPTION]);

  // A request as the guest lays it out (at the compiled offsets), decoded; then the answer encoded.
  const b = Buffer.alloc(8 + c.bytes, 0xee);
  const at = 8;
  b.writeUInt32LE(abi.HostOp.CHECK_SHARED, at + c.op);
  b.writeBigUInt64LE(0x200000n, at + c.gpa);
  b.writeBigUInt64LE(0x3000n, at + c.size);
  b[at + c.expect] = 0xa5;
  b[at + c.fill] = 0x5a;
  b[at + c.flags] = abi.HOST_FLAG_FILL;
  assert.deepEqual(abi.decodeHostRequest(b, at), { op: 1, gpa: 0x200000n, size: 0x3000n, expect: 0xa5, fill: 0x5a, flags: 1 });
  abi.encodeHostAnswer(b, at, { result: -1, found: 0x200123n, value: 0x7fn });
  assert.equal(b.readInt32LE(at + c.result), -1);
  assert.equal(b.readBigUInt64LE(at + c.found), 0x200123n);
  assert.equal(b.readBigUInt64LE(at + c.value), 0x7fn);
  assert.equal(b.readBigUInt64LE(at + c.gpa), 0x200000n, "the answer leaves the request as it was");
  assert.equal(b[0], 0xee, "nothing is written before the request");
});
