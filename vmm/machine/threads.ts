// Worker threads for vCPUs (vcpuThread.ts), started ahead of need: a Node worker takes tens of
// milliseconds to boot, which `tsvmm run` overlaps with loading the CLI (bin/tsvmm.js starts one
// first thing). An idle thread does not keep the process alive.
import * as path from "node:path";
import { Worker } from "node:worker_threads";

const idle: Worker[] = [];

function spawn(): Worker {
  const thread = new Worker(path.join(__dirname, "vcpuThread.js"));
  thread.unref();
  return thread;
}

/** Start `count` vCPU threads now, for later vcpuThread() calls. */
export function prestartVcpuThreads(count: number): void {
  for (let i = 0; i < count; i++) idle.push(spawn());
}

/** A vCPU thread waiting for its VcpuThreadData message; it keeps the process alive from here. */
export function vcpuThread(): Worker {
  const thread = idle.shift() ?? spawn();
  thread.ref();
  return thread;
}
