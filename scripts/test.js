#!/usr/bin/env node
// `npm test`: unit tests, the HTML views in headless chromium, host tests on /dev/kvm, and the lab
// tier. The lab tier runs directly when this host's KVM can prove private memory itself, otherwise
// inside `tsvmm lab` on both lab kernels. Prints one closing line with the totals of every tier.
const { spawnSync } = require("node:child_process");
const path = require("node:path");
const fs = require("node:fs");

const root = path.resolve(__dirname, "..");
const dist = path.join(root, "dist", "test");
const tsvmm = path.join(root, "bin", "tsvmm.js");
const ci = process.env.CI === "true";
const totals = { passed: 0, failed: 0, skipped: 0 };
let broken = false;

function tier(name, command, args, limitSeconds) {
  process.stdout.write(`\n=== ${name}: ${[path.basename(command), ...args].join(" ")}\n`);
  const started = Date.now();
  const r = spawnSync(command, args, { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], timeout: limitSeconds * 1000, killSignal: "SIGKILL" });
  process.stdout.write(r.stdout ?? "");
  const count = (key) => {
    const m = [...(r.stdout ?? "").matchAll(new RegExp(`^# ${key} (\\d+)$`, "gm"))];
    return m.length ? Number(m[m.length - 1][1]) : 0;
  };
  const passed = count("pass");
  const failed = count("fail") + count("cancelled");
  const skipped = count("skipped");
  totals.passed += passed;
  totals.failed += failed;
  totals.skipped += skipped;
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (r.error || r.status !== 0) {
    broken = true;
    const why = r.error ? r.error.message : `exit status ${r.status}`;
    process.stdout.write(`=== ${name}: FAILED (${why}) after ${seconds} s\n`);
  } else process.stdout.write(`=== ${name}: ${passed} passed, ${failed} failed, ${skipped} skipped in ${seconds} s\n`);
}

function hostProvesPrivateMemory() {
  const r = spawnSync(process.execPath, [tsvmm, "caps", "--json"], { encoding: "utf8", timeout: 30000 });
  if (r.status !== 0) return false;
  const { verdict } = JSON.parse(r.stdout);
  return verdict.backends.attributes.available && verdict.backends.memslots.available;
}

const runner = [process.execPath, "--test", "--test-reporter=tap"];
tier("unit", runner[0], [...runner.slice(1), "--test-timeout=30000", path.join(dist, "unit")], 300);
tier("browser", runner[0], [...runner.slice(1), "--test-concurrency=1", "--test-timeout=600000", path.join(dist, "browser")], 900);
tier("host", runner[0], [...runner.slice(1), "--test-concurrency=1", "--test-timeout=120000", path.join(dist, "host")], 1200);

tier("lab command", runner[0], [...runner.slice(1), "--test-concurrency=1", "--test-timeout=900000", path.join(dist, "lab", "host")], 3600);

const labRunner = path.join(dist, "lab", "run.js");
if (!fs.existsSync(labRunner)) {
  broken = true;
  process.stdout.write(`=== lab: FAILED (${labRunner} is not built)\n`);
} else if (hostProvesPrivateMemory()) {
  tier("lab (on this host)", process.execPath, [labRunner], 1800);
} else {
  for (const kernel of ["sw-protected", "stock"])
    tier(`lab (${kernel} kernel)`, process.execPath, [tsvmm, "lab", "--kernel", kernel, "--timeout", "1500", "--", "node", labRunner], 2400);
}

if (ci && totals.skipped > 0) {
  broken = true;
  process.stdout.write(`CI=true: ${totals.skipped} skipped tests count as failures\n`);
}
process.stdout.write(`\ntotal: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped\n`);
process.exit(broken || totals.failed > 0 ? 1 : 0);
