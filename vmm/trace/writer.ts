// Writing a trace: where the records go (a file, or stdout for `--trace -`) and what the start
// record says about the run.
import * as fs from "node:fs";
import { UsageError } from "../errors";
import { PAGE_SIZE, Run, StartRecord, TRACE_FORMAT, TRACE_VERSION } from "./schema";

export interface TraceSink {
  write(record: Record<string, unknown>): void;
  /** Records gathered after the run (kernel events): numbered on from the last seq written */
  append(records: readonly object[]): void;
  /** CLOCK_MONOTONIC at time 0, once the start record is written */
  readonly startNs?: bigint;
  close(): void;
}

/** `-` is stdout (the caller moves the console to stderr); anything else a file, truncated. A
 *  write that fails (disk full, file size limit, a closed pipe) stops the writing and calls
 *  onFailure once; the run decides what that means. */
export function openTrace(target: string, onFailure: (problem: string) => void = () => undefined): TraceSink {
  let emit: ((line: string) => void) | undefined;
  let close = () => undefined as void;
  const fail = (err: unknown) => {
    if (!emit) return;
    close();
    emit = undefined;
    onFailure(`--trace ${target}: write failed (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  };
  if (target === "-") {
    process.stdout.once("error", fail);
    emit = (line) => void process.stdout.write(line);
  } else {
    let fd: number | undefined;
    try {
      fd = fs.openSync(target, "w");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new UsageError(`--trace ${target}: cannot open for writing (${code})`, "name a writable file, or - for stdout");
    }
    const file = fd;
    emit = (line) => void fs.writeFileSync(file, line);
    close = () => {
      if (fd !== undefined) fs.closeSync(fd);
      fd = undefined;
    };
  }
  let nextSeq = 0;
  const sink: { -readonly [K in keyof TraceSink]: TraceSink[K] } = {
    write(record) {
      if (typeof record.seq === "number") nextSeq = Math.max(nextSeq, record.seq + 1);
      const clock = record.kind === "start" ? (record.clock as StartRecord["clock"] | undefined) : undefined;
      if (clock) sink.startNs = BigInt(clock.monotonicNs);
      if (!emit) return;
      try {
        emit(JSON.stringify(record) + "\n");
      } catch (err) {
        fail(err);
      }
    },
    append(records) {
      for (const r of records) sink.write({ seq: nextSeq, ...(r as Record<string, unknown>) });
    },
    close: () => close(),
  };
  return sink;
}

export interface RunFacts {
  guest: string;
  cpus: number;
  ram: bigint;
  backing: string;
  backend: StartRecord["backend"];
  sharedBit: number;
  sharedLimit: bigint;
  /** page states at start; all shared when absent */
  pages?: Run[];
}

/** Time 0 on CLOCK_MONOTONIC and the wall clock: read it right where the run's time 0 is taken
 *  (kernel events are placed by it; the first Date call can take 100s of ms in the lab). */
export function startClock(): StartRecord["clock"] {
  const monotonicNs = process.hrtime.bigint();
  return { monotonicNs: monotonicNs.toString(), wall: new Date().toISOString() };
}

/** The start record's fields beyond seq/time/vcpu/kind: the format and the run's facts. */
export function startFields(f: RunFacts, clock: StartRecord["clock"]): Omit<StartRecord, "seq" | "time" | "vcpu" | "kind"> {
  const pages = Number(f.ram / BigInt(PAGE_SIZE));
  return {
    format: TRACE_FORMAT,
    version: TRACE_VERSION,
    guest: f.guest,
    cpus: f.cpus,
    ram: Number(f.ram),
    pageSize: PAGE_SIZE,
    backing: f.backing,
    backend: f.backend,
    sharedBit: f.sharedBit,
    sharedLimit: "0x" + f.sharedLimit.toString(16),
    pages: f.pages ?? [{ first: 0, count: pages, state: "shared" }],
    clock,
  };
}
