// What every RAM backend offers the machine and the conversion engine. A backend owns the fds,
// mappings and memslots behind guest RAM; the engine owns the page-state map and the policy.
import type { NativeMappedFile, NativeVm } from "../native";
import type { PageStateMap, Run } from "./pageState";
import { MemFlag } from "../kvm/uapi";

export type BackendKind = "shared" | "attributes" | "memslots";

export type ApplyResult =
  /** bytes discarded from the side the pages left (a number: RAM ends far below 2^53) */
  | { discarded: number; refused?: undefined }
  /** the change cannot be made (nothing changed in KVM): why */
  | { refused: string; discarded?: undefined };

export type DiscardPolicy = "always" | "never";

export interface MemoryBackend {
  readonly kind: BackendKind;
  /** apply() needs every vCPU out of KVM_RUN (memslots: a GPA is briefly in no slot) */
  readonly needsQuiesce: boolean;
  /** The shared backing of all RAM, indexed by GPA: images, the boot page, host requests. */
  readonly sharedView: Buffer;
  /** Make the state of these changed runs real in KVM (the map is already updated) and discard
   *  the side each page left (unless the policy is never). A refusal changes nothing in KVM, and
   *  the caller restores the map. */
  apply(changes: Run[]): ApplyResult;
  /** Discard the private backing of pages without changing their state (they read as zero after). */
  punchPrivate(first: number, count: number): bigint;
  /** One line for the run log */
  describe(): string;
  /** A line for the run summary about a limited resource (memslots), if the backend has one */
  usage?(): string;
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
  /** always: punch the side a page left; never: keep both (as the kernel's private_mem_conversions_test) */
  discard: DiscardPolicy;
  /** memslot ids the backend may use: 0 to slotLimit - 1 (see memslotBudget) */
  slotLimit: number;
}

/** KVM_CAP_NR_MEMSLOTS (0 when the KVM does not say: the documented default is 32) split between
 *  the backend and the exit scenarios' test slot, which takes the last id. */
export function memslotBudget(nrMemslots: number): { backendSlots: number; testSlotId: number } {
  const n = nrMemslots > 0 ? nrMemslots : 32;
  return { backendSlots: n - 1, testSlotId: n - 1 };
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
