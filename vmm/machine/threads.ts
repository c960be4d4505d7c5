// Worker threads for vCPUs (vcpuThread.ts), kept in a pool: a Node worker takes tens of
// milliseconds to boot. `tsvmm run` overlaps the first one's boot with loading the CLI
// (bin/tsvmm.js starts it first thing, vmm/cli/entry.ts hands it over); a thread whose vCPU was
// stopped and closed comes back here for the next machine (`tsvmm test` boots many in one
// process). An idle thread neither keeps the process alive nor holds anything of a machine.
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import type { VcpuThreadData, VcpuThreadMessage, VcpuThreadReleased } from "./vcpuThread";

/** What the owner of a vCPU hears from the thread lent to it (startVcpuThread) */
export interface VcpuThreadClient {
  /** An exit or a KVM_RUN failure of the vCPU */
  message(m: VcpuThreadMessage): void;
  /** The thread failed; it ends (it is never reused) and done() follows */
  error(err: Error): void;
  /** Once, after the last message: the thread has closed the vCPU and gone back to the pool, or ended */
  done(): void;
}

/** Idle threads kept at most. Fewer are kept in practice: the pool holds no more threads than were
 *  lent at once (a new one starts only when none is idle). */
const MAX_IDLE = 16;

const idle: Worker[] = [];
let started = 0;

function spawn(): Worker {
  return adopt(new Worker(path.join(__dirname, "vcpuThread.js")));
}

function adopt(thread: Worker): Worker {
  started++;
  // An idle thread that fails (it could not load) is dropped; a lent one's failure goes to its client.
  thread.on("error", () => {});
  thread.on("exit", () => {
    const at = idle.indexOf(thread);
    if (at >= 0) idle.splice(at, 1);
  });
  return thread;
}

/** Back to the pool, idle and not keeping the process alive */
function keep(thread: Worker): void {
  thread.unref();
  if (idle.length < MAX_IDLE) idle.push(thread);
  else void thread.terminate();
}

/** Keep `thread`, a worker the caller started on vcpuThread.js beside this file, for a later startVcpuThread(). */
export function adoptVcpuThread(thread: Worker): void {
  keep(adopt(thread));
}

/** Run a vCPU on a thread of the pool (a new one if none is idle); it keeps the process alive
 *  until done(). Returns the thread's threadId. */
export function startVcpuThread(data: VcpuThreadData, client: VcpuThreadClient): number {
  const thread = idle.pop() ?? spawn();
  thread.ref();
  let ended = false;
  const end = (reusable: boolean) => {
    if (ended) return;
    ended = true;
    thread.off("message", onMessage);
    thread.off("error", onError);
    thread.off("exit", onExit);
    if (reusable) keep(thread);
    client.done();
  };
  const onMessage = (m: VcpuThreadMessage | VcpuThreadReleased) => {
    if ("released" in m) end(true);
    else client.message(m);
  };
  const onError = (err: Error) => client.error(err);
  const onExit = () => end(false);
  thread.on("message", onMessage);
  thread.on("error", onError);
  thread.on("exit", onExit);
  thread.postMessage(data);
  return thread.threadId;
}

/** The pool as it is now: the idle threads' threadIds (most recently used last) and how many threads were ever started */
export function vcpuThreadPool(): { idle: number[]; started: number } {
  return { idle: idle.map((t) => t.threadId), started };
}
