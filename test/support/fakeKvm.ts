// A fake KVM VM for the unit tests of the memory backends and the test slot: plain buffers for
// the files, and a memslot table that enforces KVM's rules for KVM_SET_USER_MEMORY_REGION2 (ids
// below KVM_CAP_NR_MEMSLOTS, no overlap, guest_memfd slots only deleted, never modified), so a
// layout KVM would refuse fails here too. Every call is recorded. And a backend for the engine
// and host-request tests that only records what it is asked.
import { MemoryRegion, NativeGuestMemfd, NativeVm, REGION_RECORD, RELEASED_GUEST_MEMFD } from "../../vmm/native";
import type { ApplyResult, MemoryBackend } from "../../vmm/memory/backend";
import type { Run } from "../../vmm/memory/pageState";
import { Cap, MemFlag } from "../../vmm/kvm/uapi";

export class FakeFile implements NativeGuestMemfd {
  private buffer?: ArrayBuffer;
  address = 0n;
  closed = false;
  constructor(
    readonly fd: number,
    readonly size: bigint,
    readonly flags: bigint,
    private readonly calls: string[],
  ) {}
  map(): ArrayBuffer {
    this.address ||= BigInt(this.fd) << 32n;
    return (this.buffer ??= new ArrayBuffer(Number(this.size)));
  }
  unmap(): void {
    this.address = 0n;
  }
  fallocate(mode: "allocate" | "punch", offset: bigint, length: bigint): void {
    this.calls.push(`fallocate fd=${this.fd} ${mode} 0x${offset.toString(16)}+0x${length.toString(16)}`);
    if (mode === "punch" && this.buffer) new Uint8Array(this.buffer, Number(offset), Number(length)).fill(0);
  }
  allocatedBytes(): bigint {
    return 0n;
  }
  close(): void {
    this.closed = true;
    this.address = 0n;
  }
}

export interface FakeSlot extends MemoryRegion {
  /** the file behind guestMemfd (closed = released) */
  file?: FakeFile;
}

export class FakeVm implements Partial<NativeVm> {
  readonly fd = 3;
  readonly calls: string[] = [];
  readonly slots = new Map<number, FakeSlot>();
  readonly files: FakeFile[] = [];
  private readonly open = new Map<number, FakeFile>();
  readonly attributes: Array<{ gpa: bigint; size: bigint; attributes: bigint }> = [];
  private nextFd = 10;

  constructor(
    readonly nrMemslots = 32764,
    /** the overlap check is O(slots) per add: off for tests that fill all 32 764 slots */
    private readonly o = { checkOverlap: true },
  ) {}

  checkExtension(cap: number): number {
    return cap === Cap.NR_MEMSLOTS ? this.nrMemslots : 0;
  }

  createGuestMemfd(size: bigint, flags: bigint): FakeFile {
    const f = new FakeFile(this.nextFd++, size, flags, this.calls);
    this.files.push(f);
    this.open.set(f.fd, f);
    return f;
  }

  setUserMemoryRegion2(r: MemoryRegion): void {
    const fail = (why: string) => {
      throw Object.assign(new Error(`KVM_SET_USER_MEMORY_REGION2(slot=${r.slot}) failed: ${why}`), { code: why.split(" ")[0] });
    };
    if (r.slot < 0 || r.slot >= this.nrMemslots) fail("EINVAL (slot id out of range)");
    const old = this.slots.get(r.slot);
    if (r.memorySize === 0n) {
      if (!old) fail("EINVAL (deleting an empty slot)");
      this.slots.delete(r.slot);
      this.calls.push(`delete slot=${r.slot} gpa=0x${old!.guestPhysAddr.toString(16)}`);
      return;
    }
    if (old) fail("EINVAL (a guest_memfd slot cannot be modified)");
    if (this.o.checkOverlap)
      for (const s of this.slots.values())
        if (r.guestPhysAddr < s.guestPhysAddr + s.memorySize && s.guestPhysAddr < r.guestPhysAddr + r.memorySize) fail(`EEXIST (overlaps slot ${s.slot})`);
    const file = this.open.get(r.guestMemfd);
    if (file?.closed) this.open.delete(r.guestMemfd);
    if (file?.closed) fail("EBADF");
    if (r.guestMemfd >= 0 && !file) fail("EBADF");
    this.slots.set(r.slot, { ...r, file });
    this.calls.push(`add slot=${r.slot} gpa=0x${r.guestPhysAddr.toString(16)} size=0x${r.memorySize.toString(16)} fd=${r.guestMemfd}`);
  }

  /** As the addon: each record one setUserMemoryRegion2, a released guest_memfd made and closed around it */
  setUserMemoryRegions2(records: Float64Array): void {
    for (let i = 0; i < records.length; i += REGION_RECORD) {
      const [slot, gpa, size, uaddr, gmem, offset, createFlags] = records.subarray(i, i + REGION_RECORD);
      const released = gmem === RELEASED_GUEST_MEMFD ? this.createGuestMemfd(BigInt(size), BigInt(createFlags)) : undefined;
      const fd = released ? released.fd : gmem;
      try {
        this.setUserMemoryRegion2({
          slot, flags: fd >= 0 ? MemFlag.GUEST_MEMFD : 0, guestPhysAddr: BigInt(gpa), memorySize: BigInt(size), userspaceAddr: BigInt(uaddr), guestMemfd: fd, guestMemfdOffset: BigInt(offset),
        });
      } finally {
        released?.close();
      }
    }
  }

  setMemoryAttributes(gpa: bigint, size: bigint, attributes: bigint): void {
    this.attributes.push({ gpa, size, attributes });
    this.calls.push(`attributes 0x${gpa.toString(16)}+0x${size.toString(16)}=${attributes}`);
  }

  /** The slots by GPA: [first page, pages, what backs it] with fd names given by `name` */
  layout(name: (s: FakeSlot) => string, base = 0n): Array<[number, number, string]> {
    return [...this.slots.values()]
      .sort((a, b) => (a.guestPhysAddr < b.guestPhysAddr ? -1 : 1))
      .map((s) => [Number((s.guestPhysAddr - base) >> 12n), Number(s.memorySize >> 12n), name(s)]);
  }

  get asNative(): NativeVm {
    return this as unknown as NativeVm;
  }
}

/** A backend over a plain buffer that records conversions and punches (and can refuse them) */
export class RecordingBackend implements MemoryBackend {
  readonly kind = "memslots";
  readonly needsQuiesce = true;
  readonly sharedView: Buffer;
  readonly applied: Run[][] = [];
  readonly punched: Array<[number, number]> = [];
  /** set: apply refuses with this reason */
  refuse?: string;
  constructor(ram: bigint) {
    this.sharedView = Buffer.alloc(Number(ram));
  }
  apply(changes: Run[]): ApplyResult {
    this.applied.push(changes.map((c) => ({ ...c })));
    return this.refuse ? { refused: this.refuse } : { discarded: changes.reduce((n, c) => n + c.count, 0) * 4096 };
  }
  punchPrivate(first: number, count: number): bigint {
    this.punched.push([first, count]);
    return BigInt(count) << 12n;
  }
  describe(): string {
    return "recording backend";
  }
  populated() {
    return { shared: 0n };
  }
  close(): void {}
}
