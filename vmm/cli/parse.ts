// Parsers for command-line values. Each throws UsageError naming the option and the accepted form.
import { UsageError } from "../errors";

const UNITS: Record<string, bigint> = { "": 1n, K: 1n << 10n, M: 1n << 20n, G: 1n << 30n, T: 1n << 40n };

/** "64M", "1G", "512K", "1048576", "2GiB", "0x200000" -> bytes */
export function parseSize(option: string, text: string): bigint {
  if (/^\s*0x[0-9a-f]+\s*$/i.test(String(text))) return BigInt(String(text).trim());
  const m = /^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$/i.exec(String(text));
  if (!m) throw new UsageError(`${option} ${JSON.stringify(text)} is not a size`, `write a number with an optional K, M or G suffix, e.g. ${option} 64M`);
  return BigInt(m[1]) * UNITS[m[2].toUpperCase()];
}

export function parseCount(option: string, value: unknown, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(`${option} ${JSON.stringify(value)} is out of range`, `use a whole number from ${min} to ${max}`);
  return n;
}

export function parseSeconds(option: string, value: unknown): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`${option} ${JSON.stringify(value)} is not a number of seconds`, `e.g. ${option} 10 (0 = no limit)`);
  return n;
}

/** --private: "all", "none", or comma-separated START-END / START+SIZE ranges ("16M-32M,0x4000000+2M") */
export function parseRanges(option: string, text: string): "all" | "none" | Array<{ start: bigint; end: bigint }> {
  const t = String(text).trim().toLowerCase();
  if (t === "all" || t === "none") return t;
  return t.split(",").map((part) => {
    const m = /^([^+-]+)([+-])([^+-]+)$/.exec(part.trim());
    if (!m) throw new UsageError(`${option} ${JSON.stringify(part)} is not a range`, `write all, none, or START-END / START+SIZE, e.g. ${option} 16M-32M,0x4000000+2M`);
    const start = parseSize(option, m[1]);
    const other = parseSize(option, m[3]);
    return { start, end: m[2] === "+" ? start + other : other };
  });
}
