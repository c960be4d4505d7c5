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
require(main).main(process.argv.slice(2));
