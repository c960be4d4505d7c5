// The attributes backend (VM type KVM_X86_SW_PROTECTED_VM; later SNP/TDX): one memslot carries a
// guest_memfd (flags 0: private pages) and a memfd mapping at userspace_addr (shared pages). KVM
// picks the side per page from KVM_MEMORY_ATTRIBUTE_PRIVATE; a conversion sets the attribute and
// then discards the side the pages left.
import { loadAddon, NativeGuestMemfd, NativeMemfd, NativeVm } from "../native";
import { MEMORY_ATTRIBUTE_PRIVATE } from "../kvm/uapi";
import { ApplyResult, BackendContext, MemoryBackend, slotRegion } from "./backend";
import { PAGE_SHIFT, Run } from "./pageState";

/**
 * The one place that tells KVM a range's private/shared state. Linux-next moves this onto the
 * guest_memfd (KVM_SET_MEMORY_ATTRIBUTES2 on the gmem fd, EAGAIN + error_offset); that variant
 * belongs here too.
 */
export function setPrivate(vm: NativeVm, gpa: bigint, size: bigint, isPrivate: boolean): void {
  vm.setMemoryAttributes(gpa, size, isPrivate ? MEMORY_ATTRIBUTE_PRIVATE : 0n);
}

export class AttributesBackend implements MemoryBackend {
  readonly kind = "attributes";
  // KVM_SET_MEMORY_ATTRIBUTES and the punches are safe with vCPUs running: KVM zaps the range
  // and a vCPU touching it faults it in again (QEMU converts without pausing vCPUs either).
  readonly needsQuiesce = false;
  readonly sharedView: Buffer;
  private readonly vm: NativeVm;
  private readonly gmem: NativeGuestMemfd;
  private readonly memfd: NativeMemfd;
  private readonly base: bigint;
  private readonly discard: boolean;

  constructor(ctx: BackendContext) {
    this.vm = ctx.vm;
    this.base = ctx.map.base;
    this.discard = ctx.discard === "always";
    this.gmem = ctx.vm.createGuestMemfd(ctx.map.size, 0n);
    this.memfd = new (loadAddon().Memfd)("tsvmm-shared", ctx.map.size);
    this.sharedView = Buffer.from(this.memfd.map());
    ctx.vm.setUserMemoryRegion2(slotRegion(0, this.base, ctx.map.size, this.memfd.address, this.gmem, 0n));
    for (const run of ctx.map.runs()) {
      if (run.state === "private") setPrivate(ctx.vm, this.gpa(run.first), BigInt(run.count) << PAGE_SHIFT, true);
    }
    if (ctx.prealloc) this.gmem.fallocate("allocate", ctx.sharedLimit, ctx.map.size - ctx.sharedLimit);
  }

  private gpa(page: number): bigint {
    return this.base + (BigInt(page) << PAGE_SHIFT);
  }

  describe(): string {
    return "attributes backend: KVM_X86_SW_PROTECTED_VM, guest_memfd (private) + memfd (shared) in one slot";
  }

  apply(changes: Run[]): ApplyResult {
    let discarded = 0n;
    for (const run of changes) {
      const offset = BigInt(run.first) << PAGE_SHIFT;
      const size = BigInt(run.count) << PAGE_SHIFT;
      setPrivate(this.vm, this.base + offset, size, run.state === "private");
      if (!this.discard) continue;
      (run.state === "private" ? this.memfd : this.gmem).fallocate("punch", offset, size);
      discarded += size;
    }
    return { discarded };
  }

  populated(): { shared: bigint } {
    return { shared: this.memfd.allocatedBytes() };
  }

  punchPrivate(first: number, count: number): bigint {
    const size = BigInt(count) << PAGE_SHIFT;
    this.gmem.fallocate("punch", BigInt(first) << PAGE_SHIFT, size);
    return size;
  }

  close(): void {
    this.gmem.close();
    this.memfd.close();
  }
}
