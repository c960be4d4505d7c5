// The CLI's entry, bundled into dist/bundle/tsvmm.js (scripts/bundle.js) and loaded by
// bin/tsvmm.js. `run` needs a vCPU thread, and a Node worker takes tens of milliseconds to boot:
// one starts first thing, and boots while the rest of the CLI loads (vmm/machine/threads.ts).
import { prestartVcpuThreads } from "../machine/threads";

if (process.argv[2] === "run") prestartVcpuThreads(1);
// required, not imported: an import would load the whole CLI before the thread starts
(require("./main") as typeof import("./main")).main(process.argv.slice(2));
