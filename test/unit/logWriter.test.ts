// The console/run-log writer against two real Node writable streams that share one "terminal"
// transcript, the way stdout and stderr share a terminal or a pipe.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { ConsoleLogWriter } from "../../vmm/console/logWriter";

/** Two streams writing into one transcript; a stream with delayMs is a backed-up pipe. */
function terminal(consoleDelayMs = 0) {
  const screen: string[] = [];
  const consoleBytes: string[] = [];
  const stream = (delayMs: number, own?: string[]) =>
    new Writable({
      highWaterMark: 1,
      write(chunk: Buffer, _enc, done) {
        const land = () => {
          screen.push(chunk.toString());
          own?.push(chunk.toString());
          done();
        };
        if (delayMs) setTimeout(land, delayMs);
        else land();
      },
    });
  const out = stream(consoleDelayMs, consoleBytes);
  const err = stream(0);
  return { out, err, text: () => screen.join(""), consoleText: () => consoleBytes.join("") };
}

const bytes = (s: string) => Buffer.from(s);

test("a log line at a console line start goes out at once", () => {
  const t = terminal();
  const w = new ConsoleLogWriter(t.out, t.err, 1000);
  w.console(bytes("ok 1 - a\n"));
  w.log("tsvmm: one");
  assert.equal(t.text(), "ok 1 - a\ntsvmm: one\n");
});

test("a log line mid console line waits for the line's end; the console bytes stay exact", () => {
  const t = terminal();
  const w = new ConsoleLogWriter(t.out, t.err, 1000);
  w.console(bytes("ok 1 - "));
  w.log("tsvmm: #3 conversion");
  w.log("tsvmm: #4 conversion");
  assert.equal(t.text(), "ok 1 - ", "held while the line is open");
  w.console(bytes("first\nok 2 - sec"));
  assert.equal(t.text(), "ok 1 - first\ntsvmm: #3 conversion\ntsvmm: #4 conversion\nok 2 - sec");
  w.console(bytes("ond\n"));
  w.end();
  assert.equal(t.consoleText(), "ok 1 - first\nok 2 - second\n");
});

test("a console line left open longer than the bound is broken visibly, once", async () => {
  const t = terminal();
  const w = new ConsoleLogWriter(t.out, t.err, 30);
  w.console(bytes("login: "));
  w.log("tsvmm: waiting");
  await sleep(80);
  assert.equal(t.text(), "login: \ntsvmm: waiting\n");
  w.log("tsvmm: still waiting");
  assert.equal(t.text(), "login: \ntsvmm: waiting\ntsvmm: still waiting\n", "after the break the terminal is at a line start");
  w.console(bytes("root\n"));
  assert.equal(t.consoleText(), "login: root\n", "no byte was added to the console");
});

test("end() lets held lines out on a fresh line", () => {
  const t = terminal();
  const w = new ConsoleLogWriter(t.out, t.err, 1000);
  w.console(bytes("ok 1 - partial"));
  w.log("tsvmm: summary");
  w.end();
  assert.equal(t.text(), "ok 1 - partial\ntsvmm: summary\n");
  assert.equal(t.consoleText(), "ok 1 - partial");
});

test("order holds when the console's stream is backed up", async () => {
  const t = terminal(20);
  const w = new ConsoleLogWriter(t.out, t.err, 1000);
  w.console(bytes("ok 1 - a\n"));
  w.console(bytes("ok 2 - b\n"));
  w.log("tsvmm: after two lines");
  w.console(bytes("ok 3 - c\n"));
  await sleep(200);
  assert.equal(t.text(), "ok 1 - a\nok 2 - b\ntsvmm: after two lines\nok 3 - c\n");
});
