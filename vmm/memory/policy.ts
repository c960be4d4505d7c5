// From what the user asked (--private, --backend, --shared-bit, ...) and what the host offers
// (assessHost) to the private-memory options of a machine. Pure: unit-tested without KVM.
import { ExitStatus, TsvmmError, UsageError } from "../errors";
import { privateMemoryHint, type Verdict } from "../host/caps";
import type { FaultPolicy, HypercallPolicy } from "./engine";
import type { PrivateMemoryOptions } from "./options";
import { hex } from "../format";
import type { DiscardPolicy } from "./backend";
import { PAGE } from "./pageState";

export type Range = { start: bigint; end: bigint };

export interface PrivateRequest {
  /** undefined = the guest's default */
  private?: "all" | "none" | Range[];
  backend?: "auto" | "attributes" | "memslots";
  sharedBit?: number;
  onFault?: FaultPolicy;
  onHypercall?: HypercallPolicy;
  prealloc?: boolean;
  /** KVM_PRE_FAULT_MEMORY after each guest conversion to private */
  prefault?: boolean;
  discard?: DiscardPolicy;
  /** How the guest asks for conversions; default: the hypercall where KVM delivers it */
  convertVia?: "hypercall" | "doorbell";
}


/** What policy needs of the guest image and of the layout */
export interface GuestFacts {
  /** The image asks for private memory by default (it converts) */
  wantsPrivate: boolean;
}
export interface RamFacts {
  ramSize: bigint;
  /** RAM below it holds firmware, page tables, stacks and the guest image: always shared */
  freeBase: bigint;
}

/** What --private means for this guest before any host check: explicit, or the guest's default
 *  ("all" for guests that convert, or when another private-memory option was given). */
export function requestedPrivate(req: PrivateRequest, guest: GuestFacts): "all" | "none" | Range[] {
  const asked = (req.backend !== undefined && req.backend !== "auto") || !!req.sharedBit || !!req.prefault;
  return req.private ?? (asked || guest.wantsPrivate ? "all" : "none");
}

export function resolvePrivateMemory(req: PrivateRequest, guest: GuestFacts, layout: RamFacts, verdict: Verdict): PrivateMemoryOptions | undefined {
  if (req.sharedBit) checkSharedBit(req.sharedBit, verdict.physicalAddressBits);
  const want = requestedPrivate(req, guest);
  if (want === "none") {
    if (req.sharedBit) throw new UsageError("{sharedBit} needs private memory, but {private} is none");
    if (req.prefault) throw new UsageError("{prefault} needs private memory, but {private} is none");
    return undefined;
  }
  const ranges = want === "all" ? [{ start: layout.freeBase, end: layout.ramSize }] : want;
  for (const r of ranges) {
    if (r.start % PAGE !== 0n || r.end % PAGE !== 0n || r.end <= r.start)
      throw new UsageError(`{private} range [${hex(r.start)}, ${hex(r.end)}) must be whole 4 KiB pages`);
    if (r.start < layout.freeBase || r.end > layout.ramSize)
      throw new UsageError(
        `{private} range [${hex(r.start)}, ${hex(r.end)}) must lie inside [${hex(layout.freeBase)}, ${hex(layout.ramSize)})`,
        "RAM below the guest's free_base holds the firmware, page tables, stacks and the guest image, which stay shared",
      );
  }

  const { attributes, memslots } = verdict.backends;
  const refuse = (reason: string) =>
    new TsvmmError(`private memory is not available here: ${reason}`, ExitStatus.HOST_UNSUPPORTED, privateMemoryHint());
  let backend: "attributes" | "memslots";
  if (!req.backend || req.backend === "auto") {
    if (attributes.available && !req.sharedBit) backend = "attributes";
    else if (memslots.available) backend = "memslots";
    else throw refuse(req.sharedBit ? memslots.reason : `${attributes.reason}; ${memslots.reason}`);
  } else {
    backend = req.backend;
    if (!verdict.backends[backend].available) throw refuse(`{backend} ${backend}: ${verdict.backends[backend].reason}`);
  }
  if (req.sharedBit && backend === "attributes")
    throw new UsageError(
      "{sharedBit} works with {backend} memslots only",
      "on a KVM_X86_SW_PROTECTED_VM KVM derives private/shared from the memory attributes, and a guest_memfd-only slot ignores them, so the wrong view cannot fault",
    );
  if (req.convertVia === "hypercall" && !verdict.hypercallExit)
    throw new TsvmmError(
      "--convert-via hypercall: this KVM does not deliver KVM_HC_MAP_GPA_RANGE to userspace (KVM_CAP_EXIT_HYPERCALL)",
      ExitStatus.HOST_UNSUPPORTED,
      "use --convert-via doorbell, or leave it out to get the doorbell where the hypercall cannot exit",
    );
  if (req.prefault && !verdict.preFault.available)
    throw new TsvmmError(`{prefault}: ${verdict.preFault.reason}`, ExitStatus.HOST_UNSUPPORTED, "leave out {prefault}: the guest then faults each page in on its first touch");
  return {
    backend,
    ranges,
    sharedBit: req.sharedBit ?? 0,
    onFault: req.onFault ?? "convert",
    onHypercall: req.onHypercall ?? "convert",
    prealloc: req.prealloc ?? false,
    prefault: req.prefault ?? false,
    discard: req.discard ?? "always",
    convertMethod: req.convertVia ?? (verdict.hypercallExit ? "hypercall" : "doorbell"),
  };
}

/** The aliased layout's bit: above the firmware's 4 GiB identity map, below the CPU's physical address width. */
function checkSharedBit(bit: number, physicalAddressBits: number): void {
  if (bit < 32 || bit >= physicalAddressBits)
    throw new UsageError(
      `{sharedBit} ${bit} is out of range`,
      `use 32 to ${physicalAddressBits - 1}: above the 4 GiB identity map and below this CPU's ${physicalAddressBits} physical address bits`,
    );
}
