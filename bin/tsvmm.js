#!/usr/bin/env node
// Entry point: the compiled CLI lives in dist/ (built by `npm install` / `npm run build`).
const path = require("node:path");
const main = path.join(__dirname, "..", "dist", "vmm", "cli", "main.js");
try {
  require.resolve(main);
} catch {
  console.error("tsvmm: not built yet. Run `npm install` (or `npm run build`) in " + path.dirname(__dirname));
  process.exit(70);
}
// `run` needs a vCPU thread: let it boot while the CLI loads (vmm/machine/threads.ts).
if (process.argv[2] === "run") require(path.join(main, "..", "..", "machine", "threads.js")).prestartVcpuThreads(1);
require(main).main(process.argv.slice(2));
