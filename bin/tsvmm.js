#!/usr/bin/env node
// Entry point: the CLI is bundled into dist/bundle/ (built by `npm install` / `npm run build`,
// from vmm/cli/entry.ts; see scripts/bundle.js).
const path = require("node:path");
const cli = path.join(__dirname, "..", "dist", "bundle", "tsvmm.js");
try {
  require.resolve(cli);
} catch {
  console.error("tsvmm: not built yet. Run `npm install` (or `npm run build`) in " + path.dirname(__dirname));
  process.exit(70);
}
require(cli);
