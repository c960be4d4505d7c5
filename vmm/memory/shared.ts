// The shared-only backend (no private memory): guest_memfd (MMAP|INIT_SHARED) bound with KVM_MEM_GUEST_MEMFD and mapped at
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

/** A mapping of one file becomes one ArrayBuffer, which Node limits to 4 GiB: RAM is made of
 *  files of at most this size (the 3 GiB below the 32-bit hole is always one). */
const MAX_FILE = 3n << 30n;

export class SharedRam implements MemoryBackend {
  readonly kind = "shared";
  readonly needsQuiesce = false;
  /** The first file: RAM from GPA 0 (loaders write below the 32-bit hole only) */
  readonly sharedView: Buffer;

  private constructor(
    readonly backing: RamBacking,
    readonly files: NativeMappedFile[],
    readonly size: bigint,
  ) {
    this.sharedView = Buffer.from(files[0].map());
  }

  /** One memslot per RAM range, or per MAX_FILE piece of one, each over its own file. */
  static create(vm: NativeVm, ranges: Array<{ base: bigint; size: bigint }>, backing: RamBacking, useRegion2: boolean): SharedRam {
    const pieces: Array<{ base: bigint; size: bigint }> = [];
    for (const r of ranges)
      for (let at = 0n; at < r.size; at += MAX_FILE) pieces.push({ base: r.base + at, size: r.size - at < MAX_FILE ? r.size - at : MAX_FILE });
    const files: NativeMappedFile[] = [];
    try {
      pieces.forEach((p, slot) => {
        const file = backing === "guest_memfd" ? vm.createGuestMemfd(p.size, MMAP_AND_SHARED) : new (loadAddon().Memfd)("tsvmm-ram", p.size);
        files.push(file);
        file.map();
        const region = slotRegion(slot, p.base, p.size, file.address, backing === "guest_memfd" ? file : null, 0n);
        if (useRegion2) vm.setUserMemoryRegion2(region);
        else vm.setUserMemoryRegion(region);
      });
    } catch (err) {
      for (const f of files) f.close();
      throw err;
    }
    return new SharedRam(backing, files, pieces.reduce((n, p) => n + p.size, 0n));
  }

  describe(): string {
    return this.backing === "guest_memfd"
      ? "guest_memfd (MMAP|INIT_SHARED, KVM_MEM_GUEST_MEMFD)"
      : "memfd (this kernel's guest_memfd cannot be mapped)";
  }

  populated(): { shared: bigint } {
    return { shared: this.files.reduce((n, f) => n + f.allocatedBytes(), 0n) };
  }

  apply(): ApplyResult {
    throw new Error("this VM has no private memory");
  }

  punchPrivate(): bigint {
    throw new Error("this VM has no private memory");
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}
