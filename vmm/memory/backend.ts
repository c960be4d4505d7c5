// What every RAM backend offers the machine and the conversion engine. A backend owns the fds,
// mappings and memslots behind guest RAM; the engine owns the page-state map and the policy.
import type { NativeMappedFile, NativeVm } from "../native";
import type { PageStateMap, Run } from "./pageState";
import { MemFlag } from "../kvm/uapi";

export type BackendKind = "shared" | "attributes" | "memslots";

export interface ApplyResult {
  /** bytes discarded from the side the pages left */
  discarded: bigint;
}

export interface MemoryBackend {
  readonly kind: BackendKind;
  /** The shared backing of all RAM, indexed by GPA: images, the boot page, host requests. */
  readonly sharedView: Buffer;
  /** Make the state of these changed runs real in KVM (the map is already updated) and discard
   *  the side each page left. */
  apply(changes: Run[]): ApplyResult;
  /** Discard the private backing of pages without changing their state (they read as zero after). */
  punchPrivate(first: number, count: number): bigint;
  /** One line for the run log */
  describe(): string;
  /** Bytes in use on each side (pages the guest or host touched, from mincore); undefined where
   *  the host has no view of that side (a guest_memfd without MMAP) */
  populated(): { private?: bigint; shared: bigint };
  close(): void;
}

export interface BackendContext {
  vm: NativeVm;
  map: PageStateMap;
  /** RAM below this GPA is always shared (firmware, page tables, stacks, the guest image) */
  sharedLimit: bigint;
  /** 0 = no aliased layout; else the shared view of page p is at p | 1 << sharedBit */
  sharedBit: number;
  /** fallocate the private side up front */
  prealloc: boolean;
}

export const slotRegion = (slot: number, gpa: bigint, size: bigint, userspaceAddr: bigint, file: NativeMappedFile | null, offset: bigint) => ({
  slot,
  flags: file ? MemFlag.GUEST_MEMFD : 0,
  guestPhysAddr: gpa,
  memorySize: size,
  userspaceAddr,
  guestMemfd: file ? file.fd : -1,
  guestMemfdOffset: offset,
});
