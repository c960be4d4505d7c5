// The CLI refuses bad input with a clear message and a distinct status, and starts nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { tsvmm } from "../support/cli";
import { buildElf } from "../support/elfBuilder";

const T = { timeout: 30000 };

test("--help teaches: commands, options, exit statuses", T, async () => {
  const top = await tsvmm(["--help"]);
  assert.equal(top.status, 0);
  for (const c of ["run \\[guest\\]", "caps", "guests"]) assert.match(top.stdout, new RegExp(c));
  const run = await tsvmm(["run", "--help"]);
  assert.equal(run.status, 0);
  for (const o of ["--mem", "--cpus", "--timeout", "--console", "--trace", "124 timeout", "130 interrupted", "--kernel", "--initrd", "--append", "79 guest reset", "80 guest panic"]) assert.ok(run.stdout.includes(o), o);
});

test("unknown commands and options are usage errors (64)", T, async () => {
  const r1 = await tsvmm(["boot", "hello"]);
  assert.equal(r1.status, 64);
  assert.match(r1.stderr, /Unknown command.*boot/);
  const r2 = await tsvmm(["run", "hello", "--memory", "64M"]);
  assert.equal(r2.status, 64);
  assert.match(r2.stderr, /Unknown argument.*memory/);
  const r3 = await tsvmm([]);
  assert.equal(r3.status, 64);
});

test("bad values name the option (64)", T, async () => {
  const mem = await tsvmm(["run", "hello", "--mem", "lots"]);
  assert.equal(mem.status, 64);
  assert.match(mem.stderr, /--mem "lots" is not a size/);
  assert.match(mem.stderr, /hint: .*64M/);
  const cpus = await tsvmm(["run", "hello", "--cpus", "0"]);
  assert.equal(cpus.status, 64);
  assert.match(cpus.stderr, /--cpus 0 is out of range/);
  const big = await tsvmm(["run", "hello", "--mem", "8G"]);
  assert.equal(big.status, 64);
  assert.match(big.stderr, /--mem .* out of range/);
  const con = await tsvmm(["run", "hello", "--console", "tty"]);
  assert.equal(con.status, 64);
  assert.match(con.stderr, /Invalid values/);
});

test("bad guest images are refused before anything starts (65)", T, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-img-"));
  const write = (name: string, bytes: Buffer) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, bytes);
    return f;
  };
  const code = Buffer.from([0xf4]);
  const cases: Array<[string, Buffer, RegExp]> = [
    ["arm.elf", buildElf({ machine: 183, entry: 0x100000n, segments: [{ paddr: 0x100000n, data: code }] }), /wrong architecture/],
    ["short.elf", buildElf({ entry: 0x100000n, segments: [{ paddr: 0x100000n, data: Buffer.alloc(512) }] }).subarray(0, 200), /truncated/],
    ["overlap.elf", buildElf({ entry: 0x80000n, segments: [{ paddr: 0x80000n, data: code }] }), /overlaps the vCPU stacks/],
    ["firmware-clash.elf", buildElf({ entry: 0x10000n, segments: [{ paddr: 0x10000n, data: code }] }), /overlaps the firmware/],
  ];
  for (const [name, bytes, pattern] of cases) {
    const r = await tsvmm(["run", write(name, bytes)]);
    assert.equal(r.status, 65, `${name}: ${r.stderr}`);
    assert.match(r.stderr, pattern, name);
    assert.match(r.stderr, /nothing was started/, name);
  }
  const missing = await tsvmm(["run", path.join(dir, "absent.elf")]);
  assert.equal(missing.status, 65);
  assert.match(missing.stderr, /cannot be read \(ENOENT\)/);
  const unknown = await tsvmm(["run", "no-such-guest"]);
  assert.equal(unknown.status, 65);
  assert.match(unknown.stderr, /not a shipped guest \(known: .*hello/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("guests lists every shipped guest with a description", T, async () => {
  const r = await tsvmm(["guests"]);
  assert.equal(r.status, 0, r.stderr);
  for (const g of ["hello", "smp", "fault", "spin", "echo"]) assert.match(r.stdout, new RegExp(`^${g}\\s+\\S.*$`, "m"));
});

test("--trace to an unwritable path is a usage error", T, async () => {
  const r = await tsvmm(["run", "hello", "--trace", "/proc/no/such/dir/trace"]);
  assert.equal(r.status, 64);
  assert.match(r.stderr, /--trace .*cannot open for writing/);
});
