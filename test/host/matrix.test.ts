// `tsvmm test`: matrices of real guests on /dev/kvm, several VMs at once in one process, and
// what their TAP and JUnit reports say.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawn } from "node:child_process";
import { getEventListeners } from "node:events";
import { tsvmm, TSVMM } from "../support/cli";
import { requireKvm } from "../support/host";
import { parseXml, XmlElement } from "../support/xml";
import { parseGuestTap } from "../../vmm/matrix/guestTap";
import { expandMatrix } from "../../vmm/matrix/plan";
import { runMatrix } from "../../vmm/matrix/runner";
import { GuestRun, RunOptions, runGuest } from "../../vmm/run";
import { assessHost, probeHost } from "../../vmm/host/caps";

const T = { timeout: 120_000 };
const LIMIT = { limitMs: 110_000 };

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-matrix-"));
const children = (e: XmlElement, name: string) => e.children.filter((c) => c.name === name);

test("hello and smp --cpus 1,2: every entry passes; TAP carries hello's own tests as a subtest; JUnit agrees", T, async (t) => {
  if (!requireKvm(t)) return;
  const dir = tmp();
  const junit = path.join(dir, "report.xml");
  const r = await tsvmm(["test", "hello", "smp", "--cpus", "1,2", "--tap", "--junit", junit], LIMIT);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const lines = r.stdout.split("\n");
  assert.deepEqual(lines.slice(0, 2), ["TAP version 14", "1..4"]);
  const top = parseGuestTap(lines.filter((l) => !l.startsWith(" ")).join("\n"))!;
  assert.deepEqual(top.points.map((p) => [p.number, p.ok, p.description]), [
    [1, true, "hello cpus=1"],
    [2, true, "hello cpus=2"],
    [3, true, "smp cpus=1"],
    [4, true, "smp cpus=2"],
  ]);
  // hello's subtest is the guest's own TAP, as it printed it: 3 passing points
  for (const name of ["hello cpus=1", "hello cpus=2"]) {
    const at = lines.indexOf(`# Subtest: ${name}`);
    assert.ok(at >= 0, name);
    const sub = parseGuestTap(lines.slice(at + 1, at + 5).map((l) => l.replace(/^ {4}/, "")).join("\n"))!;
    assert.equal(sub.plan?.count, 3);
    assert.deepEqual(sub.points.map((p) => p.ok), [true, true, true]);
  }
  assert.ok(!lines.includes("# Subtest: smp cpus=1"), "smp prints no TAP, so it has no subtest");
  assert.match(r.stdout, /^# tests 4\n# pass 4\n# fail 0\n# skip 0\n# guest tests 6 \(0 failed, 0 skipped\)$/m);
  assert.match(r.stderr, /4 entries: 4 passed, 0 failed, 0 skipped in [\d.]+ s; guest tests: 6 of 6 passed/);

  const root = parseXml(fs.readFileSync(junit, "utf8"));
  assert.deepEqual([root.attrs.tests, root.attrs.failures, root.attrs.skipped], ["10", "0", "0"]);
  const suites = children(root, "testsuite");
  assert.deepEqual(suites.map((s) => [s.attrs.name, s.attrs.tests]), [["hello cpus=1", "4"], ["hello cpus=2", "4"], ["smp cpus=1", "1"], ["smp cpus=2", "1"]]);
  // each suite's console is its own VM's
  assert.match(children(suites[1], "system-out")[0].text, /booted on vCPU 0 of 2/);
  assert.match(children(suites[3], "system-out")[0].text, /all 2 vCPUs reported/);
  assert.doesNotMatch(children(suites[2], "system-out")[0].text, /of 2/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("a guest that hangs fails its own entry at its time limit, with registers; the rest of the matrix runs and passes", T, async (t) => {
  if (!requireKvm(t)) return;
  const r = await tsvmm(["test", "spin", "hello", "--timeout", "2", "--jobs", "2"], LIMIT);
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /^FAIL {2}spin {2}[\d.]+ s {2}timed out after 2 s \(--timeout\)$/m);
  assert.match(r.stdout, /^ {8}vCPU 0 registers \(64-bit long mode\):\n {10}rip=/m);
  assert.match(r.stdout, /last console line: "spinning"/);
  assert.match(r.stdout, /^PASS {2}hello {2}[\d.]+ s {2}guest exited with status 0 \(3\/3 guest tests ok\)$/m);
  assert.match(r.stdout, /^2 entries: 1 passed, 1 failed, 0 skipped in [\d.]+ s/m);
});

test("fault: each --cmdline is an entry; an exception fails it with status 71 and the firmware's report", T, async (t) => {
  if (!requireKvm(t)) return;
  const r = await tsvmm(["test", "fault", "--cmdline", "fault=ud", "--cmdline", "fault=pf", "--tap"], LIMIT);
  assert.equal(r.status, 1, r.stdout + r.stderr);
  const top = parseGuestTap(r.stdout.split("\n").filter((l) => !l.startsWith(" ")).join("\n"))!;
  assert.deepEqual(top.points.map((p) => [p.ok, p.description]), [
    [false, "fault cmdline=fault=ud"],
    [false, "fault cmdline=fault=pf"],
  ]);
  const blocks = r.stdout.split(/^not ok \d+ - /m).slice(1);
  assert.match(blocks[0], /^ {2}status: 71$/m);
  assert.match(blocks[0], /^ {2}cmdline: "fault=ud"$/m);
  assert.match(blocks[0], /^ {2}last_console_line: ".*exception 6 \(#UD\).*rip=0x/m);
  assert.match(blocks[1], /^ {2}last_console_line: ".*exception 14 \(#PF\).*cr2=0x100000000/m);
  assert.match(r.stdout, /^# fail 2$/m);
});

test("concurrent machines in one process keep their own console, time limit and trace", T, async (t) => {
  if (!requireKvm(t)) return;
  const dir = tmp();
  const entries = expandMatrix({ guests: ["smp", "hello"], backends: ["default"], cpus: [1, 2, 3], cmdlines: [""], repeat: 1 });
  let running = 0;
  let most = 0;
  const boot = async (opts: RunOptions): Promise<GuestRun> => {
    most = Math.max(most, ++running);
    try {
      return await runGuest(opts);
    } finally {
      running--;
    }
  };
  const results = await runMatrix(entries, { jobs: 3, timeout: 60, unsupported: "fail", traceDir: dir, boot });
  assert.equal(most, 3, "three VMs at once");
  for (const r of results) {
    const n = r.entry.cpus;
    assert.equal(r.outcome, "pass", `${r.entry.name}: ${r.reason}\n${r.console}`);
    if (r.entry.guest === "smp") {
      assert.match(r.console, new RegExp(`all ${n} vCPUs reported`));
      assert.equal((r.console.match(/^cpu \d+ of \d+ reporting\r?$/gm) ?? []).length, n, r.console);
      assert.doesNotMatch(r.console, new RegExp(`of (?!${n}\\b)\\d+ reporting`), "no other VM's lines");
    } else assert.match(r.console, new RegExp(`booted on vCPU 0 of ${n}\\r?\\n`));
    const events = fs.readFileSync(r.trace!, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual([events[0].kind, events[0].cpus], ["start", n], r.trace);
    assert.deepEqual([events.at(-1).kind, events.at(-1).status], ["end", 0]);
  }
  assert.equal(fs.readdirSync(dir).length, entries.length);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("one abort signal can serve many runGuest calls: each machine lets go of it when it finishes", T, async (t) => {
  if (!requireKvm(t)) return;
  const abort = new AbortController();
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on("warning", onWarning);
  try {
    for (let round = 0; round < 4; round++) {
      const runs = await Promise.all([1, 2, 3].map(() => runGuest({ guest: "hello", signal: abort.signal, timeout: 60 })));
      assert.deepEqual(runs.map((r) => r.status), [0, 0, 0]);
    }
    assert.equal(getEventListeners(abort.signal, "abort").length, 0);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(warnings.map((w) => w.name), []);
  } finally {
    process.off("warning", onWarning);
  }
});

test("SIGINT stops the running entries, starts no more, and exits 130", T, async (t) => {
  if (!requireKvm(t)) return;
  const dir = tmp();
  const child = spawn(process.execPath, [TSVMM, "test", "spin", "--repeat", "3", "--jobs", "2", "--timeout", "100", "--trace-dir", dir], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  child.stdout.on("data", (d) => (stdout += d));
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
  const limit = setTimeout(() => child.kill("SIGKILL"), 100_000);
  // both running VMs have written their start event: SIGINT reaches a running matrix
  while (fs.readdirSync(dir).filter((f) => fs.statSync(path.join(dir, f)).size > 0).length < 2) await new Promise((r) => setTimeout(r, 50));
  child.kill("SIGINT");
  const status = await closed;
  clearTimeout(limit);
  assert.equal(status, 130, stdout + stderr);
  assert.equal((stdout.match(/^FAIL {2}spin rep=[12] {2}[\d.]+ s {2}interrupted by SIGINT$/gm) ?? []).length, 2, stdout);
  assert.match(stdout, /^FAIL {2}spin rep=3 {2}0\.000 s {2}interrupted by SIGINT before it started$/m);
  assert.match(stdout, /^3 entries: 0 passed, 3 failed, 0 skipped/m);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("private-memory backends: run where KVM keeps pages private, else skipped with the reason (or failed with --unsupported fail)", T, async (t) => {
  if (!requireKvm(t)) return;
  const { backends } = assessHost(probeHost());
  const r = await tsvmm(["test", "convert", "--backend", "attributes,memslots", "--unsupported", "skip"], LIMIT);
  for (const b of ["attributes", "memslots"] as const) {
    const line = new RegExp(`^(PASS|SKIP) {2}convert backend=${b} {2}[\\d.]+ s {2}(.*)$`, "m").exec(r.stdout);
    assert.ok(line, r.stdout + r.stderr);
    if (backends[b].available) assert.equal(line[1], "PASS", line[0]);
    else {
      assert.equal(line[1], "SKIP", line[0]);
      assert.match(line[2], new RegExp(`private memory is not available here: --backend ${b}`));
    }
  }
  assert.equal(r.status, 0, r.stdout + r.stderr);
  if (backends.attributes.available && backends.memslots.available) return;
  const strict = await tsvmm(["test", "convert", "--backend", "attributes,memslots", "--unsupported", "fail"], LIMIT);
  assert.equal(strict.status, 1, strict.stdout + strict.stderr);
  assert.match(strict.stdout, /^FAIL {2}convert backend=(attributes|memslots) .*private memory is not available here/m);
});

test("bad input is refused before any guest starts, naming the option (64) or the image (65)", T, async () => {
  const cases: Array<[string[], number, RegExp]> = [
    [["test", "hello", "--cpus", "0,1"], 64, /--cpus "0,1" is out of range \(0\)\n {2}hint: .*1,2,4/],
    [["test", "hello", "--backend", "sev"], 64, /--backend "sev": "sev" is not a backend/],
    [["test", "hello", "--mem", "1K"], 64, /--mem 1024 bytes is out of range/],
    [["test", "hello", "--jobs", "0"], 64, /--jobs 0 is out of range/],
    [["test", "hello", "--cmdline", "x".repeat(5000)], 64, /--cmdline is 5000 bytes/],
    [["test", "hello", "no-such-guest"], 65, /no-such-guest: is not a shipped guest .*nothing was started/],
    [["test", "hello", "--junit", "/nonexistent-dir/report.xml"], 64, /--junit \/nonexistent-dir\/report.xml: cannot open for writing \(ENOENT\)/],
    [["test"], 64, /Not enough non-option arguments/],
    [["test", "hello", "smp", "hello"], 64, /names "hello" twice\n {2}hint: .*--repeat/],
  ];
  for (const [args, status, pattern] of cases) {
    const r = await tsvmm(args);
    assert.equal(r.status, status, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, pattern, args.join(" "));
    assert.equal(r.stdout, "", "nothing ran");
  }
});

test("test --help teaches the axes, the reports and the exit statuses", T, async () => {
  const r = await tsvmm(["test", "--help"]);
  assert.equal(r.status, 0);
  for (const s of ["--backend", "--cpus", "--cmdline", "--repeat", "--jobs", "--timeout", "--tap", "--junit", "--trace-dir", "--unsupported", "1..0 # SKIP", "1 some entry failed", "SIGINT (130)", "tsvmm lab -- tsvmm test"])
    assert.ok(r.stdout.includes(s), s);
  const top = await tsvmm(["--help"]);
  assert.match(top.stdout, /test <guests\.\.>/);
});
