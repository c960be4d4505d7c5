// Cross-checks the TypeScript mirror of the guest ABI against guest/include/tsvmm/abi.h, compiled.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as abi from "../../vmm/machine/abi";

const ROOT = path.resolve(__dirname, "..", "..", "..");

test("abi.ts matches abi.h (offsets and constants, compiled with gcc)", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-abi-"));
  const src = path.join(dir, "abi.c");
  fs.writeFileSync(
    src,
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
  const exe = path.join(dir, "abi");
  execFileSync("gcc", ["-I", path.join(ROOT, "guest", "include"), "-o", exe, src], { timeout: 20000 });
  const c = JSON.parse(execFileSync(exe, { timeout: 5000 }).toString());
  fs.rmSync(dir, { recursive: true, force: true });

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
