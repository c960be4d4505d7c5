// The CLI's entry, bundled into dist/bundle/tsvmm.js (scripts/bundle.js); bin/tsvmm.js loads the
// bundle and calls start().
import type { Worker } from "node:worker_threads";
import { adoptVcpuThread } from "../machine/threads";

/**
 * Run the CLI on `argv`. `vcpuThread`: for `run`, a worker that bin/tsvmm.js started on the
 * bundled vcpuThread.js before it loaded the CLI (a Node worker takes tens of milliseconds to
 * boot; it boots meanwhile), for the machine to use.
 */
export function start(argv: string[], vcpuThread?: Worker): void {
  if (vcpuThread) adoptVcpuThread(vcpuThread);
  // required, not imported: the CLI is evaluated once the thread is in place
  (require("./main") as typeof import("./main")).main(argv);
}
