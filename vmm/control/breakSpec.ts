// Event breakpoints: the `--break SPEC` / monitor `break SPEC` syntax, and matching events.
//   conversion[,range=R][,to=private|shared][,source=hypercall|doorbell|fault|monitor|api][,vcpu=N]
//   fault[,range=R][,vcpu=N]       every KVM_EXIT_MEMORY_FAULT, converted or refused
//   refused[,range=R][,vcpu=N]     conversion requests answered with an error
//   exit=NAME                      a KVM exit reason that reaches TypeScript (IO, MMIO, HLT, DEBUG, 39, ...)
//   addr=SYMBOL|ADDRESS            an instruction breakpoint (KVM_SET_GUEST_DEBUG)
//   watch=SYMBOL|ADDRESS[+LEN][,access=w|rw]   a data watchpoint in a debug register (LEN 1, 2, 4
//                                  or 8, ADDRESS aligned to it; default LEN: the symbol's size when
//                                  it is one of those, else 1; access w = writes, rw = reads and writes)
// Fields are separated by commas or spaces; R is START-END or START+SIZE (K/M/G suffixes).
import { Exit } from "../kvm/uapi";
import { parseSize } from "../cli/parse";
import { UsageError } from "../errors";

export type ConversionSource = "hypercall" | "doorbell" | "fault" | "monitor" | "api" | "cli";
export const CONVERSION_SOURCES = ["hypercall", "doorbell", "fault", "monitor", "api"] as const;

export interface GpaRange {
  start: bigint;
  /** exclusive */
  end: bigint;
}

export interface EventFilter {
  range?: GpaRange;
  vcpu?: number;
}

export type BreakSpec =
  | ({ kind: "conversion"; to?: "private" | "shared"; source?: ConversionSource } & EventFilter)
  | ({ kind: "fault" } & EventFilter)
  | ({ kind: "refused" } & EventFilter)
  | { kind: "exit"; reason: number }
  | { kind: "addr"; target: string }
  | { kind: "watch"; target: string; length?: number; access: WatchAccess };

/** x86 debug registers watch writes (RW=01) or reads and writes (RW=11); there is no read-only. */
export type WatchAccess = "w" | "rw";

/** What the control core sees happen; breakpoints match these. */
export type MachineEvent =
  | {
      kind: "conversion";
      vcpu: number;
      source: ConversionSource;
      gpa: bigint;
      size: bigint;
      from: string;
      to: string;
      /** converted: the state changed (or already was); refused: answered with an error */
      outcome: "converted" | "refused" | "race" | "repaired";
      result: string;
      seq: number;
    }
  | { kind: "exit"; vcpu: number; reason: number };

const exitReasons = new Map<string, number>(Object.entries(Exit).map(([name, n]) => [name, n]));

export function exitReasonName(reason: number): string {
  for (const [name, n] of exitReasons) if (n === reason) return name;
  return String(reason);
}

function parseExitName(option: string, text: string): number {
  const upper = text.toUpperCase().replace(/^KVM_EXIT_/, "");
  const known = exitReasons.get(upper);
  if (known !== undefined) return known;
  if (/^\d+$/.test(text)) return Number(text);
  throw new UsageError(`${option}: unknown exit reason ${JSON.stringify(text)}`, `use a KVM_EXIT_ name or number: ${[...exitReasons.keys()].join(", ")}`);
}

/** START-END or START+SIZE */
export function parseRange(option: string, text: string): GpaRange {
  const m = /^([^+-]+)([+-])([^+-]+)$/.exec(text.trim());
  if (!m) throw new UsageError(`${option}: ${JSON.stringify(text)} is not a range`, "write START-END or START+SIZE, e.g. 0x200000+2M");
  const start = parseSize(option, m[1]);
  const other = parseSize(option, m[3]);
  const end = m[2] === "+" ? start + other : other;
  if (end <= start) throw new UsageError(`${option}: range ${text} is empty`, "END must lie above START");
  return { start, end };
}

export function parseBreakSpec(text: string, option = "--break"): BreakSpec {
  const fields = text.trim().split(/[\s,]+/).filter(Boolean);
  if (fields.length === 0) throw new UsageError(`${option} needs a SPEC`, "conversion, fault, refused, exit=NAME, addr=SYMBOL|ADDRESS or watch=SYMBOL|ADDRESS[+LEN]");
  const [head, ...rest] = fields;
  const [kind, headValue] = head.split("=", 2);
  const pairs = rest.map((f) => {
    const eq = f.indexOf("=");
    if (eq <= 0) throw new UsageError(`${option} ${text}: ${JSON.stringify(f)} is not KEY=VALUE`);
    return [f.slice(0, eq), f.slice(eq + 1)] as const;
  });
  const unexpected = (allowed: string[]) => {
    for (const [k] of pairs)
      if (!allowed.includes(k)) throw new UsageError(`${option} ${text}: ${kind} takes no ${k}=`, allowed.length ? `it takes ${allowed.map((a) => a + "=").join(", ")}` : `${kind} takes no fields`);
  };
  const filter = (): EventFilter => {
    const f: EventFilter = {};
    for (const [k, v] of pairs) {
      if (k === "range") f.range = parseRange(`${option} range`, v);
      if (k === "vcpu") {
        if (!/^\d+$/.test(v)) throw new UsageError(`${option} ${text}: vcpu=${v} is not a vCPU index`);
        f.vcpu = Number(v);
      }
    }
    return f;
  };
  switch (kind) {
    case "conversion": {
      unexpected(["range", "to", "source", "vcpu"]);
      const spec: BreakSpec = { kind: "conversion", ...filter() };
      for (const [k, v] of pairs) {
        if (k === "to") {
          if (v !== "private" && v !== "shared") throw new UsageError(`${option} ${text}: to=${v}`, "to=private or to=shared");
          spec.to = v;
        }
        if (k === "source") {
          if (!(CONVERSION_SOURCES as readonly string[]).includes(v)) throw new UsageError(`${option} ${text}: source=${v}`, `one of ${CONVERSION_SOURCES.join(", ")}`);
          spec.source = v as ConversionSource;
        }
      }
      return spec;
    }
    case "fault":
    case "refused":
      unexpected(["range", "vcpu"]);
      return { kind, ...filter() };
    case "exit":
      unexpected([]);
      if (!headValue) throw new UsageError(`${option} ${text}: exit needs a name`, "e.g. exit=IO or exit=MMIO");
      return { kind: "exit", reason: parseExitName(option, headValue) };
    case "addr":
      unexpected([]);
      if (!headValue) throw new UsageError(`${option} ${text}: addr needs a symbol or address`, "e.g. addr=tsvmm_main or addr=0x100000");
      return { kind: "addr", target: headValue };
    case "watch": {
      unexpected(["access"]);
      const m = /^([^+]+)(?:\+(\d+|0x[0-9a-f]+))?$/i.exec(headValue ?? "");
      if (!m) throw new UsageError(`${option} ${text}: watch needs a symbol or address`, "e.g. watch=counter or watch=0x103000+8");
      const access = pairs.find(([k]) => k === "access")?.[1] ?? "w";
      if (access !== "w" && access !== "rw") throw new UsageError(`${option} ${text}: access=${access}`, "access=w (writes) or access=rw (reads and writes; x86 cannot watch reads alone)");
      return { kind: "watch", target: m[1], length: m[2] === undefined ? undefined : Number(m[2]), access };
    }
    default:
      throw new UsageError(`${option} ${JSON.stringify(text)}: unknown breakpoint kind ${JSON.stringify(kind)}`, "conversion, fault, refused, exit=NAME, addr=SYMBOL|ADDRESS or watch=SYMBOL|ADDRESS[+LEN]");
  }
}

const hex = (v: bigint) => "0x" + v.toString(16);

export function describeBreakSpec(spec: BreakSpec): string {
  const parts: string[] = [spec.kind];
  if (spec.kind === "exit") return `exit=${exitReasonName(spec.reason)}`;
  if (spec.kind === "addr") return `addr=${spec.target}`;
  if (spec.kind === "watch") return `watch=${spec.target}${spec.length ? `+${spec.length}` : ""},access=${spec.access}`;
  if (spec.range) parts.push(`range=${hex(spec.range.start)}-${hex(spec.range.end)}`);
  if (spec.kind === "conversion") {
    if (spec.to) parts.push(`to=${spec.to}`);
    if (spec.source) parts.push(`source=${spec.source}`);
  }
  if (spec.vcpu !== undefined) parts.push(`vcpu=${spec.vcpu}`);
  return parts.join(",");
}

function overlaps(range: GpaRange | undefined, gpa: bigint, size: bigint): boolean {
  return !range || (gpa < range.end && gpa + (size || 1n) > range.start);
}

/** Does this event stop the VM under this spec? (addr= and watch= are matched by the CPU, not here) */
export function matches(spec: BreakSpec, e: MachineEvent): boolean {
  switch (spec.kind) {
    case "exit":
      return e.kind === "exit" && e.reason === spec.reason;
    case "addr":
    case "watch":
      return false;
    default:
      if (e.kind !== "conversion") return false;
      if (spec.vcpu !== undefined && spec.vcpu !== e.vcpu) return false;
      if (!overlaps(spec.range, e.gpa, e.size)) return false;
      if (spec.kind === "fault") return e.source === "fault";
      if (spec.kind === "refused") return e.outcome === "refused";
      if (e.outcome !== "converted") return false;
      if (spec.to && spec.to !== e.to) return false;
      if (spec.source && spec.source !== e.source && !(spec.source === "api" && e.source === "cli")) return false;
      return true;
  }
}
