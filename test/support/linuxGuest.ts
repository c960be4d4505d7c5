// The Linux test guest of the lab tests and the bench: the lab's own sw-protected kernel (the
// bzImage `tsvmm lab` cached) with a busybox initramfs whose /init prints facts and ends the VM.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { labCacheDir } from "../../vmm/lab/paths";
import { cachedKernelImage } from "../../vmm/lab/kernel";
import { localBusybox, writeCpio } from "../../vmm/lab/initramfs";

/**
 * The guest's command line: the console on COM1, a panic resets at once (the VMM reports it), and
 * the LAPIC timer in one-shot mode instead of TSC-deadline: in the lab the nested TSC is unstable
 * (Linux's clocksource watchdog marks it so), and with TSC-deadline timers guests under tsvmm and
 * under QEMU alike now and then slept forever (a `sleep 1` never returned; docs/exit-path.md).
 */
export const LINUX_GUEST_APPEND = "console=ttyS0 panic=-1 lapic=notscdeadline";

/** The Linux cases of the lab:linux tier (test/lab/linux.test.ts), each run in a lab of its own
 *  by `npm test` (TSVMM_LINUX_CASE=ID) so that a lab that froze costs one case, run again. */
export const LINUX_CASES = ["1cpu", "2cpus", "attributes", "memslots", "typed"] as const;
export type LinuxCase = (typeof LINUX_CASES)[number];

/** What the tests and the bench print when a boot hit the nested stack's stall and runs again
 *  (scripts/test.js lists these lines at the end of `npm test`) */
export const NESTED_STALL_MARK = "the guest stalled in the nested stack";

/**
 * Whether a `tsvmm run` that ended on its --timeout (124) is the nested stack's known guest stall
 * rather than a verdict on tsvmm: in the lab, QEMU's TCG emulation of SVM under the lab's kvm_amd
 * now and then delivers the guest's LAPIC timer interrupt while the guest has interrupts off,
 * inside the timer handler, and the nested handler spins forever on a lock the outer one holds
 * (docs/exit-path.md: seen under QEMU as a VMM in the lab too). Its mark in tsvmm's timeout report:
 * a vCPU still running in the guest kernel with RFLAGS.IF clear, which a Linux kernel never is for
 * minutes on its own. A guest idle with interrupts on (waiting for something tsvmm did not
 * deliver), a crash or any other status is not this. Returns what the report says, or undefined.
 */
export function nestedStall(status: number | null, output: string): string | undefined {
  if (status !== 124 || !/timed out after \d+ s \(--timeout\)/.test(output)) return undefined;
  const registers = /vCPU (\d+) registers \([^)]*\):\s*rip=([0-9a-f]{16}) rsp=[0-9a-f]+ rflags=([0-9a-f]+)/g;
  for (const [, vcpu, rip, rflags] of output.matchAll(registers)) {
    const interruptsOff = (parseInt(rflags, 16) & 0x200) === 0;
    const inKernel = parseInt(rip.slice(0, 4), 16) >= 0xffff;
    if (interruptsOff && inKernel) return `vCPU ${vcpu} still running with interrupts off in the kernel at rip=${rip}, rflags=${rflags}`;
  }
  return undefined;
}

/** The first line /init prints: the time to it is "time to init" */
export const INIT_MARK = "TSVMM-GUEST init";

/**
 * /init: facts on the console, a line read from the console when the command line has
 * `tsvmm_typed=1` (the kernel hands it to init as a variable), then power-off. Without ACPI (tsvmm's PC) Linux turns `poweroff -f`
 * into a halt whose path (kernel_halt) does not flush the console; straight after the init's
 * output, 3 of 6 runs halted before "Power off not available" reached the UART (tsvmm then
 * reports 74), and `reboot -f` even stayed idle for 200 s without restarting. After a `sleep 1`
 * every run printed it (docs/exit-path.md).
 */
const GUEST_INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "${INIT_MARK} $(cut -d' ' -f1 /proc/uptime)"
grep MemTotal /proc/meminfo
echo "TSVMM-GUEST online CPUs: $(cat /sys/devices/system/cpu/online)"
grep ttyS0 /proc/interrupts
if [ -n "$tsvmm_typed" ]; then
  echo "TSVMM-GUEST waiting for a line"
  read -r line
  echo "TSVMM-GUEST typed: $line"
fi
echo "TSVMM-GUEST done"
sleep 1
poweroff -f
`;

/** The guest's files (the initramfs written under a fresh temporary directory), or why they are missing. */
export function linuxGuestFiles(): { kernel: string; initrd: string } | { missing: string } {
  const cache = labCacheDir();
  const kernel = cachedKernelImage("sw-protected", cache);
  if (!kernel) return { missing: `no sw-protected lab kernel in ${cache} (tsvmm lab --prepare-only --kernel sw-protected)` };
  const busybox = localBusybox(cache);
  if (!busybox) return { missing: `no static busybox on this host or in ${cache} (tsvmm lab --prepare-only)` };
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
  return { kernel, initrd };
}
