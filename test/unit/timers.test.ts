import { test } from "node:test";
import assert from "node:assert/strict";
import { MAX_TIMER_MS, setLongTimeout } from "../../vmm/timers";

test("a limit longer than Node's timer range is chained, not cut to 1 ms", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  let fired = 0;
  const ms = 3_000_000 * 1000; // --timeout 3000000
  setLongTimeout(() => fired++, ms);
  t.mock.timers.tick(MAX_TIMER_MS);
  assert.equal(fired, 0);
  t.mock.timers.tick(ms - MAX_TIMER_MS - 1);
  assert.equal(fired, 0);
  t.mock.timers.tick(1);
  assert.equal(fired, 1);
});

test("a short limit fires once, and a cleared one never", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  let fired = 0;
  setLongTimeout(() => fired++, 1000);
  const cleared = setLongTimeout(() => fired += 10, 1000);
  cleared.clear();
  t.mock.timers.tick(1000);
  assert.equal(fired, 1);
  const chained = setLongTimeout(() => fired += 100, MAX_TIMER_MS + 5);
  t.mock.timers.tick(MAX_TIMER_MS);
  chained.clear();
  t.mock.timers.tick(10);
  assert.equal(fired, 1);
});
