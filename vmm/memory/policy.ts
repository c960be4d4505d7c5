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

  const backend = chooseBackend(req, verdict);
  if (req.sharedBit && backend === "attributes")
    throw new UsageError(
      "{sharedBit} works with {backend} memslots only",
      "on a KVM_X86_SW_PROTECTED_VM KVM derives private/shared from the memory attributes, and a guest_memfd-only slot ignores them, so the wrong view cannot fault",
    );
  return machineOptions(req, verdict, backend, ranges);
}

/** The aliased layout's bit: above the firmware's 4 GiB identity map, below the CPU's physical address width. */
function checkSharedBit(bit: number, physicalAddressBits: number): void {
  if (bit < 32 || bit >= physicalAddressBits)
    throw new UsageError(
      `{sharedBit} ${bit} is out of range`,
      `use 32 to ${physicalAddressBits - 1}: above the 4 GiB identity map and below this CPU's ${physicalAddressBits} physical address bits`,
    );
}

/** The backend asked for, or the best one this host offers ("auto": attributes unless the aliased layout is wanted). */
function chooseBackend(req: PrivateRequest, verdict: Verdict): "attributes" | "memslots" {
  const { attributes, memslots } = verdict.backends;
  const refuse = (reason: string) =>
    new TsvmmError(`private memory is not available here: ${reason}`, ExitStatus.HOST_UNSUPPORTED, privateMemoryHint());
  if (!req.backend || req.backend === "auto") {
    if (attributes.available && !req.sharedBit) return "attributes";
    if (memslots.available) return "memslots";
    throw refuse(req.sharedBit ? memslots.reason : `${attributes.reason}; ${memslots.reason}`);
  }
  if (!verdict.backends[req.backend].available) throw refuse(`{backend} ${req.backend}: ${verdict.backends[req.backend].reason}`);
  return req.backend;
}

/**
 * Multiboot and Linux guests: all RAM shared. By default plain shared RAM (guest_memfd with
 * MMAP|INIT_SHARED where the host has it); `{backend} attributes|memslots` runs the same all-shared
 * RAM on that backend's VM and memory slots (a KVM_X86_SW_PROTECTED_VM with attributes, or
 * guest_memfd slots laid out by the memslots engine), so a guest that asks for a conversion
 * (KVM_HC_MAP_GPA_RANGE) gets one. Private ranges, the aliased layout and pre-faulting are for
 * tsvmm's own guests, which say what they convert.
 */
export function resolvePcMemory(req: PrivateRequest, layout: RamFacts & { ram: readonly unknown[] }, verdict: Verdict): PrivateMemoryOptions | undefined {
  if ((req.private !== undefined && req.private !== "none") || req.sharedBit || req.prefault)
    throw new UsageError(
      "private memory ({private}, {sharedBit}, {prefault}) is for tsvmm's own test guests",
      "multiboot and Linux guests run with all RAM shared; {backend} attributes|memslots picks the backend that holds it",
    );
  if (!req.backend || req.backend === "auto") return undefined;
  const backend = chooseBackend(req, verdict);
  if (layout.ram.length > 1)
    throw new UsageError(`{backend} ${backend} holds RAM as one range below the 3 GiB hole; {memSize} ${layout.ramSize >> 20n} MiB needs RAM above 4 GiB`, "give {memSize} 3G or less, or leave out {backend}");
  return machineOptions(req, verdict, backend, []);
}

/** The machine's options once the backend and the private ranges are settled (shared by both guest kinds). */
function machineOptions(req: PrivateRequest, verdict: Verdict, backend: "attributes" | "memslots", ranges: Range[]): PrivateMemoryOptions {
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
