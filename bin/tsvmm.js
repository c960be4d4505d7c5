#!/usr/bin/env node
// Entry point: the CLI is bundled into dist/bundle/tsvmm.js (built by `npm install` / `npm run
// build`, from vmm/cli/entry.ts; see scripts/bundle.js). It is compiled with a V8 code cache
// beside it, written by the first successful `run` of each build: the functions a run needs then
// start compiled, ~20 ms less per start. `run` needs a vCPU thread, and a Node worker takes
// ~40 ms to boot: it is started first and boots while the CLI loads (docs/startup.md).
const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");
const { createRequire } = require("node:module");

const bundle = path.join(__dirname, "..", "dist", "bundle", "tsvmm.js");
let source;
try {
  source = fs.readFileSync(bundle, "utf8");
} catch {
  console.error("tsvmm: not built yet. Run `npm install` (or `npm run build`) in " + path.dirname(__dirname));
  process.exit(70);
}
const vcpuThread = process.argv[2] === "run" ? new (require("node:worker_threads").Worker)(path.join(path.dirname(bundle), "vcpuThread.js")) : undefined;
// scripts/bundle.js ends the bundle with its content's hash, which names its cache: a cache always
// belongs to these exact bytes (V8 itself checks only the length, its version and its flags).
const build = /\/\/# tsvmm-build (\w+)\s*$/.exec(source)?.[1];
const cache = build && path.join(path.dirname(bundle), `tsvmm.${build}.cache`);
let cachedData;
try {
  cachedData = cache && fs.readFileSync(cache);
} catch {}
const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: bundle, cachedData });
if (cache && process.argv[2] === "run" && (!cachedData || script.cachedDataRejected))
  process.once("exit", (status) => status === 0 && writeCache(cache, script));
const mod = { exports: {} };
script.runInThisContext()(mod.exports, createRequire(bundle), mod, bundle, path.dirname(bundle));
mod.exports.start(process.argv.slice(2), vcpuThread);

/** Best effort (a read-only install runs without): written whole, then renamed into place. */
function writeCache(file, compiled) {
  const partial = `${file}.${process.pid}`;
  try {
    fs.writeFileSync(partial, compiled.createCachedData());
    fs.renameSync(partial, file);
  } catch {
    fs.rmSync(partial, { force: true });
  }
}
