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

const PAGE_BYTES = 4096;

/** The attributes backend's apply on any thread, through NativeVm.convertMemory or, on a vCPU
 *  thread, NativeVcpu.convertMemory: one native call per changed run, numbers only. */
export function applyAttributes(target: Pick<NativeVm, "convertMemory">, base: number, discard: boolean, changes: Run[]): ApplyResult {
  let discarded = 0;
  for (const run of changes) {
    const offset = run.first * PAGE_BYTES;
    const size = run.count * PAGE_BYTES;
    target.convertMemory(base + offset, offset, size, run.state === "private", discard);
    if (discard) discarded += size;
  }
  return { discarded };
}

export class AttributesBackend implements MemoryBackend {
  readonly kind = "attributes";
  // KVM_SET_MEMORY_ATTRIBUTES and the punches are safe with vCPUs running: KVM zaps the range
  // and a vCPU touching it faults it in again (QEMU converts without pausing vCPUs either).
  readonly needsQuiesce = false;
  readonly sharedView: Buffer;
  private readonly gmem: NativeGuestMemfd;
  private readonly memfd: NativeMemfd;
  private readonly base: bigint;
  private readonly discard: boolean;
  private readonly vm: NativeVm;

  constructor(ctx: BackendContext) {
    this.base = ctx.map.base;
    this.discard = ctx.discard === "always";
    this.gmem = ctx.vm.createGuestMemfd(ctx.map.size, 0n);
    this.memfd = new (loadAddon().Memfd)("tsvmm-shared", ctx.map.size);
    this.sharedView = Buffer.from(this.memfd.map());
    this.vm = ctx.vm;
    // convertMemory punches these files, on this thread and on the vCPU threads (vcpuConversions.ts).
    ctx.vm.shareMemoryFiles(this.gmem.fd, this.memfd.fd);
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
    return applyAttributes(this.vm, Number(this.base), this.discard, changes);
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
