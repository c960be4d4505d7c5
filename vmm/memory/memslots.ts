// The memslots backend (default VM, Linux 6.18+): private pages live in a guest_memfd created with
// MMAP but without INIT_SHARED (the host cannot fault it in), shared pages in a guest_memfd with
// MMAP|INIT_SHARED that the VMM maps. Both are guest_memfd-only slots, so every guest fault is
// served from guest_memfd. The slots of each view are the maximal runs of pages of equal kind; a
// conversion replaces only the slots whose run changed (guest_memfd slots are immutable: delete
// and re-add).
//
// Aliased layout (--shared-bit N): page p is visible at p (private view) and p | 2^N (shared
// view). The view a page is not in is a guest_memfd-only slot whose guest_memfd was released, so
// a guest access there is a real KVM_EXIT_MEMORY_FAULT (flags 0, that GPA, size 4096).
//
// KVM has a fixed number of memslot ids (KVM_CAP_NR_MEMSLOTS, 32764 on x86). A guest that
// alternates the state of single pages needs one slot per run per view, so it can run out: a
// change that would need more slots than the budget is refused before anything changes.
import { NativeGuestMemfd, NativeVm, RELEASED_GUEST_MEMFD } from "../native";
import { GuestMemfdFlag } from "../kvm/uapi";
import { ApplyResult, BackendContext, MemoryBackend } from "./backend";
import { PAGE, PAGE_SHIFT, PageStateMap, Run } from "./pageState";

const PAGE_BYTES = Number(PAGE);

type Kind = "shared" | "private" | "dead";
type View = 0 | 1;

interface Piece {
  first: number;
  count: number;
  kind: Kind;
}

interface Segment extends Piece {
  slot: number;
  view: View;
}

/** What a re-layout of one view does: segments [at, at + remove) of its list become `pieces`,
 *  reusing the segments in `keep` and adding a slot for every other piece. */
interface Plan {
  view: View;
  at: number;
  remove: number;
  pieces: Array<Piece | Segment>;
  deletes: Segment[];
  adds: number;
}

export class MemslotsBackend implements MemoryBackend {
  readonly kind = "memslots";
  readonly needsQuiesce = true;
  readonly sharedView: Buffer;
  private readonly vm: NativeVm;
  private readonly map: PageStateMap;
  private readonly shared: NativeGuestMemfd;
  private readonly private: NativeGuestMemfd;
  private readonly lowPages: number;
  private readonly aliasBase: bigint;
  /** The same numbers as plain numbers (below 2^53), for the slot records */
  private readonly base: number;
  private readonly alias: number;
  private readonly sharedAddress: number;
  private readonly privateAddress: number;
  private readonly views: View[];
  private readonly discard: boolean;
  /** Per view, sorted by first page, covering every page that has a kind in that view */
  private readonly segments: [Segment[], Segment[]] = [[], []];
  private readonly freeSlots: number[] = [];
  private nextSlot = 0;
  /** Slot ids this backend may use (0 to slotLimit - 1) */
  readonly slotLimit: number;
  private mostSlots = 0;

  constructor(ctx: BackendContext) {
    this.vm = ctx.vm;
    this.map = ctx.map;
    this.slotLimit = ctx.slotLimit;
    this.discard = ctx.discard === "always";
    this.lowPages = Number(ctx.sharedLimit >> PAGE_SHIFT);
    this.aliasBase = ctx.sharedBit ? 1n << BigInt(ctx.sharedBit) : 0n;
    this.views = ctx.sharedBit ? [0, 1] : [0];
    this.shared = ctx.vm.createGuestMemfd(ctx.map.size, GuestMemfdFlag.MMAP | GuestMemfdFlag.INIT_SHARED);
    this.private = ctx.vm.createGuestMemfd(ctx.map.size, GuestMemfdFlag.MMAP);
    this.sharedView = Buffer.from(this.shared.map());
    // Mapped only to have a valid userspace_addr for the private slots; never touched by the host
    // (any access would SIGBUS: no INIT_SHARED).
    this.private.map();
    this.base = Number(ctx.map.base);
    this.alias = Number(this.aliasBase);
    this.sharedAddress = Number(this.shared.address);
    this.privateAddress = Number(this.private.address);
    if (ctx.prealloc) this.private.fallocate("allocate", ctx.sharedLimit, ctx.map.size - ctx.sharedLimit);
    const refused = this.relayout(0, this.map.pages);
    if (refused) throw new RangeError(`the initial layout ${refused}`);
  }

  get slotsInUse(): number {
    return this.segments[0].length + this.segments[1].length;
  }

  describe(): string {
    const alias = this.aliasBase ? `, shared view at GPA | 0x${this.aliasBase.toString(16)}` : "";
    return `memslots backend: guest_memfd MMAP (private) + MMAP|INIT_SHARED (shared), ${this.slotsInUse} of ${this.slotLimit} slots${alias}`;
  }

  usage(): string {
    return `memslots: ${this.slotsInUse} in use now, at most ${this.mostSlots}, of the ${this.slotLimit} this backend may use (KVM_CAP_NR_MEMSLOTS less the test slot's)`;
  }

  private kindOf(view: View, page: number): Kind | null {
    const low = page < this.lowPages;
    const isPrivate = this.map.isPrivatePage(page);
    if (view === 0) return low ? "shared" : isPrivate ? "private" : this.aliasBase ? "dead" : "shared";
    return low ? null : isPrivate ? "dead" : "shared";
  }

  /**
   * The slots of `view` after pages [first, end) changed (and no others): the segments that
   * overlap the range, plus a neighbour the new runs merge with, are replaced by maximal runs.
   * Only the changed range is scanned page by page: the rest of a replaced segment keeps its kind.
   */
  private plan(view: View, first: number, end: number): Plan {
    const list = this.segments[view];
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid].first + list[mid].count <= first) lo = mid + 1;
      else hi = mid;
    }
    let at = lo;
    let stop = at;
    while (stop < list.length && list[stop].first < end) stop++;
    const pieces: Array<Piece | Segment> = [];
    const push = (p: Piece) => {
      const last = pieces[pieces.length - 1];
      if (last && last.kind === p.kind && last.first + last.count === p.first) pieces[pieces.length - 1] = { first: last.first, count: last.count + p.count, kind: p.kind };
      else pieces.push(p);
    };
    const head = list[at];
    if (head && head.first < first) push({ first: head.first, count: first - head.first, kind: head.kind });
    for (let page = first; page < end; ) {
      const kind = this.kindOf(view, page);
      let next = page + 1;
      while (next < end && this.kindOf(view, next) === kind) next++;
      if (kind) push({ first: page, count: next - page, kind });
      page = next;
    }
    const tail = list[stop - 1];
    if (stop > at && tail.first + tail.count > end) push({ first: end, count: tail.first + tail.count - end, kind: tail.kind });
    // A neighbour of the same kind that now touches the new runs merges with them.
    const before = list[at - 1];
    if (before && pieces.length && before.first + before.count === pieces[0].first && before.kind === pieces[0].kind) {
      pieces[0] = { first: before.first, count: before.count + pieces[0].count, kind: before.kind };
      at--;
    }
    const after = list[stop];
    const last = pieces[pieces.length - 1];
    if (after && last && last.first + last.count === after.first && after.kind === last.kind) {
      pieces[pieces.length - 1] = { first: last.first, count: last.count + after.count, kind: last.kind };
      stop++;
    }
    // A segment that comes out unchanged keeps its slot.
    const old = list.slice(at, stop);
    const same = (s: Segment, p: Piece) => s.first === p.first && s.count === p.count && s.kind === p.kind;
    const merged = pieces.map((p) => old.find((s) => same(s, p)) ?? p);
    const kept = new Set(merged.filter((p): p is Segment => "slot" in p));
    return { view, at, remove: stop - at, pieces: merged, deletes: old.filter((s) => !kept.has(s)), adds: merged.length - kept.size };
  }

  /** Make the slots match the map for pages [first, end); returns why not if the slots would not
   *  suffice (then nothing changed). */
  private relayout(first: number, end: number): string | undefined {
    const plans = this.views.map((view) => this.plan(view, first, end));
    const after = this.slotsInUse + plans.reduce((n, p) => n + p.adds - p.deletes.length, 0);
    if (after > this.slotLimit)
      return `needs ${after} memslots, more than the ${this.slotLimit} KVM allows (KVM_CAP_NR_MEMSLOTS): too many alternating runs of private and shared pages`;
    // Every delete before any add: a new slot may cover GPAs of an old one. All in one native call.
    const records: number[] = [];
    for (const p of plans) for (const s of p.deletes) this.deleteSlot(s, records);
    const fresh = plans.map((p) => p.pieces.map((piece) => ("slot" in piece ? piece : this.addSlot(p.view, piece, records))));
    this.vm.setUserMemoryRegions2(new Float64Array(records));
    plans.forEach((p, i) => this.segments[p.view].splice(p.at, p.remove, ...fresh[i]));
    this.mostSlots = Math.max(this.mostSlots, this.slotsInUse);
    return undefined;
  }

  private gpaOf(view: View, first: number): number {
    return this.base + first * PAGE_BYTES + (view === 1 ? this.alias : 0);
  }

  /** A new slot for `piece`, its region appended to `records` (setUserMemoryRegions2) */
  private addSlot(view: View, { first, count, kind }: Piece, records: number[]): Segment {
    const slot = this.freeSlots.pop() ?? this.nextSlot++;
    const offset = first * PAGE_BYTES;
    const gpa = this.gpaOf(view, first);
    const size = count * PAGE_BYTES;
    // A dead slot's guest_memfd is bound and then released (closed, never mapped): KVM keeps the
    // slot and answers every guest access with KVM_EXIT_MEMORY_FAULT.
    if (kind === "dead") records.push(slot, gpa, size, this.sharedAddress + offset, RELEASED_GUEST_MEMFD, 0, Number(GuestMemfdFlag.MMAP));
    else if (kind === "shared") records.push(slot, gpa, size, this.sharedAddress + offset, this.shared.fd, offset, 0);
    else records.push(slot, gpa, size, this.privateAddress + offset, this.private.fd, offset, 0);
    return { slot, view, first, count, kind };
  }

  /** Delete a segment's slot: its region (size 0) appended to `records` */
  private deleteSlot(s: Segment, records: number[]): void {
    records.push(s.slot, this.gpaOf(s.view, s.first), 0, 0, -1, 0, 0);
    this.freeSlots.push(s.slot);
  }

  apply(changes: Run[]): ApplyResult {
    if (changes.length === 0) return { discarded: 0 };
    const refused = this.relayout(changes[0].first, changes[changes.length - 1].first + changes[changes.length - 1].count);
    if (refused) return { refused };
    let discarded = 0;
    if (!this.discard) return { discarded };
    for (const run of changes) {
      const offset = BigInt(run.first) << PAGE_SHIFT;
      const size = BigInt(run.count) << PAGE_SHIFT;
      (run.state === "private" ? this.shared : this.private).fallocate("punch", offset, size);
      discarded += run.count * PAGE_BYTES;
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
