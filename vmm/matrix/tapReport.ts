// A matrix run as TAP version 14: one test point per entry, in matrix order, with the guest's own
// TAP as its subtest and a YAML block (status, reason, time; registers and console for failures),
// then the totals as comments. Pure: each function returns the text to write.
import { consoleTail, MatrixSummary, printable } from "./report";
import type { EntryResult } from "./runner";

export function tapHeader(entries: number): string {
  return `TAP version 14\n1..${entries}\n`;
}

/** The lines of entry `number` (from 1): "# Subtest" with the guest's TAP indented, the point, its YAML */
export function tapEntry(result: EntryResult, number: number): string {
  const name = escapeDescription(result.entry.name);
  const out: string[] = [];
  if (result.tap?.lines.length) {
    out.push(`# Subtest: ${printable(result.entry.name).replace(/\n/g, " ")}`);
    for (const line of result.tap.lines) out.push(`    ${printable(line)}`);
  }
  const directive = result.outcome === "skip" ? ` # SKIP ${printable(result.reason).replace(/\n/g, " ")}` : "";
  out.push(`${result.outcome === "fail" ? "not ok" : "ok"} ${number} - ${name}${directive}`);
  out.push("  ---", ...yaml(details(result), "  "), "  ...");
  return out.join("\n") + "\n";
}

export function tapFooter(s: MatrixSummary): string {
  return [
    `# tests ${s.total}`,
    `# pass ${s.passed}`,
    `# fail ${s.failed}`,
    `# skip ${s.skipped}`,
    `# guest tests ${s.guestTests.total} (${s.guestTests.failed} failed, ${s.guestTests.skipped} skipped)`,
    `# duration_ms ${(s.seconds * 1000).toFixed(1)}`,
  ].join("\n") + "\n";
}

function details(r: EntryResult): Array<[string, string | number]> {
  const e = r.entry;
  const d: Array<[string, string | number]> = [
    ["duration_ms", +(r.seconds * 1000).toFixed(1)],
    ["guest", e.guest],
    ["backend", e.backend],
    ["cpus", e.cpus],
    ["status", r.status],
    ["reason", r.reason],
  ];
  if (e.cmdline) d.splice(4, 0, ["cmdline", e.cmdline]);
  if (r.trace) d.push(["trace", r.trace]);
  if (r.outcome === "fail") {
    if (r.report) d.push(["report", r.report]);
    if (r.lastLine) d.push(["last_console_line", r.lastLine]);
    const tail = consoleTail(r.console);
    if (tail) d.push(["console_tail", tail]);
    if (r.log.length) d.push(["log", r.log.join("\n")]);
  }
  return d;
}

/** key: value lines; strings as JSON (valid YAML double-quoted scalars), multi-line ones as literal blocks */
function yaml(fields: Array<[string, string | number]>, indent: string): string[] {
  const out: string[] = [];
  for (const [key, value] of fields) {
    if (typeof value === "number") out.push(`${indent}${key}: ${value}`);
    else if (!value.includes("\n")) out.push(`${indent}${key}: ${JSON.stringify(printable(value))}`);
    else {
      const lines = printable(value).split("\n");
      // an indentation indicator when the first line starts with a space (YAML would take its indent for the block's)
      out.push(`${indent}${key}: |${lines[0].startsWith(" ") ? "2" : ""}-`);
      for (const line of lines) out.push(line ? `${indent}  ${line}` : "");
    }
  }
  return out;
}

/** A TAP description may not contain an unescaped # (it starts a directive) nor a line break */
function escapeDescription(text: string): string {
  return printable(text).replace(/\n/g, " ").replace(/\\/g, "\\\\").replace(/#/g, "\\#");
}
