// The trace format: one JSON object per line (NDJSON), the record of a run. Every view (terminal
// report, HTML page, Perfetto JSON) is a pure function of a trace file. docs/trace.md describes
// every record and field; bump TRACE_VERSION when a field changes meaning.
import type { PageState, Run } from "../memory/pageState";
import type { ConversionEvent } from "../memory/engine";

export const TRACE_FORMAT = "tsvmm-trace";
/** 1: the start record carries the format, the run's facts and the page states at start;
 *  conversions carry the states before and after. 0 (no `format` field): the first release. */
export const TRACE_VERSION = 1;
export const PAGE_SIZE = 4096;

export type { PageState, Run };

/** Fields every record has */
export interface RecordBase {
  /** 0, 1, 2, ... in the order records were written */
  seq: number;
  /** ms since the VM started (the start record: about 0, the instant it was written) */
  time: number;
  /** vCPU index; -1 for the VMM itself (start, end, API conversions) */
  vcpu: number;
  kind: string;
}

export interface StartRecord extends RecordBase {
  kind: "start";
  format: typeof TRACE_FORMAT;
  version: number;
  guest: string;
  cpus: number;
  /** RAM size in bytes; RAM starts at GPA 0 */
  ram: number;
  pageSize: number;
  /** how RAM is realised: memfd, guest_memfd, attributes or memslots */
  backing: string;
  /** private-memory backend, or "shared" when all RAM is shared */
  backend: "shared" | "attributes" | "memslots";
  /** 0 = no aliased layout; else page p is shared at GPA p | 2^sharedBit */
  sharedBit: number;
  /** RAM below this GPA (hex) is always shared */
  sharedLimit: string;
  /** page states at start as maximal runs of page numbers (GPA >> 12) */
  pages: Run[];
  /** the start instant on other clocks, to line up other traces (kernel events) */
  clock: { monotonicNs: string; wall: string };
}

/** The engine's event (its fields documented there and in docs/trace.md), as a record */
export interface ConversionRecord extends RecordBase, Omit<ConversionEvent, "seq" | "time" | "vcpu"> {
  kind: "conversion";
  /** the engine's own sequence number */
  conversion: number;
}

export interface MemoryFaultRecord extends RecordBase {
  kind: "memory-fault";
  gpa: string;
  size: number;
  flags: number;
  errno: string;
}

export interface HostRequestRecord extends RecordBase {
  kind: "host-request";
  what: string;
}

export interface HaltRecord extends RecordBase {
  kind: "halt";
}

export interface EndRecord extends RecordBase {
  kind: "end";
  status: number;
  reason: string;
}

export type TraceRecord = StartRecord | ConversionRecord | MemoryFaultRecord | HostRequestRecord | HaltRecord | EndRecord;
