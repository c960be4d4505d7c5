// The TAP a guest prints on its console (guest/include/tsvmm/tap.h), read back: the plan, the test
// points with their directives and diagnostics, and what is wrong with them. Pure.

export interface TapDirective {
  kind: "SKIP" | "TODO";
  reason: string;
}

export interface TapPoint {
  ok: boolean;
  /** As printed; the position (from 1) when the guest printed none */
  number: number;
  description: string;
  directive?: TapDirective;
  /** "# ..." lines that followed the point, without the "# " */
  diagnostics: string[];
}

export interface GuestTap {
  /** "1..N"; skip: "1..0 # SKIP why" */
  plan?: { count: number; skip?: string };
  points: TapPoint[];
  bailOut?: string;
  /** The TAP lines in the order printed (plan, points, diagnostics, bail out), for a report's subtest */
  lines: string[];
}

const PLAN = /^1\.\.(\d+)\s*(?:#\s*(.*))?$/;
const POINT = /^(not )?ok(?=\s|$)\s*(\d+)?\s*(?:-(?:\s+|$))?(.*)$/;
const DIRECTIVE = /(?:^|\s)#\s*(skip|todo)\S*\s*(.*)$/i;
const BAIL = /^Bail out!\s*(.*)$/;

/** The guest's TAP, or undefined when it printed none (no plan, no point, no bail out). */
export function parseGuestTap(console: string): GuestTap | undefined {
  const tap: GuestTap = { points: [], lines: [] };
  for (const raw of console.split("\n")) {
    const line = raw.replace(/\r$/, "");
    let m: RegExpExecArray | null;
    if ((m = PLAN.exec(line)) && !tap.plan) {
      const skip = m[2] && /^skip\S*\s*(.*)$/i.exec(m[2]);
      tap.plan = { count: Number(m[1]), skip: skip ? skip[1] : undefined };
    } else if ((m = POINT.exec(line))) {
      const rest = m[3];
      const d = DIRECTIVE.exec(rest);
      tap.points.push({
        ok: !m[1],
        number: m[2] === undefined ? tap.points.length + 1 : Number(m[2]),
        description: (d ? rest.slice(0, d.index) : rest).trim(),
        directive: d ? { kind: d[1].toUpperCase() as TapDirective["kind"], reason: d[2].trim() } : undefined,
        diagnostics: [],
      });
    } else if ((m = BAIL.exec(line))) tap.bailOut = m[1];
    else if (line.startsWith("#") && (tap.plan || tap.points.length)) tap.points.at(-1)?.diagnostics.push(line.replace(/^#\s?/, ""));
    else continue;
    tap.lines.push(line);
  }
  return tap.plan || tap.points.length || tap.bailOut !== undefined ? tap : undefined;
}

/** The points that fail (not ok, and not TODO) */
export function failedPoints(tap: GuestTap): TapPoint[] {
  return tap.points.filter((p) => !p.ok && p.directive?.kind !== "TODO");
}

/** What makes the guest's TAP a failure, in words; empty when it passes. */
export function tapProblems(tap: GuestTap): string[] {
  const problems: string[] = [];
  if (tap.bailOut !== undefined) problems.push(`the guest bailed out${tap.bailOut ? `: ${tap.bailOut}` : ""}`);
  const failed = failedPoints(tap);
  if (failed.length)
    problems.push(`${failed.length} of ${tap.points.length} guest test${tap.points.length === 1 ? "" : "s"} failed: ${failed.map((p) => `${p.number} (${p.description})`).join(", ")}`);
  if (!tap.plan) problems.push(`the guest printed ${tap.points.length} test point${tap.points.length === 1 ? "" : "s"} but no plan`);
  else if (tap.plan.count !== tap.points.length) problems.push(`the guest planned ${tap.plan.count} tests but ran ${tap.points.length}`);
  return problems;
}
