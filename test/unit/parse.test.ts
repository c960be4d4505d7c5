import { test } from "node:test";
import assert from "node:assert/strict";
import { parseCount, parseRanges, parseSeconds, parseSize } from "../../vmm/cli/parse";
import { UsageError } from "../../vmm/errors";

const MiB = 1n << 20n;

test("a bare number is MiB, as QEMU's -m; suffixes say otherwise", () => {
  assert.equal(parseSize("--mem", "64"), 64n * MiB);
  assert.equal(parseSize("--mem", 64), 64n * MiB, "yargs may hand over a number");
  assert.equal(parseSize("--mem", "64M"), 64n * MiB);
  assert.equal(parseSize("--mem", "64MB"), 64n * MiB);
  assert.equal(parseSize("--mem", "1g"), 1n << 30n);
  assert.equal(parseSize("--mem", "512K"), 512n << 10n);
  assert.equal(parseSize("--mem", "2GiB"), 2n << 30n);
  assert.equal(parseSize("--mem", "1T"), 1n << 40n);
  assert.equal(parseSize("--mem", "4096B"), 4096n);
  assert.equal(parseSize("--mem", "4096b"), 4096n);
  assert.equal(parseSize("--mem", "0x200000"), 0x200000n, "a 0x number is bytes (an address)");
  assert.equal(parseSize("--mem", " 8 M "), 8n * MiB);
});

test("--private ranges use the same sizes", () => {
  assert.deepEqual(parseRanges("--private", "16-32"), [{ start: 16n * MiB, end: 32n * MiB }]);
  assert.deepEqual(parseRanges("--private", "0x4000000+2M,48M-64"), [
    { start: 0x4000000n, end: 0x4000000n + 2n * MiB },
    { start: 48n * MiB, end: 64n * MiB },
  ]);
  assert.equal(parseRanges("--private", "All"), "all");
  assert.throws(() => parseRanges("--private", "16M"), /--private "16M" is not a range/);
});

test("bad values name the option, repeat what was typed, and give the accepted form", () => {
  const refused = (fn: () => unknown, message: RegExp, hint?: RegExp) =>
    assert.throws(fn, (e: unknown) => e instanceof UsageError && e.status === 64 && message.test(e.message) && (!hint || hint.test(e.hint ?? "")));
  refused(() => parseSize("--mem", "lots"), /^--mem "lots" is not a size$/, /bare number.*MiB.*--mem 64/);
  refused(() => parseSize("--mem", "-1M"), /"-1M"/);
  refused(() => parseSize("--mem", "1.5G"), /"1.5G"/);
  refused(() => parseSize("--mem", "64X"), /"64X"/);
  refused(() => parseSize("--mem", ""), /--mem "" is not a size/);
  refused(() => parseCount("--cpus", "abc", 1, 32), /^--cpus "abc" is not a whole number$/, /1 to 32/);
  refused(() => parseCount("--cpus", Number.NaN, 1, 32), /--cpus NaN/);
  refused(() => parseCount("--cpus", "", 1, 32), /--cpus "" is not a whole number/);
  refused(() => parseCount("--cpus", 0, 1, 32), /^--cpus 0 is out of range$/);
  refused(() => parseCount("--cpus", "33", 1, 32), /^--cpus "33" is out of range$/);
  refused(() => parseCount("--cpus", 1.5, 1, 32), /--cpus 1.5 is not a whole number/);
  refused(() => parseCount("--shared-bit", 39.5, 1, 63, "the bit"), /--shared-bit 39.5 is not a whole number/, /^the bit$/);
  refused(() => parseCount("--shared-bit", "abc", 1, 63), /--shared-bit "abc"/);
  refused(() => parseCount("--shared-bit", 0, 1, 63), /--shared-bit 0 is out of range/);
  assert.equal(parseCount("--cpus", "4", 1, 32), 4);
  assert.equal(parseCount("--cpus", 4, 1, 32), 4);
  refused(() => parseSeconds("--timeout", "soon"), /^--timeout "soon" is not a number of seconds$/);
  refused(() => parseSeconds("--timeout", "abc"), /"abc"/);
  refused(() => parseSeconds("--timeout", ""), /--timeout ""/);
  refused(() => parseSeconds("--timeout", -1), /--timeout -1/);
  assert.equal(parseSeconds("--timeout", 2.5), 2.5);
  assert.equal(parseSeconds("--timeout", "2.5"), 2.5);
  assert.equal(parseSeconds("--timeout", "0"), 0);
});
