// The private-memory options of one machine, as resolved from the request and the host (policy.ts).
import type { FaultPolicy, HypercallPolicy } from "./engine";

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
  /** How the guest asks for conversions: a hypercall KVM delivers (vmcall or vmmcall by CPU
   *  vendor), or the port doorbell */
  convertMethod: "hypercall" | "doorbell";
}
