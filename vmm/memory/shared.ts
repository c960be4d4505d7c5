// The shared-only backend (no private memory): one guest_memfd (MMAP|INIT_SHARED) bound with KVM_MEM_GUEST_MEMFD and mapped at
// userspace_addr (so KVM's own accesses and an emulating KVM see the same pages), or a memfd on
// kernels without guest_memfd mmap support.
import { loadAddon, NativeMappedFile, NativeVm } from "../native";
import { GuestMemfdFlag } from "../kvm/uapi";
import { ApplyResult, MemoryBackend, slotRegion } from "./backend";

export type RamBacking = "guest_memfd" | "memfd";

const MMAP_AND_SHARED = GuestMemfdFlag.MMAP | GuestMemfdFlag.INIT_SHARED;

/** guest_memfd when the host can map it and start it shared (both flags, and the REGION2 ioctl
 *  that binds it), else a memfd. `guestMemfdFlags` is KVM_CAP_GUEST_MEMFD_FLAGS of a default VM. */
export function chooseSharedRam(memoryRegion2: boolean, guestMemfdFlags: number): RamBacking {
  return memoryRegion2 && (BigInt(guestMemfdFlags) & MMAP_AND_SHARED) === MMAP_AND_SHARED ? "guest_memfd" : "memfd";
}

export class SharedRam implements MemoryBackend {
  readonly kind = "shared";
  readonly sharedView: Buffer;

  private constructor(
    readonly backing: RamBacking,
    readonly file: NativeMappedFile,
    readonly size: bigint,
  ) {
    this.sharedView = Buffer.from(file.map());
  }

  static create(vm: NativeVm, size: bigint, backing: RamBacking, useRegion2: boolean): SharedRam {
    const file =
      backing === "guest_memfd"
        ? vm.createGuestMemfd(size, MMAP_AND_SHARED)
        : new (loadAddon().Memfd)("tsvmm-ram", size);
    const ram = new SharedRam(backing, file, size);
    const region = slotRegion(0, 0n, size, file.address, backing === "guest_memfd" ? file : null, 0n);
    try {
      if (useRegion2) vm.setUserMemoryRegion2(region);
      else vm.setUserMemoryRegion(region);
    } catch (err) {
      file.close();
      throw err;
    }
    return ram;
  }

  describe(): string {
    return this.backing === "guest_memfd"
      ? "guest_memfd (MMAP|INIT_SHARED, KVM_MEM_GUEST_MEMFD)"
      : "memfd (this kernel's guest_memfd cannot be mapped)";
  }

  populated(): { shared: bigint } {
    return { shared: this.file.allocatedBytes() };
  }

  apply(): ApplyResult {
    throw new Error("this VM has no private memory");
  }

  punchPrivate(): bigint {
    throw new Error("this VM has no private memory");
  }

  close(): void {
    this.file.close();
  }
}
