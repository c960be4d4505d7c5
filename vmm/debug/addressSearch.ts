// Address lookups over tables sorted by address (symbols, line ranges).

/** The last entry whose address (startOf) is at or below addr, or undefined */
export function lastAtOrBelow<T>(sorted: readonly T[], addr: bigint, startOf: (entry: T) => bigint): T | undefined {
  let lo = 0;
  let hi = sorted.length - 1;
  let found: T | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (startOf(sorted[mid]) <= addr) {
      found = sorted[mid];
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}
