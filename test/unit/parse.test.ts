import { test } from "node:test";
import assert from "node:assert/strict";
import { parseCount, parseSeconds, parseSize } from "../../vmm/cli/parse";
import { UsageError } from "../../vmm/errors";

test("sizes with and without suffixes", () => {
  assert.equal(parseSize("--mem", "64M"), 64n << 20n);
  assert.equal(parseSize("--mem", "1g"), 1n << 30n);
  assert.equal(parseSize("--mem", "512K"), 512n << 10n);
  assert.equal(parseSize("--mem", "2GiB"), 2n << 30n);
  assert.equal(parseSize("--mem", "4096"), 4096n);
});

test("bad values name the option and the accepted form", () => {
  assert.throws(() => parseSize("--mem", "lots"), (e: unknown) => e instanceof UsageError && /--mem "lots" is not a size/.test(e.message) && /64M/.test(e.hint!));
  assert.throws(() => parseSize("--mem", "-1M"), UsageError);
  assert.throws(() => parseCount("--cpus", 0, 1, 32), /--cpus 0 is out of range/);
  assert.throws(() => parseCount("--cpus", 1.5, 1, 32), /out of range/);
  assert.equal(parseCount("--cpus", "4", 1, 32), 4);
  assert.throws(() => parseSeconds("--timeout", "soon"), /not a number of seconds/);
  assert.equal(parseSeconds("--timeout", 2.5), 2.5);
});
