// Exit statuses of `tsvmm lab` itself. The command run inside the lab owns every other status:
// its exit status becomes tsvmm lab's. Every lab failure is also printed as "tsvmm: lab: ..." on
// stderr, so a clash with a command that exits 80..87 or 89 on its own can be told apart.
import { ExitStatus, TsvmmError } from "../errors";

export const LabStatus = {
  /** qemu-system-x86_64 (or another host tool the lab runs) is missing */
  NO_QEMU: 80,
  /** Debian's archive could not be reached or a package could not be downloaded */
  NO_APT: 81,
  /** a tool the kernel build needs (make, gcc, flex, bison, bc, libelf-dev, xz) is missing */
  NO_BUILD_TOOLS: 82,
  /** the sw-protected kernel build failed (the log path is printed) */
  BUILD_FAILED: 83,
  /** the initramfs could not be assembled (busybox or a module missing) */
  INITRAMFS_FAILED: 84,
  /** the lab's kernel panicked or its init failed (the last console lines are printed) */
  LAB_PANIC: 85,
  /** the lab did not reach the command within the boot limit; QEMU was killed */
  BOOT_TIMEOUT: 86,
  /** QEMU ended without the lab reporting a status (QEMU error or crash) */
  NO_STATUS: 87,
  /** QEMU used no CPU for a minute while the command ran: the lab stopped waking up; QEMU was killed */
  FROZEN: 89,
  /** the command ran longer than --timeout; QEMU was killed */
  TIMEOUT: ExitStatus.TIMEOUT,
  /** SIGINT/SIGTERM: QEMU was killed */
  INTERRUPTED: ExitStatus.INTERRUPTED,
} as const;

export class LabError extends TsvmmError {
  constructor(message: string, status: number, hint?: string) {
    super(`lab: ${message}`, status, hint);
    this.name = "LabError";
  }
}
