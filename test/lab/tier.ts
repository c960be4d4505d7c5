// The lab test tier's runner: Node starts slowly under TCG (~2 s), so every lab test file is
// loaded into this one process instead of one process per file (`node --test` would spawn).
//   inside the lab:    tsvmm lab [--kernel K] -- node dist/test/lab/tier.js   (npm run test:lab: both kernels)
//   on a real KVM:     node dist/test/lab/tier.js
// node:test reports TAP when stdout is not a terminal (always so inside the lab).
import * as fs from "node:fs";
import * as path from "node:path";

const only = process.argv.slice(2);
const files = fs
  .readdirSync(__dirname)
  .filter((f) => f.endsWith(".test.js"))
  .filter((f) => !only.length || only.some((o) => f.includes(o)))
  .sort();
if (!files.length) {
  process.stderr.write(`lab runner: no test files in ${__dirname}${only.length ? ` matching ${only.join(" ")}` : ""}\n`);
  process.exitCode = 1;
}
process.stderr.write(`# lab tier on ${process.env.TSVMM_LAB ? `the lab's ${process.env.TSVMM_LAB} kernel` : "this host"}: ${files.join(", ")}\n`);
for (const f of files) require(path.join(__dirname, f));
