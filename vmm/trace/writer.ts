// Writing a trace: where the records go (a file, or stdout for `--trace -`) and what the start
// record says about the run.
import * as fs from "node:fs";
import { ExitStatus, TsvmmError } from "../errors";
import { PAGE_SIZE, Run, StartRecord, TRACE_FORMAT, TRACE_VERSION } from "./schema";

export interface TraceSink {
  write(record: Record<string, unknown>): void;
  close(): void;
}

/** `-` is stdout (the caller moves the console to stderr); anything else a file, truncated. */
export function openTrace(target: string): TraceSink {
  if (target === "-") {
    return {
      write: (record) => void process.stdout.write(JSON.stringify(record) + "\n"),
      close: () => undefined,
    };
  }
  let fd: number;
  try {
    fd = fs.openSync(target, "w");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new TsvmmError(`--trace ${target}: cannot open for writing (${code})`, ExitStatus.USAGE, "name a writable file, or - for stdout");
  }
  return {
    write: (record) => void fs.writeSync(fd, JSON.stringify(record) + "\n"),
    close: () => fs.closeSync(fd),
  };
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

/** The start record's fields beyond seq/time/vcpu/kind: the format and the run's facts. */
export function startFields(f: RunFacts): Omit<StartRecord, "seq" | "time" | "vcpu" | "kind"> {
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
    clock: { monotonicNs: process.hrtime.bigint().toString(), wall: new Date().toISOString() },
  };
}
