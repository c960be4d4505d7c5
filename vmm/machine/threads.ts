// Worker threads for vCPUs (vcpuThread.ts), started ahead of need: a Node worker takes tens of
// milliseconds to boot, which `tsvmm run` overlaps with loading the CLI (bin/tsvmm.js starts one
// first thing, vmm/cli/entry.ts hands it over). An idle thread does not keep the process alive.
import * as path from "node:path";
import { Worker } from "node:worker_threads";

const idle: Worker[] = [];

function spawn(): Worker {
  const thread = new Worker(path.join(__dirname, "vcpuThread.js"));
  thread.unref();
  return thread;
}

/** Keep `thread`, a worker the caller started on vcpuThread.js beside this file, for a later vcpuThread() call. */
export function adoptVcpuThread(thread: Worker): void {
  thread.unref();
  idle.push(thread);
}

/** A vCPU thread waiting for its VcpuThreadData message; it keeps the process alive from here. */
export function vcpuThread(): Worker {
  const thread = idle.shift() ?? spawn();
  thread.ref();
  return thread;
}
