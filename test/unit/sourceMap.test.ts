// The bundled CLI's stacks map back to the TypeScript sources (vmm/sourceMap.ts, scripts/bundle.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { sourceMappedStack } from "../../vmm/sourceMap";

const ROOT = path.resolve(__dirname, "..", "..", "..");
const BUNDLE = path.join(ROOT, "dist", "bundle", "tsvmm.js");

test("a position in the bundle is given as its place in vmm/*.ts; others stay as they are", () => {
  const lines = fs.readFileSync(BUNDLE, "utf8").split("\n");
  const at = lines.findIndex((l) => l.includes("function parseSize("));
  assert.ok(at >= 0, "parseSize is in the bundle");
  const column = lines[at + 1].search(/\S/);
  const err = new Error("boom");
  err.stack = `Error: boom\n    at parseSize (${BUNDLE}:${at + 2}:${column + 1})\n    at elsewhere (/nowhere/x.js:1:1)\n    at node:internal/process/task_queues:95:5`;
  const mapped = sourceMappedStack(err).split("\n");
  const source = fs.readFileSync(path.join(ROOT, "vmm", "cli", "parse.ts"), "utf8").split("\n");
  const m = /at parseSize \((.*\/vmm\/cli\/parse\.ts):(\d+):(\d+)\)$/.exec(mapped[1]);
  assert.ok(m, mapped[1]);
  assert.equal(m[1], path.join(ROOT, "vmm", "cli", "parse.ts"));
  assert.match(source[Number(m[2]) - 1], /String\(value\)\.trim\(\)/, "the first statement of parseSize");
  assert.equal(mapped[2], "    at elsewhere (/nowhere/x.js:1:1)");
  assert.equal(mapped[3], "    at node:internal/process/task_queues:95:5");
});
