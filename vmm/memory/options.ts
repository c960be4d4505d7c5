// The private-memory options of one machine, as resolved from the request and the host (policy.ts).
import type { FaultPolicy, HypercallPolicy } from "./engine";
import type { DiscardPolicy } from "./backend";

export type PrivateBackend = "attributes" | "memslots";

export interface PrivateMemoryOptions {
  backend: PrivateBackend;
  /** GPA ranges [start, end) that start private; each must lie at or above the layout's freeBase */
  ranges: Array<{ start: bigint; end: bigint }>;
  /** 0 = no aliased layout */
  sharedBit: number;
  onFault: FaultPolicy;
  onHypercall: HypercallPolicy;
  prealloc: boolean;
  /** After a guest's conversion to private, map the range in KVM's page tables
   *  (KVM_PRE_FAULT_MEMORY) so the guest's first touch of each page does not fault */
  prefault: boolean;
  /** always: punch the side a page left (as QEMU, SNP/TDX); never: keep it (as the kernel's private_mem_conversions_test) */
  discard: DiscardPolicy;
  /** How the guest asks for conversions: a hypercall KVM delivers (vmcall or vmmcall by CPU
   *  vendor), or the port doorbell */
  convertMethod: "hypercall" | "doorbell";
}
