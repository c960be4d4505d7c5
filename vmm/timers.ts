// Timers for limits of any length: Node's setTimeout holds at most 2^31-1 ms (about 24.8 days)
// and fires after 1 ms for anything longer, so longer limits are chained.

export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Milliseconds on the monotonic clock, for durations: as performance.now(), without the first
 *  use of the `performance` global loading perf_hooks (1-9 ms at start-up here). */
export const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export interface LongTimer {
  clear(): void;
}

/** Call `fn` once after `ms` milliseconds, however long that is. */
export function setLongTimeout(fn: () => void, ms: number): LongTimer {
  let handle: NodeJS.Timeout;
  const arm = (left: number) => {
    handle = left > MAX_TIMER_MS ? setTimeout(() => arm(left - MAX_TIMER_MS), MAX_TIMER_MS) : setTimeout(fn, left);
  };
  arm(ms);
  return { clear: () => clearTimeout(handle) };
}
