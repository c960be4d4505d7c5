// Multiboot guests on the PC platform, on the host's /dev/kvm: the project's multiboot test kernel
// with 1 and 2 vCPUs, RAM above 4 GiB, modules, and how tiny kernels end (halt, reset, bad images).
import { test } from "node:test";
import assert from "node:assert/strict";
import { tsvmm } from "../support/cli";
import { requireKvm } from "../support/host";
import { CF9_RESET, CLI_HLT_LOOP, I8042_RESET, kludgeKernel, writeTemp } from "../support/multibootKernel";

const T = { timeout: 60000 };

function assertPassed(stdout: string, checks: number): void {
  assert.doesNotMatch(stdout, /^not ok/m);
  assert.match(stdout, new RegExp(`^1\\.\\.${checks}\\r?$`, "m"));
  assert.match(stdout, /multiboot: PASS/);
}

test("multiboot, 1 vCPU: the info block, fw_cfg, PIT and UART interrupts; exit 0", T, async (t) => {
  if (!requireKvm(t)) return;
  const r = await tsvmm(["run", "multiboot", "--append", "answer=42"]);
  assert.equal(r.status, 0, r.stderr + r.stdout);
  assertPassed(r.stdout, 9);
  assert.match(r.stdout, /# fw_cfg: 1 CPUs, RAM 0x4000000/);
  assert.match(r.stdout, /# cmdline: multiboot answer=42/);
  assert.match(r.stdout, /ok \d+ - the PIT's IRQ 0 woke a halted vCPU/);
  assert.match(r.stdout, /ok \d+ - the 16550 raised IRQ 4/);
  assert.match(r.stderr, /multiboot kernel multiboot: entry 0x10000c/);
  assert.match(r.stderr, /guest exited with status 0/);
  assert.doesNotMatch(r.stderr, /ports no device claims/);
});

test("multiboot, 2 vCPUs: the boot vCPU brings the other up with INIT/SIPI; APIC ids match CPUID", T, async (t) => {
  if (!requireKvm(t)) return;
  const r = await tsvmm(["run", "multiboot", "--cpus", "2"]);
  assert.equal(r.status, 0, r.stderr + r.stdout);
  assertPassed(r.stdout, 11);
  assert.match(r.stdout, /# AP up: local APIC id 1, CPUID\.1 APIC id 1/);
  assert.match(r.stdout, /ok \d+ - INIT\/SIPI brought up every other vCPU/);
});

test("multiboot with 5 GiB: the memory map has the hole below 4 GiB and RAM continues at 4 GiB", T, async (t) => {
  if (!requireKvm(t)) return;
  const r = await tsvmm(["run", "multiboot", "--mem", "5G"]);
  assert.equal(r.status, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /# mmap 0x100000-0xc0000000 RAM/);
  assert.match(r.stdout, /# mmap 0x100000000-0x180000000 RAM/);
  assert.match(r.stdout, /ok \d+ - the memory map covers exactly the RAM fw_cfg reports/);
});

test("multiboot modules come from --initrd 'FILE ARGS'", T, async (t) => {
  if (!requireKvm(t)) return;
  const mod = writeTemp("mod.bin", Buffer.alloc(5000, 0x5a));
  const r = await tsvmm(["run", "multiboot", "--initrd", `${mod} first=1`]);
  assert.equal(r.status, 0, r.stderr + r.stdout);
  assert.match(r.stdout, new RegExp(`# module 0: 5000 bytes at 0x[0-9a-f]+, "${mod} first=1"`));
});

test("a kernel halted forever with interrupts off is reported (74), not waited on", T, async (t) => {
  if (!requireKvm(t)) return;
  const r = await tsvmm(["run", writeTemp("hlt.bin", kludgeKernel(CLI_HLT_LOOP)), "--timeout", "30"]);
  assert.equal(r.status, 74, r.stderr);
  assert.match(r.stderr, /every vCPU halted with interrupts off/);
  assert.match(r.stderr, /vCPU 0 registers/);
});

for (const [name, code, port] of [["i8042", I8042_RESET, /0xfe to port 0x64/], ["0xcf9", CF9_RESET, /0x6 to port 0xcf9/]] as const) {
  test(`a reset through ${name} ends the VM with status 79`, T, async (t) => {
    if (!requireKvm(t)) return;
    const r = await tsvmm(["run", writeTemp("reset.bin", kludgeKernel([...code]))]);
    assert.equal(r.status, 79, r.stderr);
    assert.match(r.stderr, /guest reset: /);
    assert.match(r.stderr, port);
  });
}

test("bad multiboot and Linux images are refused with 65 naming the field; private memory with 64", T, async () => {
  const video = await tsvmm(["run", writeTemp("video.bin", kludgeKernel(CLI_HLT_LOOP, 0x4))]);
  assert.equal(video.status, 65, video.stderr);
  assert.match(video.stderr, /multiboot header flags 0x10004: required bit 0x4 \(video mode/);
  const notLinux = await tsvmm(["run", "--kernel", writeTemp("bz", Buffer.alloc(4096))]);
  assert.equal(notLinux.status, 65, notLinux.stderr);
  assert.match(notLinux.stderr, /not a Linux bzImage: boot_flag 0x0/);
  const priv = await tsvmm(["run", "multiboot", "--private", "all"]);
  assert.equal(priv.status, 64, priv.stderr);
  assert.match(priv.stderr, /private memory .* is for tsvmm's own test guests/);
});
