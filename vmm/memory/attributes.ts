// The attributes backend (VM type KVM_X86_SW_PROTECTED_VM; later SNP/TDX): one memslot carries a
// guest_memfd (flags 0: private pages) and a memfd mapping at userspace_addr (shared pages). KVM
// picks the side per page from KVM_MEMORY_ATTRIBUTE_PRIVATE; a conversion sets the attribute and
// then discards the side the pages left.
import { loadAddon, NativeGuestMemfd, NativeMemfd, NativeVm } from "../native";
import { MEMORY_ATTRIBUTE_PRIVATE } from "../kvm/uapi";
import { ApplyResult, BackendContext, MemoryBackend, slotRegion } from "./backend";
import { PAGE_SHIFT, PageState, Run } from "./pageState";

/**
 * The one place that tells KVM a range's private/shared state. Linux-next moves this onto the
 * guest_memfd (KVM_SET_MEMORY_ATTRIBUTES2 on the gmem fd, EAGAIN + error_offset); that variant
 * belongs here too.
 */
export function setPrivate(vm: Pick<NativeVm, "setMemoryAttributes">, gpa: bigint, size: bigint, isPrivate: boolean): void {
  vm.setMemoryAttributes(gpa, size, isPrivate ? MEMORY_ATTRIBUTE_PRIVATE : 0n);
}

/** What a conversion does to KVM and the files, from the main thread (the VM and the files) or a
 *  vCPU thread (its NativeVcpu, after NativeVm.shareMemoryFiles) */
export interface AttributeOps {
  setMemoryAttributes(gpa: bigint, size: bigint, attributes: bigint): void;
  /** Punch [offset, offset + length) of the file holding `side` */
  discard(side: PageState, offset: bigint, length: bigint): void;
}

/** The attributes backend's apply on any thread: the attribute, then the side the pages left. */
export function applyAttributes(ops: AttributeOps, base: bigint, discard: boolean, changes: Run[]): ApplyResult {
  let discarded = 0n;
  for (const run of changes) {
    const offset = BigInt(run.first) << PAGE_SHIFT;
    const size = BigInt(run.count) << PAGE_SHIFT;
    setPrivate(ops, base + offset, size, run.state === "private");
    if (!discard) continue;
    ops.discard(run.state === "private" ? "shared" : "private", offset, size);
    discarded += size;
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
  private readonly ops: AttributeOps;

  constructor(ctx: BackendContext) {
    this.base = ctx.map.base;
    this.discard = ctx.discard === "always";
    this.gmem = ctx.vm.createGuestMemfd(ctx.map.size, 0n);
    this.memfd = new (loadAddon().Memfd)("tsvmm-shared", ctx.map.size);
    this.sharedView = Buffer.from(this.memfd.map());
    const vm = ctx.vm;
    this.ops = {
      setMemoryAttributes: (gpa, size, attributes) => vm.setMemoryAttributes(gpa, size, attributes),
      discard: (side, offset, length) => (side === "private" ? this.gmem : this.memfd).fallocate("punch", offset, length),
    };
    // The vCPU threads convert too (vcpuConversions.ts): they need these files.
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
    return applyAttributes(this.ops, this.base, this.discard, changes);
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
