// A matrix run as JUnit XML, the form CI systems aggregate: one <testsuite> per entry, holding a
// "run" test case (the entry's verdict: exit status, time limit, faults) and one test case per
// test point the guest printed; the console goes to <system-out>, the run log to <system-err>. Pure.
import { MatrixSummary, printable } from "./report";
import type { EntryResult } from "./runner";
import type { TapPoint } from "./guestTap";

export function junitReport(results: EntryResult[], summary: MatrixSummary): string {
  const suites = results.map(suite);
  const sum = (k: keyof Counts) => suites.reduce((n, s) => n + s.counts[k], 0);
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<testsuites${attrs({ name: "tsvmm test", tests: sum("tests"), failures: sum("failures"), errors: 0, skipped: sum("skipped"), time: seconds(summary.seconds) })}>`,
    ...suites.map((s) => s.xml),
    `</testsuites>`,
    "",
  ].join("\n");
}

interface Counts {
  tests: number;
  failures: number;
  skipped: number;
}

function suite(r: EntryResult): { xml: string; counts: Counts } {
  const e = r.entry;
  const cases = [runCase(r), ...(r.tap?.points ?? []).map((p) => pointCase(e.name, p))];
  const counts = {
    tests: cases.length,
    failures: cases.filter((c) => c.outcome === "fail").length,
    skipped: cases.filter((c) => c.outcome === "skip").length,
  };
  const properties = { guest: e.guest, backend: e.backend, cpus: e.cpus, cmdline: e.cmdline, rep: e.rep, status: r.status, ...(r.trace ? { trace: r.trace } : {}) };
  const xml = [
    `  <testsuite${attrs({ name: e.name, tests: counts.tests, failures: counts.failures, errors: 0, skipped: counts.skipped, time: seconds(r.seconds) })}>`,
    `    <properties>`,
    ...Object.entries(properties).map(([name, value]) => `      <property${attrs({ name, value })}/>`),
    `    </properties>`,
    ...cases.map((c) => c.xml),
    r.console ? `    <system-out>${text(r.console)}</system-out>` : "",
    r.log.length ? `    <system-err>${text(r.log.join("\n"))}</system-err>` : "",
    `  </testsuite>`,
  ];
  return { xml: xml.filter(Boolean).join("\n"), counts };
}

type Case = { xml: string; outcome: "pass" | "fail" | "skip" };

function runCase(r: EntryResult): Case {
  const open = `    <testcase${attrs({ classname: r.entry.name, name: "run", time: seconds(r.seconds) })}`;
  if (r.outcome === "pass") return { xml: `${open}/>`, outcome: "pass" };
  if (r.outcome === "skip") return { xml: `${open}>\n      <skipped${attrs({ message: r.reason })}/>\n    </testcase>`, outcome: "skip" };
  const body = [r.reason, r.report, r.lastLine ? `last console line: ${r.lastLine}` : ""].filter(Boolean).join("\n");
  return { xml: `${open}>\n      <failure${attrs({ message: r.reason, type: `status ${r.status}` })}>${text(body)}</failure>\n    </testcase>`, outcome: "fail" };
}

function pointCase(classname: string, p: TapPoint): Case {
  const open = `    <testcase${attrs({ classname, name: `${p.number} ${p.description}`, time: "0" })}`;
  const notes = p.diagnostics.join("\n");
  if (p.directive?.kind === "SKIP" || (p.directive?.kind === "TODO" && !p.ok)) {
    const message = p.directive.kind === "TODO" ? `TODO${p.directive.reason ? `: ${p.directive.reason}` : ""}` : p.directive.reason;
    return { xml: `${open}>\n      <skipped${attrs({ message })}/>\n    </testcase>`, outcome: "skip" };
  }
  if (p.ok) return { xml: `${open}/>`, outcome: "pass" };
  return { xml: `${open}>\n      <failure${attrs({ message: `not ok ${p.number} - ${p.description}`, type: "guest test" })}>${text(notes)}</failure>\n    </testcase>`, outcome: "fail" };
}

const seconds = (s: number) => s.toFixed(3);

function text(s: string): string {
  return printable(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function attrs(values: Record<string, string | number>): string {
  return Object.entries(values)
    .map(([k, v]) => ` ${k}="${text(String(v)).replace(/"/g, "&quot;").replace(/\n/g, "&#10;").replace(/\t/g, "&#9;")}"`)
    .join("");
}
