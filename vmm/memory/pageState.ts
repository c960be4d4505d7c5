// The authoritative private/shared state of every 4 KiB RAM page (KVM has no getter), and the
// validation of conversion requests against it. Pure logic: no KVM here.
import { hex } from "../format";

export const PAGE_SHIFT = 12n;
export const PAGE = 1n << PAGE_SHIFT;

export type PageState = "shared" | "private";

export interface Run {
  /** first page number */
  first: number;
  /** pages in the run */
  count: number;
  state: PageState;
}

/** The map's shared buffer: Int32 words (the lock, the private-page count), then a byte per page */
const LOCK = 0;
const PRIVATE_COUNT = 1;
const HEADER_BYTES = 8;
/** LOCK values: free, held, held with a thread waiting for it. The vCPUs' run loops (native,
 *  NativeVcpu.answerConversions) share the word and add 3: held, with a run loop waiting in
 *  futex_wait; lock() and unlock() here treat it as held (those waiters look again every 200 µs). */
const FREE = 0;
const HELD = 1;
const CONTENDED = 2;
/** PageStateMap.set walks a range up to this many pages long page by page; a longer one (a 2 MiB
 *  conversion is 512 pages) by the typed array's indexOf and fill, whose loops are not JavaScript:
 *  in the nested lab (TCG) that took ~60 µs off a 2 MiB conversion, and a view (subarray) per call
 *  cost ~30 µs on a 4 KiB one. */
const SHORT_RANGE = 16;

/**
 * The map lives in a SharedArrayBuffer: the main thread's engine and the vCPU threads that answer
 * conversions themselves (the attributes backend) use one map, each thread through its own
 * PageStateMap over `buffer`. A conversion holds `lock()` from reading the states it changes to
 * the end of its ioctls, so conversions of any thread take turns.
 */
export class PageStateMap {
  /** For another thread's PageStateMap over the same pages (`new PageStateMap(base, size, "shared", buffer)`) */
  readonly buffer: SharedArrayBuffer;
  private readonly words: Int32Array;
  /** 1 = private, 0 = shared */
  private readonly bits: Uint8Array;
  /** base + size, and both as numbers (RAM ends far below 2^53): the requests' fast path */
  readonly end: bigint;
  readonly baseNumber: number;
  readonly endNumber: number;

  /** A new map with every page `initial`, or (with `buffer`) another thread's view of an existing one */
  constructor(
    readonly base: bigint,
    readonly size: bigint,
    initial: PageState = "shared",
    buffer?: SharedArrayBuffer,
  ) {
    if (base % PAGE !== 0n || size % PAGE !== 0n || size <= 0n) throw new RangeError("RAM must be whole pages");
    const pages = Number(size >> PAGE_SHIFT);
    if (buffer && buffer.byteLength !== HEADER_BYTES + pages) throw new RangeError(`a page-state buffer of ${buffer.byteLength} bytes is not a map of ${pages} pages`);
    this.buffer = buffer ?? new SharedArrayBuffer(HEADER_BYTES + pages);
    this.words = new Int32Array(this.buffer, 0, HEADER_BYTES / 4);
    this.bits = new Uint8Array(this.buffer, HEADER_BYTES, pages);
    this.end = base + size;
    this.baseNumber = Number(base);
    this.endNumber = Number(this.end);
    if (!buffer && initial === "private") {
      this.bits.fill(1);
      this.words[PRIVATE_COUNT] = pages;
    }
  }

  /** Take the map's lock (waiting for another thread's conversion to end). Not reentrant. */
  lock(): void {
    if (Atomics.compareExchange(this.words, LOCK, FREE, HELD) === FREE) return;
    while (Atomics.exchange(this.words, LOCK, CONTENDED) !== FREE) Atomics.wait(this.words, LOCK, CONTENDED);
  }

  unlock(): void {
    if (Atomics.exchange(this.words, LOCK, FREE) === CONTENDED) Atomics.notify(this.words, LOCK, 1);
  }

  /** Wake one thread waiting in lock(): after native code released the lock (it cannot reach
   *  Atomics.wait's waiters; NativeVcpu.answerConversions). A waiter woken for nothing waits again. */
  wakeWaiter(): void {
    Atomics.notify(this.words, LOCK, 1);
  }

  /** `work` holding the lock */
  locked<T>(work: () => T): T {
    this.lock();
    try {
      return work();
    } finally {
      this.unlock();
    }
  }

  get pages(): number {
    return this.bits.length;
  }

  get privatePages(): number {
    return Atomics.load(this.words, PRIVATE_COUNT);
  }

  get sharedPages(): number {
    return this.bits.length - this.privatePages;
  }

  pageOf(gpa: bigint): number {
    return Number((gpa - this.base) >> PAGE_SHIFT);
  }

  /** By page number: the hot path of slot re-layout */
  isPrivatePage(page: number): boolean {
    return this.bits[page] === 1;
  }

  stateOf(gpa: bigint): PageState {
    return this.bits[this.pageOf(gpa)] ? "private" : "shared";
  }

  /** Set pages [first, first + count) and return the runs that actually changed state. */
  set(first: number, count: number, state: PageState): Run[] {
    const want = state === "private" ? 1 : 0;
    const changed: Run[] = [];
    let flipped = 0;
    if (count <= SHORT_RANGE) {
      for (let p = first; p < first + count; p++) {
        if (this.bits[p] === want) continue;
        this.bits[p] = want;
        flipped++;
        const last = changed[changed.length - 1];
        if (last && last.first + last.count === p) last.count++;
        else changed.push({ first: p, count: 1, state });
      }
    } else {
      const pages = this.bits.subarray(first, first + count);
      for (let p = pages.indexOf(1 - want); p >= 0; p = pages.indexOf(1 - want, p)) {
        let end = pages.indexOf(want, p);
        if (end < 0) end = count;
        pages.fill(want, p, end);
        changed.push({ first: first + p, count: end - p, state });
        flipped += end - p;
        p = end;
      }
    }
    if (flipped) Atomics.add(this.words, PRIVATE_COUNT, want ? flipped : -flipped);
    return changed;
  }

  /** Maximal runs of equal state covering pages [first, first + count). */
  runs(first = 0, count = this.bits.length): Run[] {
    const out: Run[] = [];
    for (let p = first; p < first + count; p++) {
      const state: PageState = this.bits[p] ? "private" : "shared";
      const last = out[out.length - 1];
      if (last && last.state === state) last.count++;
      else out.push({ first: p, count: 1, state });
    }
    return out;
  }
}

/** KVM_HC_MAP_GPA_RANGE attribute bits: 3:0 page size (0 4K, 1 2M, 2 1G), 4 encrypted. */
export const MAP_GPA_RANGE_ENCRYPTED = 0x10n;
const PAGE_SIZE_FIELD = 0xfn;
const VALID_ATTRS = 0x1fn;

export interface ConversionRequest {
  gpa: bigint;
  pages: bigint;
  attrs: bigint;
}

export type Validated =
  | { ok: true; first: number; count: number; to: PageState }
  | { ok: false; errno: "EINVAL"; reason: string };


const PAGE_BYTES = Number(PAGE);
const ENCRYPTED_BIT = Number(MAP_GPA_RANGE_ENCRYPTED);
const VALID_ATTRS_NUMBER = Number(VALID_ATTRS);

/**
 * The common case of a request, in numbers (no BigInt, nothing allocated): a valid request inside
 * RAM returns its first page, anything else -1 (validateRequest then says why). Values at or above
 * 2^53 (rounded by Number()) are never inside RAM, so they land on -1 as they should.
 */
export function firstPageOf(map: PageStateMap, gpa: number, pages: number, attrs: number): number {
  if (attrs <= VALID_ATTRS_NUMBER && (attrs & 0xf) <= 2 && pages >= 1 && gpa % PAGE_BYTES === 0 && gpa >= map.baseNumber && gpa + pages * PAGE_BYTES <= map.endNumber)
    return (gpa - map.baseNumber) / PAGE_BYTES;
  return -1;
}

/** Whether attrs asks for private (the encrypted bit), for attrs firstPageOf accepted */
export function toPrivate(attrs: number): boolean {
  return (attrs & ENCRYPTED_BIT) !== 0;
}

/** Check a guest's request against the RAM the map covers; a refusal says why. */
export function validateRequest(map: PageStateMap, r: ConversionRequest): Validated {
  const pages = Number(r.pages);
  const attrs = Number(r.attrs);
  const first = firstPageOf(map, Number(r.gpa), pages, attrs);
  if (first >= 0) return { ok: true, first, count: pages, to: toPrivate(attrs) ? "private" : "shared" };
  return validateExactly(map, r);
}

function validateExactly(map: PageStateMap, r: ConversionRequest): Validated {
  const refuse = (reason: string): Validated => ({ ok: false, errno: "EINVAL", reason });
  if (r.attrs & ~VALID_ATTRS) return refuse(`reserved attribute bits ${hex(r.attrs & ~VALID_ATTRS)} are set`);
  if ((r.attrs & PAGE_SIZE_FIELD) > 2n) return refuse(`page-size field ${r.attrs & PAGE_SIZE_FIELD} is not 0 (4K), 1 (2M) or 2 (1G)`);
  if (r.gpa % PAGE !== 0n) return refuse(`gpa ${hex(r.gpa)} is not page aligned`);
  if (r.pages === 0n) return refuse("the page count is zero");
  const size = r.pages << PAGE_SHIFT;
  const end = r.gpa + size;
  if (r.pages >= 1n << 52n || end > 1n << 64n) return refuse(`gpa ${hex(r.gpa)} + ${r.pages} pages overflows`);
  if (r.gpa < map.base || end > map.base + map.size)
    return refuse(`[${hex(r.gpa)}, ${hex(end)}) is outside RAM [${hex(map.base)}, ${hex(map.base + map.size)})`);
  return { ok: true, first: map.pageOf(r.gpa), count: Number(r.pages), to: r.attrs & MAP_GPA_RANGE_ENCRYPTED ? "private" : "shared" };
}
