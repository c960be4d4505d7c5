// The test matrix without KVM: expansion and list parsing, reading a guest's TAP, judging runs,
// the scheduling of runMatrix (with a stand-in boot), and the TAP and JUnit writers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { expandMatrix, parseBackendList, parseCountList, privateRequestFor } from "../../vmm/matrix/plan";
import { parseGuestTap, tapProblems } from "../../vmm/matrix/guestTap";
import { EntryResult, judgeError, judgeRun, runMatrix, stopRequestOf } from "../../vmm/matrix/runner";
import { printable, summarize, summaryLine } from "../../vmm/matrix/report";
import { tapEntry, tapFooter, tapHeader } from "../../vmm/matrix/tapReport";
import { junitReport } from "../../vmm/matrix/junit";
import { ExitStatus, TsvmmError, UsageError } from "../../vmm/errors";
import { CLI_FLAGS } from "../../vmm/cli/flags";
import type { GuestRun, RunOptions } from "../../vmm/run";
import { parseXml, XmlElement } from "../support/xml";

test("the matrix is every combination, guest outermost, repetition innermost", () => {
  const e = expandMatrix({ guests: ["hello", "smp"], backends: ["default", "shared"], cpus: [1, 2], cmdlines: [""], repeat: 2 });
  assert.equal(e.length, 2 * 2 * 2 * 2);
  assert.deepEqual(e.map((x) => x.index), [...Array(16).keys()]);
  assert.deepEqual(
    e.slice(0, 5).map((x) => x.name),
    ["hello backend=default cpus=1 rep=1", "hello backend=default cpus=1 rep=2", "hello backend=default cpus=2 rep=1", "hello backend=default cpus=2 rep=2", "hello backend=shared cpus=1 rep=1"],
  );
  assert.equal(e[15].name, "smp backend=shared cpus=2 rep=2");
  assert.deepEqual({ ...e[15], name: undefined, index: undefined }, { name: undefined, index: undefined, guest: "smp", backend: "shared", cpus: 2, cmdline: "", rep: 2 });
  assert.equal(new Set(e.map((x) => x.name)).size, e.length, "names are unique");
});

test("axes left at their default stay out of the names; command lines are quoted when needed", () => {
  assert.deepEqual(expandMatrix({ guests: ["hello", "fault"], backends: ["default"], cpus: [1], cmdlines: [""], repeat: 1 }).map((x) => x.name), ["hello", "fault"]);
  const c = expandMatrix({ guests: ["fault"], backends: ["default"], cpus: [1], cmdlines: ["fault=pf", "a b", ""], repeat: 1 });
  assert.deepEqual(c.map((x) => x.name), ["fault cmdline=fault=pf", 'fault cmdline="a b"', 'fault cmdline=""']);
  assert.deepEqual(c.map((x) => x.cmdline), ["fault=pf", "a b", ""]);
  assert.deepEqual(expandMatrix({ guests: ["smp"], backends: ["default"], cpus: [4], cmdlines: [""], repeat: 1 })[0].name, "smp cpus=4");
  assert.deepEqual(expandMatrix({ guests: [], backends: ["default"], cpus: [1], cmdlines: [""], repeat: 3 }), []);
  assert.throws(() => expandMatrix({ guests: ["hello", "smp", "hello"], backends: ["default"], cpus: [1], cmdlines: [""], repeat: 1 }), /the guest list names "hello" twice/);
  assert.throws(() => expandMatrix({ guests: ["fault"], backends: ["default"], cpus: [1], cmdlines: ["a", "a"], repeat: 1 }), /the command-line list names "a" twice/);
});

test("backends map to private-memory requests", () => {
  assert.deepEqual(privateRequestFor("default"), {});
  assert.deepEqual(privateRequestFor("shared"), { private: "none" });
  assert.deepEqual(privateRequestFor("attributes"), { backend: "attributes" });
  assert.deepEqual(privateRequestFor("memslots"), { backend: "memslots" });
});

test("count lists take numbers and ranges and refuse the rest, naming the option", () => {
  assert.deepEqual(parseCountList("--cpus", "1,2,4", 1, 8), [1, 2, 4]);
  assert.deepEqual(parseCountList("--cpus", "1-4", 1, 8), [1, 2, 3, 4]);
  assert.deepEqual(parseCountList("--cpus", " 2 , 5-6", 1, 8), [2, 5, 6]);
  const bad: Array<[string, RegExp]> = [
    ["0,1", /--cpus "0,1" is out of range \(0\)/],
    ["1,9", /out of range \(9\)/],
    ["4-2", /runs backwards \(4-2\)/],
    ["1,x", /is not a list of counts \(at "x"\)/],
    ["", /is not a list of counts/],
    ["1,1", /names 1 twice/],
    ["1-3,2", /names 2 twice/],
  ];
  for (const [text, pattern] of bad) {
    assert.throws(() => parseCountList("--cpus", text, 1, 8), (err: unknown) => {
      assert.ok(err instanceof UsageError, text);
      assert.match(err.message, pattern);
      assert.match(err.hint!, /e\.g\. --cpus 1,2,4/);
      return true;
    });
  }
});

test("backend lists take the four backends once each", () => {
  assert.deepEqual(parseBackendList("--backend", "attributes,memslots"), ["attributes", "memslots"]);
  assert.deepEqual(parseBackendList("--backend", "Shared, default"), ["shared", "default"]);
  assert.throws(() => parseBackendList("--backend", "attributes,sev"), /--backend "attributes,sev": "sev" is not a backend/);
  assert.throws(() => parseBackendList("--backend", "memslots,memslots"), /names memslots twice/);
});

const HELLO_TAP = [
  "tsvmm hello: booted on vCPU 0 of 1",
  "ok, that line is not TAP",
  "1..4",
  "ok 1 - boot page is sane",
  "not ok 2 - vCPU index matches",
  "#   first failure: gs says 3",
  "ok 3 - # SKIP no shared bit",
  "not ok 4 - conversions # TODO not written yet",
  "some other output",
].join("\r\n");

test("a guest's TAP is read back: plan, points, directives, diagnostics; other lines are not TAP", () => {
  const tap = parseGuestTap(HELLO_TAP)!;
  assert.deepEqual(tap.plan, { count: 4, skip: undefined });
  assert.deepEqual(
    tap.points.map((p) => [p.ok, p.number, p.description, p.directive?.kind, p.directive?.reason]),
    [
      [true, 1, "boot page is sane", undefined, undefined],
      [false, 2, "vCPU index matches", undefined, undefined],
      [true, 3, "", "SKIP", "no shared bit"],
      [false, 4, "conversions", "TODO", "not written yet"],
    ],
  );
  assert.deepEqual(tap.points[1].diagnostics, ["  first failure: gs says 3"]);
  assert.deepEqual(tap.lines, ["1..4", "ok 1 - boot page is sane", "not ok 2 - vCPU index matches", "#   first failure: gs says 3", "ok 3 - # SKIP no shared bit", "not ok 4 - conversions # TODO not written yet"]);
  assert.deepEqual(tapProblems(tap), ["1 of 4 guest tests failed: 2 (vCPU index matches)"]);

  assert.equal(parseGuestTap("spinning\n"), undefined);
  const skipAll = parseGuestTap("implicit: hi\n1..0 # SKIP needs a shared-bit layout\n")!;
  assert.deepEqual(skipAll.plan, { count: 0, skip: "needs a shared-bit layout" });
  assert.deepEqual(tapProblems(skipAll), []);
  assert.deepEqual(tapProblems(parseGuestTap("1..3\nok 1 - a\nok 2 - b\n")!), ["the guest planned 3 tests but ran 2"]);
  assert.deepEqual(tapProblems(parseGuestTap("ok 1 - a\n")!), ["the guest printed 1 test point but no plan"]);
  assert.deepEqual(tapProblems(parseGuestTap("1..2\nok 1 - a\nBail out! no RAM\n")!), ["the guest bailed out: no RAM", "the guest planned 2 tests but ran 1"]);
  const unnumbered = parseGuestTap("1..2\nok - first\nnot ok\n")!;
  assert.deepEqual(unnumbered.points.map((p) => [p.number, p.ok, p.description]), [[1, true, "first"], [2, false, ""]]);
});

const run = (status: number, console: string, reason = `guest exited with status ${status}`) => ({ status, reason, console, report: undefined });

test("a run passes on status 0, fails on any other, and the guest's TAP can fail or skip it", () => {
  assert.equal(judgeRun(run(0, "1..1\nok 1 - a\n")).outcome, "pass");
  assert.equal(judgeRun(run(0, "no tap at all\n")).outcome, "pass");
  const failed = judgeRun(run(1, "1..2\nok 1 - a\nnot ok 2 - b\n"));
  assert.equal(failed.outcome, "fail");
  assert.equal(failed.status, 1);
  assert.equal(failed.reason, "guest exited with status 1; 1 of 2 guest tests failed: 2 (b)");
  const lying = judgeRun(run(0, "1..2\nok 1 - a\nnot ok 2 - b\n"));
  assert.equal(lying.outcome, "fail");
  assert.match(lying.reason, /^guest exited with status 0, but 1 of 2 guest tests failed/);
  const short = judgeRun(run(0, "1..3\nok 1 - a\n"));
  assert.equal(short.outcome, "fail");
  assert.match(short.reason, /planned 3 tests but ran 1/);
  const skipped = judgeRun(run(0, "1..0 # SKIP the VMM offers no private memory\n"));
  assert.deepEqual([skipped.outcome, skipped.reason], ["skip", "the VMM offers no private memory"]);
  const timedOut = judgeRun({ status: 124, reason: "timed out after 2 s (--timeout)", console: "spinning\n", report: "  vCPU 0 registers" });
  assert.deepEqual([timedOut.outcome, timedOut.status, timedOut.report], ["fail", 124, "  vCPU 0 registers"]);
});

test("errors: an unsupported host skips or fails as asked; others fail with their status", () => {
  const unsupported = new TsvmmError("private memory is not available here: {backend} memslots: kvm_pvm", ExitStatus.HOST_UNSUPPORTED, "run it in the nested lab");
  const skip = judgeError(unsupported, "skip", CLI_FLAGS);
  assert.deepEqual(skip, { outcome: "skip", status: 69, reason: "private memory is not available here: --backend memslots: kvm_pvm", report: "hint: run it in the nested lab" });
  assert.equal(judgeError(unsupported, "fail").outcome, "fail");
  assert.match(judgeError(unsupported, "fail").reason, /privateMemory\.backend memslots/);
  const usage = judgeError(new UsageError("{memSize} 1 bytes is out of range"), "skip", CLI_FLAGS);
  assert.deepEqual([usage.outcome, usage.status, usage.reason], ["fail", 64, "--mem 1 bytes is out of range"]);
  const internal = judgeError(new Error("boom"), "skip");
  assert.deepEqual([internal.outcome, internal.status, internal.reason], ["fail", 70, "internal error: boom"]);
  assert.match(internal.report!, /boom/);
});

/** A stand-in for runGuest: resolves after `ms` with `status`, or with 130 when aborted */
function fakeBoot(plan: (opts: RunOptions) => { ms: number; status: number; console?: string }, seen: { running: number; max: number; opts: RunOptions[] }) {
  return (opts: RunOptions): Promise<GuestRun> => {
    seen.opts.push(opts);
    seen.running++;
    seen.max = Math.max(seen.max, seen.running);
    const { ms, status, console = "" } = plan(opts);
    return new Promise((resolve) => {
      const done = (s: number, reason: string) => {
        seen.running--;
        clearTimeout(timer);
        resolve({ status: s, reason, seconds: ms / 1000, console, lastLine: "", exits: { total: 0, native: 0, typescript: 0 }, ramBacking: "guest_memfd" });
      };
      const timer = setTimeout(() => done(status, `guest exited with status ${status}`), ms);
      opts.signal?.addEventListener("abort", () => {
        const stop = stopRequestOf(opts.signal!);
        done(stop.status, stop.reason);
      });
    });
  };
}

test("runMatrix keeps `jobs` entries running, passes each its settings, returns results in matrix order", async () => {
  const entries = expandMatrix({ guests: ["a", "b", "c"], backends: ["default", "memslots"], cpus: [1, 3], cmdlines: ["x=1"], repeat: 1 });
  const seen = { running: 0, max: 0, opts: [] as RunOptions[] };
  const finished: string[] = [];
  const results = await runMatrix(entries, {
    jobs: 3,
    timeout: 7,
    unsupported: "skip",
    // the first entries take longest, so they finish out of order
    boot: fakeBoot((o) => ({ ms: o.guest === "a" ? 40 : 5, status: o.guest === "c" && o.cpus === 3 ? 2 : 0, console: `${o.guest}\n1..1\nok 1 - fine\n` }), seen),
    onResult: (r) => finished.push(r.entry.name),
  });
  assert.equal(seen.max, 3);
  assert.equal(seen.opts.length, 12);
  assert.deepEqual(results.map((r) => r.entry.index), [...Array(12).keys()]);
  assert.notDeepEqual(finished, results.map((r) => r.entry.name), "onResult sees them as they finish");
  const o = seen.opts[3];
  assert.deepEqual([o.guest, o.cpus, o.cmdline, o.timeout, o.console, o.privateMemory], ["a", 3, "x=1", 7, "capture", { backend: "memslots" }]);
  assert.deepEqual(results.map((r) => r.outcome), ["pass", "pass", "pass", "pass", "pass", "pass", "pass", "pass", "pass", "fail", "pass", "fail"]);
  assert.equal(results[9].entry.name, "c backend=default cpus=3 cmdline=x=1");
  assert.ok(results.every((r) => r.tap?.points.length === 1 && r.console.startsWith(r.entry.guest)));
  const s = summarize(results, 1.5);
  assert.deepEqual([s.total, s.passed, s.failed, s.skipped, s.guestTests.total], [12, 10, 2, 0, 12]);
  assert.equal(summaryLine(s), "12 entries: 10 passed, 2 failed, 0 skipped in 1.500 s; guest tests: 12 of 12 passed");
});

test("aborting stops the running entries with the stop's status and starts no more; each entry has its own signal", async () => {
  const entries = expandMatrix({ guests: ["g"], backends: ["default"], cpus: [1], cmdlines: [""], repeat: 5 });
  for (const [reason, status, why] of [
    [undefined, 130, "interrupted"],
    [{ status: 143, reason: "interrupted by SIGTERM" }, 143, "interrupted by SIGTERM"],
  ] as const) {
    const seen = { running: 0, max: 0, opts: [] as RunOptions[] };
    const abort = new AbortController();
    setTimeout(() => abort.abort(reason), 20);
    const results = await runMatrix(entries, { jobs: 2, timeout: 0, unsupported: "skip", signal: abort.signal, boot: fakeBoot(() => ({ ms: 10_000, status: 0 }), seen) });
    assert.equal(seen.opts.length, 2, "two started");
    assert.notEqual(seen.opts[0].signal, abort.signal);
    assert.deepEqual(results.map((r) => [r.status, r.reason]), [
      [status, why],
      [status, why],
      [status, `${why} before it started`],
      [status, `${why} before it started`],
      [status, `${why} before it started`],
    ]);
    assert.ok(results.every((r) => r.outcome === "fail"));
  }
});

test("printable text: CRLF becomes LF, control characters become escapes", () => {
  assert.equal(printable("a\r\nb\tc\x1b[1m\x00\x7f\ufffe"), "a\nb\tc\\x1b[1m\\x00\\x7f\\ufffe");
  assert.equal(printable("\ud800x \ud83d\ude00"), "\\ud800x \ud83d\ude00");
});

function result(over: Partial<EntryResult> & { name: string }): EntryResult {
  const [guest] = over.name.split(" ");
  return {
    entry: { index: 0, name: over.name, guest, backend: "default", cpus: 1, cmdline: "", rep: 1 },
    outcome: "pass",
    status: 0,
    reason: "guest exited with status 0",
    seconds: 0.0521,
    console: "",
    lastLine: "",
    log: [],
    ...over,
  };
}

const GUEST_CONSOLE = "banner \x1b[31mred\x1b[0m <&>\n1..2\nok 1 - sane <page> & \"quotes\"\nnot ok 2 - broken\n# why: \x01 it broke\n";

const sample = (): EntryResult[] => [
  result({ name: "hello", console: "1..1\nok 1 - fine\n", tap: parseGuestTap("1..1\nok 1 - fine\n") }),
  result({
    name: "weird cmdline=\"a#b\"",
    outcome: "fail",
    status: 1,
    reason: "guest exited with status 1; 1 of 2 guest tests failed: 2 (broken)",
    report: "  vCPU 0 registers (64-bit long mode):\n    rip=0000000000100069",
    lastLine: "# why: \x01 it broke",
    console: GUEST_CONSOLE,
    log: ["RAM 64 MiB: guest_memfd"],
    tap: parseGuestTap(GUEST_CONSOLE),
  }),
  result({ name: "convert backend=memslots", outcome: "skip", status: 69, reason: "private memory is not available here: --backend memslots", report: "hint: run it in the nested lab" }),
];

test("the TAP report: plan, one point per entry with the guest's TAP as its subtest, YAML details, totals", () => {
  const results = sample();
  const text = tapHeader(3) + results.map((r, i) => tapEntry(r, i + 1)).join("") + tapFooter(summarize(results, 2));
  const lines = text.split("\n");
  assert.deepEqual(lines.slice(0, 2), ["TAP version 14", "1..3"]);
  // the top level read back with the guest TAP reader: three points, in order, with the right verdicts
  const top = parseGuestTap(lines.filter((l) => !l.startsWith(" ")).join("\n"))!;
  assert.deepEqual(top.points.map((p) => [p.number, p.ok, p.description, p.directive?.kind]), [
    [1, true, "hello", undefined],
    [2, false, 'weird cmdline="a\\#b"', undefined],
    [3, true, "convert backend=memslots", "SKIP"],
  ]);
  assert.deepEqual(tapProblems(top), ["1 of 3 guest tests failed: 2 (weird cmdline=\"a\\#b\")"]);
  // each subtest is the guest's own TAP, indented four spaces, before its parent point
  const sub = lines.indexOf("# Subtest: weird cmdline=\"a#b\"");
  assert.ok(sub > 0 && lines[sub + 1] === "    1..2" && lines[sub + 4] === "    # why: \\x01 it broke" && lines[sub + 5].startsWith("not ok 2 - "));
  assert.equal(lines.filter((l) => l.startsWith("# Subtest")).length, 2, "no subtest for an entry without guest TAP");
  // YAML: scalars as JSON strings, multi-line text as literal blocks, with an indentation indicator
  // where the first line starts with a space, and no raw control characters anywhere
  assert.ok(lines.includes('  reason: "guest exited with status 1; 1 of 2 guest tests failed: 2 (broken)"'));
  const report = lines.indexOf("  report: |2-");
  assert.deepEqual(lines.slice(report + 1, report + 3), ["      vCPU 0 registers (64-bit long mode):", "        rip=0000000000100069"]);
  assert.ok(lines.includes('  last_console_line: "# why: \\\\x01 it broke"'));
  assert.ok(lines.includes("  console_tail: |-") && lines.includes("    banner \\x1b[31mred\\x1b[0m <&>"));
  assert.ok(!/[\x00-\x08\x0b-\x1f]/.test(text));
  assert.ok(lines.includes("ok 3 - convert backend=memslots # SKIP private memory is not available here: --backend memslots"));
  assert.deepEqual(lines.slice(-8, -1), ["  ...", "# tests 3", "# pass 1", "# fail 1", "# skip 1", "# guest tests 3 (1 failed, 0 skipped)", "# duration_ms 2000.0"]);
  // every YAML block opens and closes
  assert.equal(lines.filter((l) => l === "  ---").length, 3);
  assert.equal(lines.filter((l) => l === "  ...").length, 3);
});

test("the JUnit report parses as XML and carries every entry, test point, verdict and output", () => {
  const results = sample();
  const xml = junitReport(results, summarize(results, 2));
  const root = parseXml(xml);
  assert.equal(root.name, "testsuites");
  assert.deepEqual(pick(root.attrs, ["name", "tests", "failures", "errors", "skipped", "time"]), { name: "tsvmm test", tests: "6", failures: "2", errors: "0", skipped: "1", time: "2.000" });
  const suites = children(root, "testsuite");
  assert.deepEqual(suites.map((s) => s.attrs.name), ["hello", 'weird cmdline="a#b"', "convert backend=memslots"]);
  assert.deepEqual(suites.map((s) => pick(s.attrs, ["tests", "failures", "skipped", "time"])), [
    { tests: "2", failures: "0", skipped: "0", time: "0.052" },
    { tests: "3", failures: "2", skipped: "0", time: "0.052" },
    { tests: "1", failures: "0", skipped: "1", time: "0.052" },
  ]);
  const props = Object.fromEntries(children(children(suites[1], "properties")[0], "property").map((p) => [p.attrs.name, p.attrs.value]));
  assert.deepEqual(props, { guest: "weird", backend: "default", cpus: "1", cmdline: "", rep: "1", status: "1" });

  const cases = children(suites[1], "testcase");
  assert.deepEqual(cases.map((c) => [c.attrs.classname, c.attrs.name]), [
    ['weird cmdline="a#b"', "run"],
    ['weird cmdline="a#b"', '1 sane <page> & "quotes"'],
    ['weird cmdline="a#b"', "2 broken"],
  ]);
  const runFailure = children(cases[0], "failure")[0];
  assert.deepEqual(pick(runFailure.attrs, ["message", "type"]), { message: "guest exited with status 1; 1 of 2 guest tests failed: 2 (broken)", type: "status 1" });
  assert.match(runFailure.text, /vCPU 0 registers \(64-bit long mode\):\n    rip=0000000000100069\nlast console line: # why: \\x01 it broke$/);
  assert.equal(children(cases[1], "failure").length, 0);
  const pointFailure = children(cases[2], "failure")[0];
  assert.deepEqual(pick(pointFailure.attrs, ["message", "type"]), { message: "not ok 2 - broken", type: "guest test" });
  assert.equal(pointFailure.text, "why: \\x01 it broke");
  assert.equal(children(suites[1], "system-out")[0].text, GUEST_CONSOLE.replace("\x1b[31m", "\\x1b[31m").replace("\x1b[0m", "\\x1b[0m").replace("\x01", "\\x01"));
  assert.equal(children(suites[1], "system-err")[0].text, "RAM 64 MiB: guest_memfd");

  const skipped = children(children(suites[2], "testcase")[0], "skipped")[0];
  assert.equal(skipped.attrs.message, "private memory is not available here: --backend memslots");
  assert.equal(children(suites[0], "system-err").length, 0, "no empty system-err");
});

test("JUnit attributes keep newlines, tabs and quotes", () => {
  const r = result({ name: "x", outcome: "fail", status: 124, reason: "line one\n\tline \"two\"" });
  const root = parseXml(junitReport([r], summarize([r], 0)));
  const failure = children(children(children(root, "testsuite")[0], "testcase")[0], "failure")[0];
  assert.equal(failure.attrs.message, "line one\n\tline \"two\"");
});

function children(e: XmlElement, name: string): XmlElement[] {
  return e.children.filter((c) => c.name === name);
}
function pick(o: Record<string, string>, keys: string[]): Record<string, string> {
  return Object.fromEntries(keys.map((k) => [k, o[k]]));
}
