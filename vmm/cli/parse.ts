// Parsers for command-line values. Each throws UsageError naming the option, repeating what was
// typed, and giving the accepted form.
import { UsageError } from "../errors";

const UNITS: Record<string, bigint> = { B: 1n, K: 1n << 10n, M: 1n << 20n, G: 1n << 30n, T: 1n << 40n };

/** A value as the user typed it, for messages (yargs turns "abc" into NaN for typed numbers, so
 *  the options parsed here are declared without a yargs type). */
function typed(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

/**
 * A size in bytes: a bare number means MiB (as QEMU's -m); K, M, G, T (powers of 1024, optionally
 * followed by B or iB) and B (bytes) say otherwise; a 0x number is bytes (an address).
 * "64" and "64M" -> 64 MiB, "2GiB", "512K", "4096B", "0x200000".
 */
export function parseSize(option: string, value: unknown): bigint {
  const text = String(value).trim();
  if (/^0x[0-9a-f]+$/i.test(text)) return BigInt(text);
  const m = /^(\d+)\s*(?:([KMGT])(?:i?B)?|(B))?$/i.exec(text);
  if (!m)
    throw new UsageError(
      `${option} ${typed(value)} is not a size`,
      `a bare number is MiB; or use a suffix: K, M, G, T (powers of 1024) or B (bytes); e.g. ${option} 64 or ${option} 1G`,
    );
  return BigInt(m[1]) * UNITS[(m[2] ?? m[3] ?? "M").toUpperCase()];
}

export function parseCount(option: string, value: unknown, min: number, max: number, hint = `use a whole number from ${min} to ${max}`): number {
  const n = typeof value === "number" ? value : /^\s*\d+\s*$/.test(String(value)) ? Number(value) : NaN;
  if (!Number.isInteger(n)) throw new UsageError(`${option} ${typed(value)} is not a whole number`, hint);
  if (n < min || n > max) throw new UsageError(`${option} ${typed(value)} is out of range`, hint);
  return n;
}

export function parseSeconds(option: string, value: unknown): number {
  const n = typeof value === "number" ? value : /^\s*\d+(\.\d*)?\s*$/.test(String(value)) ? Number(value) : NaN;
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`${option} ${typed(value)} is not a number of seconds`, `e.g. ${option} 10 (0 = no limit)`);
  return n;
}

/** --private: "all", "none", or comma-separated START-END / START+SIZE ranges ("16M-32M,0x4000000+2M") */
export function parseRanges(option: string, text: string): "all" | "none" | Array<{ start: bigint; end: bigint }> {
  const t = String(text).trim();
  const keyword = t.toLowerCase();
  if (keyword === "all" || keyword === "none") return keyword;
  return t.split(",").map((part) => {
    const m = /^([^+-]+)([+-])([^+-]+)$/.exec(part.trim());
    if (!m) throw new UsageError(`${option} ${JSON.stringify(part)} is not a range`, `write all, none, or START-END / START+SIZE, e.g. ${option} 16M-32M,0x4000000+2M`);
    const start = parseSize(option, m[1]);
    const other = parseSize(option, m[3]);
    return { start, end: m[2] === "+" ? start + other : other };
  });
}
