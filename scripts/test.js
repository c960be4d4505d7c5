#!/usr/bin/env node
// The test tiers, defined once: `npm test` runs them all, `npm run test:<tier>` one of them
// (`node scripts/test.js [unit|browser|host|lab-command|lab|lab:sw-protected|lab:stock|lab:linux]...`).
// Before running, the Debian packages the chosen tiers need (vmm/lab/packages.ts, with the
// reason for each) are installed when missing and this runs as root with apt-get; otherwise it
// stops with the command to run. Prints one closing line with the totals of every tier.
const { spawn, spawnSync } = require("node:child_process");
const path = require("node:path");
const fs = require("node:fs");

const root = path.resolve(__dirname, "..");
const dist = path.join(root, "dist");
const tsvmm = path.join(root, "bin", "tsvmm.js");
const ci = process.env.CI === "true";
const runner = [process.execPath, "--test", "--test-reporter=tap"];
const labRunner = path.join(dist, "test", "lab", "tier.js");
/** the Linux guest's cases and the mark of a stalled boot (test/support/linuxGuest.ts) */
const linuxGuest = () => require(path.join(dist, "test", "support", "linuxGuest.js"));
/** tsvmm lab's status when its lab froze (vmm/lab/errors.ts) */
const LAB_FROZEN = 89;
const LAB_KERNELS = ["sw-protected", "stock"];

/** A lab that froze is run again this many times (per tier, or per case where the tier has cases) */
const LAB_FROZEN_RERUNS = 2;

/**
 * name -> { needs: Need[] (vmm/lab/packages.ts), limitS: the whole tier, args: the command,
 * prepare?: a step before it with its own limit, cases?: { env, ids() }: the command runs once per
 * case id, with env[env] = id, each within limitS }
 */
const TIERS = {
  unit: { needs: [], limitS: 300, args: [...runner, "--test-timeout=30000", path.join(dist, "test", "unit")] },
  browser: { needs: ["test tools"], limitS: 900, args: [...runner, "--test-concurrency=1", "--test-timeout=600000", path.join(dist, "test", "browser")] },
  host: { needs: ["test tools"], limitS: 1200, args: [...runner, "--test-concurrency=1", "--test-timeout=120000", path.join(dist, "test", "host")] },
  "lab-command": { needs: ["lab"], limitS: 3600, args: [...runner, "--test-concurrency=1", "--test-timeout=900000", path.join(dist, "test", "lab", "host")] },
  // On a host whose own KVM proves private memory, the lab tests run directly, once.
  "lab:host": { needs: [], limitS: 1800, args: [process.execPath, labRunner] },
  ...Object.fromEntries(
    LAB_KERNELS.map((k) => [
      `lab:${k}`,
      {
        needs: ["lab", "lab kernel build"],
        limitS: 2400,
        args: [process.execPath, tsvmm, "lab", "--kernel", k, "--timeout", "1500", "--", "node", labRunner],
        // Downloading or building the kernel (a first build takes 5-40 min on 2 shared cores) has
        // its own limit, so that the tier's limit is the tests' own.
        prepare: { limitS: 4800, args: [process.execPath, tsvmm, "lab", "--prepare-only", "--kernel", k] },
      },
    ]),
  ),
  // Linux as a guest, in labs with one CPU: with two, the lab's nested SVM (QEMU TCG under
  // kvm_amd) now and then delivers a LAPIC timer interrupt with IF=0 and the guest deadlocks,
  // under QEMU as under tsvmm (docs/exit-path.md). A one-CPU lab sometimes freezes the same way
  // one layer down (its own clock stops: tsvmm lab's status 89), so each case runs in a lab of
  // its own and only a frozen case runs again; a guest that stalled that way in a one-CPU lab
  // (about 1 boot in 23) boots once more inside its test (test/lab/linux.test.ts).
  "lab:linux": {
    needs: ["lab", "lab kernel build"],
    limitS: 600,
    args: [process.execPath, tsvmm, "lab", "--kernel", "sw-protected", "--cpus", "1", "--timeout", "420", "--", "node", labRunner, "linux"],
    cases: { env: "TSVMM_LINUX_CASE", ids: () => linuxGuest().LINUX_CASES },
    prepare: { limitS: 4800, args: [process.execPath, tsvmm, "lab", "--prepare-only", "--kernel", "sw-protected"] },
  },
};

function say(line) {
  process.stdout.write(`npm test: ${line}\n`);
}

function hostProvesPrivateMemory() {
  const r = spawnSync(process.execPath, [tsvmm, "caps", "--json"], { encoding: "utf8", timeout: 30000 });
  if (r.status !== 0) return false;
  const { verdict } = JSON.parse(r.stdout);
  return verdict.backends.attributes.available && verdict.backends.memslots.available;
}

/** The tiers to run, in order, from the command line ("lab" = the lab tier wherever it runs). */
function chosenTiers(names) {
  const wanted = names.length ? names : ["unit", "browser", "host", "lab-command", "lab", "lab:linux"];
  const out = [];
  for (const n of wanted) {
    if (n === "lab") out.push(...(hostProvesPrivateMemory() ? ["lab:host"] : LAB_KERNELS.map((k) => `lab:${k}`)));
    // on a host that runs the lab tests directly, lab:host has them (where the host has one CPU)
    else if (n === "lab:linux" && !names.length && out.includes("lab:host")) continue;
    else if (TIERS[n]) out.push(n);
    else {
      process.stderr.write(`npm test: no tier ${n}; tiers: ${[...Object.keys(TIERS), "lab"].join(", ")}\n`);
      process.exit(64);
    }
  }
  return out;
}

/** Install what the tiers need, or stop with the command. */
function ensurePackages(tiers) {
  const packages = path.join(dist, "vmm", "lab", "packages.js");
  if (!fs.existsSync(packages)) {
    say(`${packages} is not built: run npm install first`);
    process.exit(1);
  }
  const { missingPackages, canInstall, installPackages, installCommand } = require(packages);
  const needs = [...new Set(tiers.flatMap((t) => TIERS[t].needs))];
  const missing = missingPackages(needs);
  if (!missing.length) return;
  say(`${tiers.length > 1 ? `the tiers ${tiers.join(", ")} need` : `the ${tiers[0]} tier needs`} these Debian packages, which are missing:`);
  for (const p of missing) process.stdout.write(`  ${p.name.padEnd(24)} ${p.why}\n`);
  if (!canInstall()) {
    say(`stopped: install them with\n  ${installCommand(missing)}\nthen run npm test again (as root with apt-get, npm test installs them itself)`);
    process.exit(1);
  }
  say(`installing them (root with apt-get; the list and the reasons are in vmm/lab/packages.ts)`);
  const left = installPackages(missing, say);
  if (left.length) {
    say(`stopped: still missing after apt-get: ${left.map((p) => `${p.name} (${p.provides})`).join(", ")}`);
    process.exit(1);
  }
}

const totals = { passed: 0, failed: 0, skipped: 0 };
/** the labs that froze and were run again, and the guests' stalls booted again, for the closing lines */
const frozenLabs = [];
const stalledGuests = [];
let broken = false;

/** Run a command with a time limit, its stdout copied out as it comes (and kept), stderr inherited. */
async function runStreaming(args, limitS, env = process.env) {
  const child = spawn(args[0], args.slice(1), { cwd: root, env, stdio: ["ignore", "pipe", "inherit"] });
  let stdout = "";
  child.stdout.setEncoding("utf8").on("data", (d) => {
    stdout += d;
    process.stdout.write(d);
  });
  let timedOut = false;
  const limit = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, limitS * 1000);
  const status = await new Promise((resolve) => {
    child.on("error", (e) => resolve(e.message));
    child.on("close", (code, signal) => resolve(signal ? `killed by ${signal}` : code));
  });
  clearTimeout(limit);
  const failure = status === 0 ? undefined : timedOut ? `over its limit of ${limitS} s` : typeof status === "number" ? `exit status ${status}` : status;
  return { stdout, failure };
}

/** Run one tier (after preparing what it needs) and add its counts to the totals. */
async function runTier(name) {
  const { args, limitS, prepare, cases } = TIERS[name];
  const shown = (a) => [path.basename(a[0]), ...a.slice(1).map((x) => path.relative(root, x) || x)].join(" ");
  process.stdout.write(`\n=== ${name}: ${shown(args)}\n`);
  const started = Date.now();
  const seconds = () => ((Date.now() - started) / 1000).toFixed(1);
  if (name.startsWith("lab:") && !fs.existsSync(labRunner)) {
    broken = true;
    process.stdout.write(`=== ${name}: FAILED (${labRunner} is not built)\n`);
    return;
  }
  if (prepare) {
    const p = await runStreaming(prepare.args, prepare.limitS);
    if (p.failure) {
      broken = true;
      process.stdout.write(`=== ${name}: FAILED (${shown(prepare.args)}: ${p.failure}) after ${seconds()} s\n`);
      return;
    }
  }
  const tally = { passed: 0, failed: 0, skipped: 0 };
  const failures = [];
  const runs = cases ? cases.ids().map((id) => ({ label: `${cases.env}=${id}`, env: { ...process.env, [cases.env]: id } })) : [{ label: "", env: process.env }];
  for (const { label, env } of runs) {
    if (label) process.stdout.write(`=== ${name}: ${label}\n`);
    let r = await runStreaming(args, limitS, env);
    // A lab that froze (tsvmm lab's status 89: the lab's clock stood still for a minute, below
    // tsvmm) is not a verdict on the tests: they run again, and it says so.
    for (let rerun = 1; rerun <= LAB_FROZEN_RERUNS && name.startsWith("lab:") && r.failure === `exit status ${LAB_FROZEN}`; rerun++) {
      frozenLabs.push(`${name}${label ? ` ${label}` : ""}`);
      process.stdout.write(`=== ${name}: the lab froze (tsvmm lab status ${LAB_FROZEN}) after ${seconds()} s; running ${label || "the tier"} again (${rerun} of ${LAB_FROZEN_RERUNS})\n`);
      r = await runStreaming(args, limitS, env);
    }
    if (cases) for (const line of r.stdout.split("\n").filter((l) => l.includes(linuxGuest().NESTED_STALL_MARK))) stalledGuests.push(`${label}: ${line.replace(/^\s*# /, "")}`);
    const count = (key) => {
      const m = [...r.stdout.matchAll(new RegExp(`^# ${key} (\\d+)$`, "gm"))];
      return m.length ? Number(m[m.length - 1][1]) : 0;
    };
    tally.passed += count("pass");
    tally.failed += count("fail") + count("cancelled");
    tally.skipped += count("skipped");
    if (r.failure) failures.push(`${label ? `${label}: ` : ""}${r.failure}`);
  }
  totals.passed += tally.passed;
  totals.failed += tally.failed;
  totals.skipped += tally.skipped;
  if (failures.length) {
    broken = true;
    process.stdout.write(`=== ${name}: FAILED (${failures.join("; ")}) after ${seconds()} s\n`);
  } else process.stdout.write(`=== ${name}: ${tally.passed} passed, ${tally.failed} failed, ${tally.skipped} skipped in ${seconds()} s\n`);
}

async function main() {
  const tiers = chosenTiers(process.argv.slice(2));
  ensurePackages(tiers);
  for (const t of tiers) await runTier(t);
  if (ci && totals.skipped > 0) {
    broken = true;
    process.stdout.write(`CI=true: ${totals.skipped} skipped tests count as failures\n`);
  }
  if (frozenLabs.length) process.stdout.write(`\nlabs that froze and ran again: ${frozenLabs.length} (${frozenLabs.join(", ")})\n`);
  if (stalledGuests.length) process.stdout.write(`\nguests that stalled in the nested stack and booted again: ${stalledGuests.length}\n${stalledGuests.map((s) => `  ${s}\n`).join("")}`);
  process.stdout.write(`\ntotal: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped\n`);
  process.exit(broken || totals.failed > 0 ? 1 : 0);
}

main();
