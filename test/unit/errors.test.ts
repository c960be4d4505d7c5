import { test } from "node:test";
import assert from "node:assert/strict";
import { ExitStatus, fromSyscall } from "../../vmm/errors";
import type { NativeSyscallError } from "../../vmm/native";

const syscallError = (operation: string, code: string, errno: number): NativeSyscallError =>
  Object.assign(new Error(`${operation} failed: ${code}`), { syscall: "ioctl", operation, errno, code, args: {} });

test("EACCES from KVM_CREATE_GUEST_MEMFD names a security module as the likely cause (69)", () => {
  const e = fromSyscall(syscallError("KVM_CREATE_GUEST_MEMFD", "EACCES", 13), "cannot set up the VM");
  assert.equal(e.status, ExitStatus.HOST_UNSUPPORTED);
  assert.match(e.message, /^cannot set up the VM: KVM_CREATE_GUEST_MEMFD failed: EACCES/);
  assert.match(e.hint!, /SELinux/);
  assert.match(e.hint!, /ausearch -m avc/);
});

test("other failures keep their status and get no host hint", () => {
  const e = fromSyscall(syscallError("KVM_CREATE_GUEST_MEMFD", "EINVAL", 22), "cannot set up the VM");
  assert.equal(e.status, ExitStatus.INTERNAL);
  assert.equal(e.hint, undefined);
  const open = fromSyscall(syscallError("open /dev/kvm", "EACCES", 13), "cannot open /dev/kvm");
  assert.match(open.hint!, /kvm group/);
});
