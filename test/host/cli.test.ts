// The CLI refuses bad input with a clear message and a distinct status, and starts nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawn } from "node:child_process";
import { ROOT, TSVMM, tsvmm } from "../support/cli";
import { buildElf } from "../support/elfBuilder";
import { requireKvm } from "../support/host";
import { ExitStatus } from "../../vmm/errors";

const T = { timeout: 30000 };

/** `sh -c script` with the tsvmm command line as "$@", for what needs a shell (2>&1, ulimit). */
function shell(script: string, args: string[], limitMs = 30000): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("sh", ["-c", script, "sh", process.execPath, TSVMM, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    const limit = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`sh -c '${script}' tsvmm ${args.join(" ")} did not finish within ${limitMs} ms`));
    }, limitMs);
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (status) => {
      clearTimeout(limit);
      resolve({ status, stdout, stderr });
    });
  });
}

/** A guest that writes `text` to COM1 and then `status` to the exit port (64-bit code at 1 MiB). */
function consoleGuest(dir: string, name: string, text: string, status: number): string {
  const code = [0x66, 0xba, 0xf8, 0x03]; // mov dx, 0x3f8
  for (const c of Buffer.from(text)) code.push(0xb0, c, 0xee); // mov al, c; out dx, al
  code.push(0x66, 0xba, 0xf4, 0x00, 0xb8, status, 0, 0, 0, 0xef); // mov dx, 0xf4; mov eax, status; out dx, eax
  code.push(0xf4, 0xeb, 0xfd); // hlt; jmp hlt
  const file = path.join(dir, name);
  fs.writeFileSync(file, buildElf({ entry: 0x100000n, segments: [{ paddr: 0x100000n, data: Buffer.from(code) }] }));
  return file;
}

const noStackTrace = (stderr: string) => {
  assert.doesNotMatch(stderr, /internal error|^\s+at /m, "no stack trace");
};

test("--help teaches: commands, options, exit statuses", T, async () => {
  const top = await tsvmm(["--help"]);
  assert.equal(top.status, 0);
  for (const c of ["run \\[guest\\]", "caps", "guests"]) assert.match(top.stdout, new RegExp(c));
  const run = await tsvmm(["run", "--help"]);
  assert.equal(run.status, 0);
  for (const o of ["--mem", "--cpus", "--timeout", "--console", "--trace", "124  timeout", "130  SIGINT", "a bare number is MiB", "--kernel", "--initrd", "--append"]) assert.ok(run.stdout.includes(o), o);
});

test("every status tsvmm can return is in run --help and the README", T, async () => {
  const help = (await tsvmm(["run", "--help"])).stdout;
  const readmeText = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  const readme = readmeText.slice(readmeText.indexOf("Exit status of `tsvmm run`")).split("\n\n")[0];
  for (const [name, status] of Object.entries(ExitStatus)) {
    if (status === ExitStatus.OK) continue;
    assert.match(help, new RegExp(`^ +${status}  \\S`, "m"), `run --help lacks ${status} (${name})`);
    assert.match(readme, new RegExp(`\\b${status}\\b`), `README lacks ${status} (${name})`);
  }
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

test("bad values name the option and repeat what was typed (64)", T, async () => {
  const mem = await tsvmm(["run", "hello", "--mem", "lots"]);
  assert.equal(mem.status, 64);
  assert.match(mem.stderr, /--mem "lots" is not a size/);
  assert.match(mem.stderr, /hint: .*--mem 64/);
  const cpus = await tsvmm(["run", "hello", "--cpus", "0"]);
  assert.equal(cpus.status, 64);
  assert.match(cpus.stderr, /--cpus 0 is out of range/);
  const cases: Array<[string[], RegExp]> = [
    [["--cpus", "abc"], /--cpus "abc" is not a whole number/],
    [["--timeout", "abc"], /--timeout "abc" is not a number of seconds/],
    [["--cpus"], /Not enough arguments following: cpus/],
    [["--shared-bit", "39.5"], /--shared-bit 39.5 is not a whole number/],
    [["--shared-bit", "abc"], /--shared-bit "abc" is not a whole number/],
    [["--shared-bit", "0"], /--shared-bit 0 is out of range/],
    [["--cmdline", "x".repeat(512)], /--cmdline is 512 bytes.* 511/],
  ];
  for (const [args, message] of cases) {
    const r = await tsvmm(["run", "hello", ...args]);
    assert.equal(r.status, 64, `${args.join(" ").slice(0, 40)}: ${r.stderr}`);
    assert.match(r.stderr, message);
    noStackTrace(r.stderr);
  }
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

test("only regular files up to 1 GiB are read as guest images (65, before reading)", T, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-img-"));
  const fifo = path.join(dir, "fifo.elf");
  await new Promise((resolve, reject) => spawn("mkfifo", [fifo]).on("close", resolve).on("error", reject));
  const huge = path.join(dir, "huge.elf");
  fs.writeFileSync(huge, "");
  fs.truncateSync(huge, (1 << 30) + 1); // sparse: costs no disk
  const cases: Array<[string, RegExp]> = [
    ["/dev/zero", /\/dev\/zero: is not a regular file \(a character device\)/],
    [dir, /is not a regular file \(a directory\)/],
    [fifo, /is not a regular file \(a FIFO\)/],
    [huge, /is 1073741825 bytes; guest images are limited to 1 GiB/],
  ];
  for (const [file, message] of cases) {
    const started = Date.now();
    const r = await tsvmm(["run", file], { limitMs: 10000 });
    assert.equal(r.status, 65, `${file}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.match(r.stderr, /nothing was started/);
    assert.ok(Date.now() - started < 5000, `${file} was refused without reading it`);
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test("a bare --mem number is MiB, as QEMU's -m", T, async (t) => {
  if (!requireKvm(t)) return;
  const r = await tsvmm(["run", "hello", "--mem", "32", "--quiet"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /RAM total: 32 MiB/);
  const long = await tsvmm(["run", "hello", "--quiet", "--cmdline", "y".repeat(511)]);
  assert.equal(long.status, 0, long.stderr);
  assert.ok(long.stdout.includes(`cmdline: "${"y".repeat(511)}"`), "511 bytes of --cmdline reach the guest");
});

test("guests lists every shipped guest with a description", T, async () => {
  const r = await tsvmm(["guests"]);
  assert.equal(r.status, 0, r.stderr);
  for (const g of ["hello", "smp", "fault", "spin", "echo"]) assert.match(r.stdout, new RegExp(`^${g}\\s+\\S.*$`, "m"));
});

test("--trace to an unwritable path is a usage error before the VM starts", T, async () => {
  const r = await tsvmm(["run", "hello", "--trace", "/proc/no/such/dir/trace"]);
  assert.equal(r.status, 64);
  assert.match(r.stderr, /--trace \/proc\/no\/such\/dir\/trace: cannot open for writing \(ENOENT\)/);
  assert.doesNotMatch(r.stderr, /RAM \d+ MiB/, "no VM was created");
  assert.equal(r.stdout, "");
});

test("a run refused by any check leaves an existing trace file alone", T, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-trace-"));
  const trace = path.join(dir, "earlier.ndjson");
  fs.writeFileSync(trace, "earlier run\n");
  for (const bad of [["--cmdline", "x".repeat(512)], ["--mem", "1"], ["--cpus", "33"]]) {
    const r = await tsvmm(["run", "hello", "--trace", trace, ...bad]);
    assert.equal(r.status, 64, r.stderr);
    assert.equal(fs.readFileSync(trace, "utf8"), "earlier run\n", bad[0]);
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test("a trace file or stdout that stops accepting writes stops the VM cleanly (78)", T, async (t) => {
  if (!requireKvm(t)) return;
  const full = await tsvmm(["run", "hello", "--quiet", "--trace", "/dev/full"]);
  assert.equal(full.status, ExitStatus.OUTPUT_FAILED, full.stderr);
  assert.match(full.stderr, /^tsvmm: hello: --trace \/dev\/full: write failed \(ENOSPC\); the VM was stopped after/m);
  noStackTrace(full.stderr);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-trace-"));
  // ulimit -f 0: no byte may be written to a file; stdout and stderr are pipes, so unaffected.
  const limited = await shell(`ulimit -f 0; exec "$@"`, ["run", "hello", "--quiet", "--trace", path.join(dir, "t.ndjson")]);
  assert.equal(limited.status, ExitStatus.OUTPUT_FAILED, limited.stderr);
  assert.match(limited.stderr, /--trace .*t\.ndjson: write failed \(EFBIG\); the VM was stopped/);
  noStackTrace(limited.stderr);
  fs.rmSync(dir, { recursive: true, force: true });
  const stdoutFull = await shell(`exec "$@" > /dev/full`, ["run", "hello"]);
  assert.equal(stdoutFull.status, ExitStatus.OUTPUT_FAILED, stdoutFull.stderr);
  assert.match(stdoutFull.stderr, /^tsvmm: hello: stdout: write failed \(ENOSPC\), so the VM was stopped after/m);
  noStackTrace(stdoutFull.stderr);
});

test("a closed stdout stops the VM cleanly with 141 (tsvmm run hello | true)", T, async (t) => {
  if (!requireKvm(t)) return;
  const r = await new Promise<{ status: number | null; signal: string | null; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [TSVMM, "run", "hello"], { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.destroy(); // the reader goes away before the guest prints anything
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const limit = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`tsvmm run hello with a closed stdout did not finish: ${stderr}`));
    }, 30000);
    child.on("close", (status, signal) => {
      clearTimeout(limit);
      resolve({ status, signal, stderr });
    });
  });
  assert.equal(r.signal, null);
  assert.equal(r.status, ExitStatus.STDOUT_CLOSED, r.stderr);
  assert.match(r.stderr, /^tsvmm: hello: stdout was closed \(EPIPE\), so the VM was stopped after/m);
  noStackTrace(r.stderr);
});

for (const [signal, status] of [["SIGTERM", 143], ["SIGHUP", 129]] as const) {
  test(`${signal} stops the VM cleanly: summary, the trace's end event, exit ${status}`, T, async (t) => {
    if (!requireKvm(t)) return;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-sig-"));
    const trace = path.join(dir, "t.ndjson");
    const r = await tsvmm(["run", "spin", "--timeout", "30", "--trace", trace], { waitFor: /spinning/, signalAfterMs: 200, signal });
    assert.equal(r.signal, null, "the process exits by itself, not killed by the signal");
    assert.equal(r.status, status, r.stderr);
    assert.match(r.stderr, new RegExp(`^tsvmm: spin: interrupted by ${signal} after`, "m"));
    const events = fs.readFileSync(trace, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(events.at(-1), { ...events.at(-1), kind: "end", status, reason: `interrupted by ${signal}` });
    fs.rmSync(dir, { recursive: true, force: true });
  });
}

test("run-log lines never split a console line when stdout and stderr share one pipe", T, async (t) => {
  if (!requireKvm(t)) return;
  // hello: TAP lines, with the run log before and after them.
  const alone = await tsvmm(["run", "hello", "--quiet"]);
  assert.equal(alone.status, 0, alone.stderr);
  const merged = await shell(`exec "$@" 2>&1`, ["run", "hello"]);
  assert.equal(merged.status, 0, merged.stdout);
  const lines = merged.stdout.split("\n");
  assert.ok(lines.some((l) => l.startsWith("tsvmm: RAM")) && lines.some((l) => /^tsvmm: hello: guest exited/.test(l)), merged.stdout);
  for (const l of lines) assert.ok(!l.includes("tsvmm: ") || l.startsWith("tsvmm: "), `a log line inside a console line: ${JSON.stringify(l)}`);
  assert.equal(lines.filter((l) => !l.startsWith("tsvmm: ")).join("\n"), alone.stdout, "the console lines, whole and in order");

  // A guest that ends in the middle of a TAP line: the run log starts on a fresh line, and the
  // console's bytes on stdout stay exactly what the guest wrote.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-tap-"));
  const guest = consoleGuest(dir, "partial.elf", "1..2\nok 1 - whole\nok 2 - cut", 3);
  const exact = await tsvmm(["run", guest]);
  assert.equal(exact.status, 3, exact.stderr);
  assert.equal(exact.stdout, "1..2\nok 1 - whole\nok 2 - cut");
  const both = await shell(`exec "$@" 2>&1`, ["run", guest]);
  assert.equal(both.status, 3, both.stdout);
  const out = both.stdout.split("\n");
  assert.deepEqual(out.slice(1, 4), ["1..2", "ok 1 - whole", "ok 2 - cut"], both.stdout);
  assert.match(out[4], /^tsvmm: .*partial\.elf: guest exited with status 3 after/);
  assert.match(out[5], /^  last console line: "ok 2 - cut"$/);
  fs.rmSync(dir, { recursive: true, force: true });
});
