// A conversion done in one synchronous step under the page-state map's lock, and a guest's request
// answered that way with no event: the code the main thread's engine and the vCPU threads share
// (on the attributes backend a vCPU thread answers conversions itself; docs/exit-path.md).
import type { ApplyResult } from "./backend";
import type { CounterRow, Source } from "./counters";
import { ConversionRequest, firstPageOf, PageState, PageStateMap, Run, toPrivate, validateRequest, Validated } from "./pageState";
import { Errno } from "../kvm/uapi";
import { hex } from "../format";

/** What converting needs, on whichever thread converts */
export interface Converter {
  readonly map: PageStateMap;
  /** RAM below it is always shared and never converted (exact: RAM ends far below 2^53) */
  readonly sharedLimitNumber: number;
  /** The backend's apply: make the changed runs real in KVM and discard the side pages left */
  apply(changes: Run[]): ApplyResult;
  /** This thread's row of the tally */
  readonly counters: CounterRow;
}

/** What one conversion did: refused (nothing changed), or the pages that changed state */
export type Converted = { refused: string } | { refused?: undefined; changed: number; discarded: number };

export type Checked = Validated | { ok: false; errno: "EINVAL"; reason: string; alwaysShared: true };

/** A request checked against the map, and a conversion to private against the always-shared RAM */
export function checkRequest(map: PageStateMap, sharedLimit: bigint, r: ConversionRequest): Checked {
  const v = validateRequest(map, r);
  if (v.ok && intoAlwaysShared(v.to, Number(r.gpa), Number(sharedLimit)))
    return {
      ok: false,
      errno: "EINVAL",
      alwaysShared: true,
      reason: `[${hex(r.gpa)}, ...) reaches into the always-shared RAM below ${hex(sharedLimit)} (firmware, page tables, stacks, guest image)`,
    };
  return v;
}

/** A conversion to private that starts in the always-shared RAM: refused (numbers are exact here:
 *  a valid request lies inside RAM, far below 2^53) */
function intoAlwaysShared(to: PageState, gpa: number, sharedLimit: number): boolean {
  return to === "private" && gpa < sharedLimit;
}

export const NOTHING_CHANGED: Converted = Object.freeze({ changed: 0, discarded: 0 });

/** Set pages [first, first + count) to `to` in the map and in KVM, holding the map's lock; a
 *  refusal or an ioctl failure restores the map. */
export function convertLocked(c: Converter, first: number, count: number, to: PageState): Converted {
  c.map.lock();
  try {
    const changes = c.map.set(first, count, to);
    if (!changes.length) return NOTHING_CHANGED;
    let applied: ApplyResult;
    try {
      applied = c.apply(changes);
    } catch (err) {
      restore(c.map, changes, to); // the run then ends (70); its summary shows the map as it was
      throw err;
    }
    return settle(c, changes, to, applied);
  } finally {
    c.map.unlock();
  }
}

/** After the backend applied `changes`: count the conversion, or undo the map for a refusal. */
export function settle(c: Pick<Converter, "map" | "counters">, changes: Run[], to: PageState, applied: ApplyResult): Converted {
  if (applied.refused !== undefined) {
    restore(c.map, changes, to);
    return { refused: applied.refused };
  }
  c.counters.converted(applied.discarded);
  let changed = 0;
  for (const run of changes) changed += run.count;
  return { changed, discarded: applied.discarded };
}

export function restore(map: PageStateMap, changes: Run[], to: PageState): void {
  const back: PageState = to === "private" ? "shared" : "private";
  for (const run of changes) map.set(run.first, run.count, back);
}

/** The tally's keys of each source, made once (no string building per conversion) */
const OUTCOME_KEYS = new Map<Source, { private: string; shared: string; refused: string; denied: string }>();
export function outcomeKeys(source: Source) {
  let keys = OUTCOME_KEYS.get(source);
  if (!keys) OUTCOME_KEYS.set(source, (keys = { private: `${source}-to-private`, shared: `${source}-to-shared`, refused: `${source}-refused`, denied: `${source}-denied` }));
  return keys;
}

/**
 * A request answered in one step, counted and not reported (nobody listens, the policy is to
 * convert, the backend needs no quiesce). Returns the guest's value: 0, or EINVAL for any refusal
 * (KVM_HC_MAP_GPA_RANGE's one refusal: see ConversionEngine.request). In numbers (exits read them
 * with no BigInt, conversionExit.ts requestWord) and not timed: on some hosts (the nested lab's
 * HPET) two clock reads cost more than the rest of the conversion, so the tally's busy time covers
 * the conversions someone listened to.
 */
export function answerRequest(c: Converter, source: Source, gpa: number, pages: number, attrs: number): number {
  const keys = outcomeKeys(source);
  const first = firstPageOf(c.map, gpa, pages, attrs);
  const to: PageState = toPrivate(attrs) ? "private" : "shared";
  // checkRequest's refusals, without their reasons (nobody reads them here)
  const ok = first >= 0 && !intoAlwaysShared(to, gpa, c.sharedLimitNumber) && convertLocked(c, first, pages, to).refused === undefined;
  c.counters.count(ok ? keys[to] : keys.refused);
  return ok ? 0 : Errno.EINVAL;
}
