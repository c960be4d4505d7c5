// The memslots backend (default VM, Linux 6.18+): private pages live in a guest_memfd created with
// MMAP but without INIT_SHARED (the host cannot fault it in), shared pages in a guest_memfd with
// MMAP|INIT_SHARED that the VMM maps. Both are guest_memfd-only slots, so every guest fault is
// served from guest_memfd. A conversion rebuilds the memslots of the affected range from maximal
// runs of equal state (guest_memfd slots are immutable: delete and re-add).
//
// Aliased layout (--shared-bit N): page p is visible at p (private view) and p | 2^N (shared
// view). The view a page is not in is a guest_memfd-only slot whose guest_memfd was released, so
// a guest access there is a real KVM_EXIT_MEMORY_FAULT (flags 0, that GPA, size 4096).
import type { NativeGuestMemfd, NativeVm } from "../native";
import { GuestMemfdFlag } from "../kvm/uapi";
import { ApplyResult, BackendContext, MemoryBackend, slotRegion } from "./backend";
import { PAGE, PAGE_SHIFT, PageStateMap, Run } from "./pageState";

type Kind = "shared" | "private" | "dead";

interface Segment {
  slot: number;
  view: 0 | 1;
  first: number;
  count: number;
  kind: Kind;
}

export class MemslotsBackend implements MemoryBackend {
  readonly kind = "memslots";
  readonly sharedView: Buffer;
  private readonly vm: NativeVm;
  private readonly map: PageStateMap;
  private readonly shared: NativeGuestMemfd;
  private readonly private: NativeGuestMemfd;
  private readonly lowPages: number;
  private readonly aliasBase: bigint;
  private readonly views: Array<0 | 1>;
  private readonly segments: [Segment[], Segment[]] = [[], []];
  private readonly freeSlots: number[] = [];
  private nextSlot = 0;

  constructor(ctx: BackendContext) {
    this.vm = ctx.vm;
    this.map = ctx.map;
    this.lowPages = Number(ctx.sharedLimit >> PAGE_SHIFT);
    this.aliasBase = ctx.sharedBit ? 1n << BigInt(ctx.sharedBit) : 0n;
    this.views = ctx.sharedBit ? [0, 1] : [0];
    this.shared = ctx.vm.createGuestMemfd(ctx.map.size, GuestMemfdFlag.MMAP | GuestMemfdFlag.INIT_SHARED);
    this.private = ctx.vm.createGuestMemfd(ctx.map.size, GuestMemfdFlag.MMAP);
    this.sharedView = Buffer.from(this.shared.map());
    // Mapped only to have a valid userspace_addr for the private slots; never touched by the host
    // (any access would SIGBUS: no INIT_SHARED).
    this.private.map();
    if (ctx.prealloc) this.private.fallocate("allocate", ctx.sharedLimit, ctx.map.size - ctx.sharedLimit);
    this.rebuild(0, this.map.pages);
  }

  describe(): string {
    const alias = this.aliasBase ? `, shared view at GPA | 0x${this.aliasBase.toString(16)}` : "";
    return `memslots backend: guest_memfd MMAP (private) + MMAP|INIT_SHARED (shared), ${this.segments[0].length + this.segments[1].length} slots${alias}`;
  }

  private kindOf(view: 0 | 1, page: number): Kind | null {
    const low = page < this.lowPages;
    const isPrivate = this.map.isPrivatePage(page);
    if (view === 0) return low ? "shared" : isPrivate ? "private" : this.aliasBase ? "dead" : "shared";
    return low ? null : isPrivate ? "dead" : "shared";
  }

  /** Re-lay the slots of pages [first, end) in every view, merging with neighbours of equal kind. */
  private rebuild(first: number, end: number): void {
    for (const view of this.views) {
      const list = this.segments[view];
      const touched = list.filter((s) => s.first <= end && s.first + s.count >= first);
      let lo = first;
      let hi = end;
      for (const s of touched) {
        lo = Math.min(lo, s.first);
        hi = Math.max(hi, s.first + s.count);
        this.deleteSlot(s);
        list.splice(list.indexOf(s), 1);
      }
      let start = lo;
      while (start < hi) {
        const kind = this.kindOf(view, start);
        let stop = start + 1;
        while (stop < hi && this.kindOf(view, stop) === kind) stop++;
        if (kind) list.push(this.addSlot(view, start, stop - start, kind));
        start = stop;
      }
      list.sort((a, b) => a.first - b.first);
    }
  }

  private addSlot(view: 0 | 1, first: number, count: number, kind: Kind): Segment {
    const slot = this.freeSlots.pop() ?? this.nextSlot++;
    const offset = BigInt(first) << PAGE_SHIFT;
    const size = BigInt(count) << PAGE_SHIFT;
    const gpa = this.map.base + offset + (view === 1 ? this.aliasBase : 0n);
    if (kind === "dead") {
      // A guest_memfd bound and then released (closed, never mapped): KVM keeps the slot and
      // answers every guest access with KVM_EXIT_MEMORY_FAULT.
      const dead = this.vm.createGuestMemfd(size, GuestMemfdFlag.MMAP);
      try {
        this.vm.setUserMemoryRegion2(slotRegion(slot, gpa, size, this.shared.address + offset, dead, 0n));
      } finally {
        dead.close();
      }
    } else {
      const file = kind === "shared" ? this.shared : this.private;
      this.vm.setUserMemoryRegion2(slotRegion(slot, gpa, size, file.address + offset, file, offset));
    }
    return { slot, view, first, count, kind };
  }

  private deleteSlot(s: Segment): void {
    const gpa = this.map.base + (BigInt(s.first) << PAGE_SHIFT) + (s.view === 1 ? this.aliasBase : 0n);
    this.vm.setUserMemoryRegion2(slotRegion(s.slot, gpa, 0n, 0n, null, 0n));
    this.freeSlots.push(s.slot);
  }


  apply(changes: Run[]): ApplyResult {
    if (changes.length === 0) return { discarded: 0n };
    this.rebuild(changes[0].first, changes[changes.length - 1].first + changes[changes.length - 1].count);
    let discarded = 0n;
    for (const run of changes) {
      const offset = BigInt(run.first) << PAGE_SHIFT;
      const size = BigInt(run.count) << PAGE_SHIFT;
      (run.state === "private" ? this.shared : this.private).fallocate("punch", offset, size);
      discarded += size;
    }
    return { discarded };
  }

  punchPrivate(first: number, count: number): bigint {
    const size = BigInt(count) * PAGE;
    this.private.fallocate("punch", BigInt(first) * PAGE, size);
    return size;
  }

  populated(): { private: bigint; shared: bigint } {
    return { private: this.private.allocatedBytes(), shared: this.shared.allocatedBytes() };
  }

  close(): void {
    this.shared.close();
    this.private.close();
  }
}

