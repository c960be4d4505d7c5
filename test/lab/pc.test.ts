// PC guests on the lab's real KVM: the project's multiboot test kernel, and Linux (the lab's own
// kernel with a small busybox initramfs) booted by `tsvmm run --kernel`.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { labCli, labKernel, onLabKernel } from "./support";
import { labCacheDir } from "../../vmm/lab/paths";
import { writeCpio } from "../../vmm/lab/initramfs";

test("the multiboot test kernel with 2 vCPUs: INIT/SIPI, fw_cfg, PIT and UART interrupts", { timeout: 300_000 }, async () => {
  const t0 = Date.now();
  const r = await labCli(["run", "multiboot", "--cpus", "2"], 280_000);
  assert.equal(r.status, 0, `status ${r.status}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  assert.doesNotMatch(r.stdout, /^not ok/m);
  assert.match(r.stdout, /^1\.\.11\r?$/m);
  assert.match(r.stdout, /# AP up: local APIC id 1, CPUID\.1 APIC id 1/);
  process.stderr.write(`# tsvmm run multiboot --cpus 2 in the lab: ${Date.now() - t0} ms (including Node start)\n`);
});

/** The /init of the Linux test guest: facts on the console, then power-off. */
const GUEST_INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "TSVMM-GUEST init $(cut -d' ' -f1 /proc/uptime)"
grep MemTotal /proc/meminfo
echo "TSVMM-GUEST online CPUs: $(cat /sys/devices/system/cpu/online)"
grep ttyS0 /proc/interrupts
echo "TSVMM-GUEST done"
poweroff -f
`;

/** The lab kernel this lab booted (its bzImage is visible at the same path), and busybox. */
function linuxGuestFiles(): { kernel: string; initrd: string } | undefined {
  const kind = labKernel();
  if (!kind) return undefined;
  const cache = labCacheDir();
  const kernelDir = path.join(cache, kind);
  const entry = fs.readdirSync(kernelDir).map((n) => path.join(kernelDir, n)).find((d) => fs.existsSync(path.join(d, "READY")) && fs.existsSync(path.join(d, "bzImage")));
  const busyboxDir = path.join(cache, "busybox");
  const busybox = fs.readdirSync(busyboxDir).map((n) => path.join(busyboxDir, n, "busybox")).find((p) => fs.existsSync(p));
  if (!entry || !busybox) return undefined;
  const initrd = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-linux-")), "guest.cpio");
  fs.writeFileSync(
    initrd,
    writeCpio([
      { name: "bin", type: "dir" },
      { name: "dev", type: "dir" },
      { name: "dev/console", type: "char", major: 5, minor: 1 },
      { name: "proc", type: "dir" },
      { name: "sys", type: "dir" },
      { name: "bin/busybox", type: "file", data: fs.readFileSync(busybox), mode: 0o755 },
      { name: "init", type: "file", data: Buffer.from(GUEST_INIT), mode: 0o755 },
    ]),
  );
  return { kernel: path.join(entry, "bzImage"), initrd };
}

// Linux boots only on the lab's own (sw-protected) kernel: Debian's stock kernel takes minutes
// to boot nested (../shared/reference/host-kvm.md), so it is not a test guest.
onLabKernel("sw-protected")("Linux (the lab's kernel, busybox initramfs) boots to /init, reports facts and powers off (0)", { timeout: 300_000 }, async () => {
  const files = linuxGuestFiles();
  assert.ok(files, "the lab kernel's bzImage and busybox are in the lab cache");
  const t0 = Date.now();
  const r = await labCli(["run", "--kernel", files.kernel, "--initrd", files.initrd, "--append", "console=ttyS0 panic=-1", "--mem", "256M", "--timeout", "240"], 280_000);
  const ms = Date.now() - t0;
  assert.equal(r.status, 0, `status ${r.status}\nstdout:\n${r.stdout.slice(-4000)}\nstderr:\n${r.stderr}`);
  assert.match(r.stdout, /TSVMM-GUEST init/);
  assert.match(r.stdout, /MemTotal:\s+\d+ kB/);
  assert.match(r.stdout, /TSVMM-GUEST online CPUs: 0/);
  assert.match(r.stdout, /^\s*4:\s+[1-9]\d*\s.*ttyS0/m, "the 8250 driver took interrupts on IRQ 4");
  assert.match(r.stdout, /reboot: Power down/);
  assert.match(r.stderr, /guest powered off/);
  process.stderr.write(`# tsvmm run --kernel (Linux to power-off) in the lab: ${ms} ms (including Node start)\n`);
});
