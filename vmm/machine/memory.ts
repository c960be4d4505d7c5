// Guest RAM: one guest_memfd (MMAP|INIT_SHARED) bound with KVM_MEM_GUEST_MEMFD and mapped at
// userspace_addr (so KVM's own accesses and an emulating KVM see the same pages), or a memfd on
// kernels without guest_memfd mmap support.
import { loadAddon, NativeMappedFile, NativeVm } from "../native";
import { GuestMemfdFlag, MemFlag } from "../kvm/uapi";

export type RamBacking = "guest_memfd" | "memfd";

export class GuestRam {
  readonly bytes: Buffer;

  private constructor(
    readonly backing: RamBacking,
    readonly file: NativeMappedFile,
    readonly size: bigint,
  ) {
    this.bytes = Buffer.from(file.map());
  }

  static create(vm: NativeVm, size: bigint, backing: RamBacking, useRegion2: boolean): GuestRam {
    const file =
      backing === "guest_memfd"
        ? vm.createGuestMemfd(size, GuestMemfdFlag.MMAP | GuestMemfdFlag.INIT_SHARED)
        : new (loadAddon().Memfd)("tsvmm-ram", size);
    const ram = new GuestRam(backing, file, size);
    const region = {
      slot: 0,
      flags: backing === "guest_memfd" ? MemFlag.GUEST_MEMFD : 0,
      guestPhysAddr: 0n,
      memorySize: size,
      userspaceAddr: file.address,
      guestMemfd: backing === "guest_memfd" ? file.fd : -1,
      guestMemfdOffset: 0n,
    };
    try {
      if (useRegion2) vm.setUserMemoryRegion2(region);
      else vm.setUserMemoryRegion(region);
    } catch (err) {
      file.close();
      throw err;
    }
    return ram;
  }

  write(gpa: bigint, data: Uint8Array): void {
    this.check(gpa, data.length);
    this.bytes.set(data, Number(gpa));
  }

  fill(gpa: bigint, length: number, value: number): void {
    this.check(gpa, length);
    this.bytes.fill(value, Number(gpa), Number(gpa) + length);
  }

  private check(gpa: bigint, length: number): void {
    if (gpa < 0n || gpa + BigInt(length) > this.size)
      throw new RangeError(`[0x${gpa.toString(16)}, +0x${length.toString(16)}) is outside RAM`);
  }

  close(): void {
    this.file.close();
  }
}
