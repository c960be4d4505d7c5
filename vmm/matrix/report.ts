// What every report of a matrix run shares: the totals and text made safe to embed. Pure.
import type { EntryResult } from "./runner";

export interface MatrixSummary {
  total: number;
  passed: number;
  failed: number;
  skipped: number;
  /** Wall time of the whole run */
  seconds: number;
  /** Guest test points, added up over the entries that printed TAP */
  guestTests: { total: number; failed: number; skipped: number };
}

export function summarize(results: EntryResult[], seconds: number): MatrixSummary {
  const count = (o: EntryResult["outcome"]) => results.filter((r) => r.outcome === o).length;
  const points = results.flatMap((r) => r.tap?.points ?? []);
  return {
    total: results.length,
    passed: count("pass"),
    failed: count("fail"),
    skipped: count("skip"),
    seconds,
    guestTests: {
      total: points.length,
      failed: points.filter((p) => !p.ok && p.directive?.kind !== "TODO").length,
      skipped: points.filter((p) => p.directive?.kind === "SKIP").length,
    },
  };
}

/** One line: "12 entries: 10 passed, 1 failed, 1 skipped in 1.234 s" (and the guests' own tests) */
export function summaryLine(s: MatrixSummary): string {
  const guests = s.guestTests.total ? `; guest tests: ${s.guestTests.total - s.guestTests.failed} of ${s.guestTests.total} passed` : "";
  return `${s.total} ${s.total === 1 ? "entry" : "entries"}: ${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped in ${s.seconds.toFixed(3)} s${guests}`;
}

// C0 controls other than tab and newline, DEL, unpaired surrogates and the two non-characters:
// neither YAML nor XML can carry them, so they are shown as escapes.
const UNPRINTABLE = /[\x00-\x08\x0b-\x1f\x7f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** Text a report can embed as is: CRLF as LF, other control characters as \xNN / \uNNNN */
export function printable(text: string): string {
  return text.replace(/\r\n/g, "\n").replace(UNPRINTABLE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

/** The last `lines` non-empty lines of a console */
export function consoleTail(text: string, lines = 20): string {
  return text
    .replace(/\r\n/g, "\n")
    .split("\n")
    .filter((l) => l.trim())
    .slice(-lines)
    .join("\n");
}
