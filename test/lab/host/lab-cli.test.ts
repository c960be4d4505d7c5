// `tsvmm lab` from the outside: arguments, exit statuses, failure reports. Needs QEMU and the
// stock lab kernel (prepared on first use, then cached); run by `npm test` (scripts/test.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { tsvmm } from "../../support/cli";

const LIMIT = 600_000;

function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved: Record<string, string | undefined> = {};
  for (const k of Object.keys(vars)) {
    saved[k] = process.env[k];
    process.env[k] = vars[k];
  }
  return fn().finally(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
}

/** Failed runs keep their console and files for diagnosis: remove the ones the tests made. */
function dropKept(stderr: string): void {
  for (const m of stderr.matchAll(/kept in (\S+?tsvmm-lab-\w+)/g)) fs.rmSync(m[1], { recursive: true, force: true });
}

function fakeQemu(body: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lab-fake-qemu-"));
  const f = path.join(dir, "qemu");
  fs.writeFileSync(f, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return f;
}

test("lab --help teaches the lab", { timeout: 60_000 }, async () => {
  const r = await tsvmm(["lab", "--help"]);
  assert.equal(r.status, 0, r.stderr);
  for (const s of ["nested", "read-only", "/dev/kvm", "sw-protected", "stock", "tsvmm lab -- tsvmm caps --json", "run hello", "--timeout"])
    assert.ok(r.stdout.includes(s), s);
});

test("lab without a command is a usage error (64)", { timeout: 60_000 }, async () => {
  const r = await tsvmm(["lab"]);
  assert.equal(r.status, 64, r.stderr);
  assert.match(r.stderr, /after --/);
});

test("bad --mem, --cpus and --timeout are usage errors that repeat what was typed (64)", { timeout: 60_000 }, async () => {
  for (const [args, said] of [
    [["--mem", "lots"], /--mem "lots" is not a size/],
    [["--mem", "128M"], /--mem 128M is too small/],
    [["--mem", "200"], /--mem 200 is too small/], // a bare number is MiB, as for run --mem
    [["--cpus", "abc"], /--cpus "abc"/],
    [["--cpus", "9"], /--cpus "9" is out of range/],
    [["--timeout", "soon"], /--timeout "soon" is not a number of seconds/],
  ] as const) {
    const r = await tsvmm(["lab", ...args, "--", "true"]);
    assert.equal(r.status, 64, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, said);
    assert.doesNotMatch(r.stderr, /NaN|null/);
  }
});

test("lab without QEMU says how to install it (80)", { timeout: 60_000 }, async () => {
  const r = await withEnv({ TSVMM_LAB_QEMU: "/nonexistent/qemu-system-x86_64" }, () => tsvmm(["lab", "--", "true"]));
  assert.equal(r.status, 80, r.stderr);
  assert.match(r.stderr, /apt-get install --no-install-recommends qemu-system-x86/);
});

test("the command's stdout, stderr and exit status come back separately", { timeout: LIMIT }, async () => {
  const r = await tsvmm(["lab", "--kernel", "stock", "--", "sh", "-c", "echo out; echo err >&2; test -c /dev/kvm && exit 7"], { limitMs: LIMIT });
  assert.equal(r.status, 7, r.stderr);
  assert.equal(r.stdout, "out\n");
  assert.match(r.stderr, /^err$/m);
  assert.match(r.stderr, /lab ready in/);
});

test("a command past --timeout is killed with the lab (124)", { timeout: LIMIT }, async () => {
  const r = await tsvmm(["lab", "--kernel", "stock", "--quiet", "--timeout", "2", "--", "sleep", "600"], { limitMs: LIMIT });
  dropKept(r.stderr);
  assert.equal(r.status, 124, r.stderr);
  assert.match(r.stderr, /--timeout 2 s/);
});

test("a lab that does not boot in time is killed (86)", { timeout: LIMIT }, async () => {
  const r = await withEnv({ TSVMM_LAB_BOOT_TIMEOUT: "1" }, () => tsvmm(["lab", "--kernel", "stock", "--quiet", "--", "true"], { limitMs: LIMIT }));
  dropKept(r.stderr);
  assert.equal(r.status, 86, r.stderr);
  assert.match(r.stderr, /did not reach the command within 1 s/);
});

test("QEMU failing to start is reported with its message (87)", { timeout: LIMIT }, async () => {
  const q = fakeQemu('echo "qemu-system-x86_64: fake failure" >&2; exit 1');
  const r = await withEnv({ TSVMM_LAB_QEMU: q }, () => tsvmm(["lab", "--kernel", "stock", "--quiet", "--", "true"], { limitMs: LIMIT }));
  fs.rmSync(path.dirname(q), { recursive: true, force: true });
  dropKept(r.stderr);
  assert.equal(r.status, 87, r.stderr);
  assert.match(r.stderr, /fake failure/);
});

test("a lab kernel panic is reported with the console around it (85)", { timeout: LIMIT }, async () => {
  // An empty initramfs: the kernel finds no init and panics.
  const empty = path.join(os.tmpdir(), `lab-empty-${process.pid}.cpio`);
  fs.writeFileSync(empty, "");
  const q = fakeQemu(`for a; do shift; [ "$prev" = -initrd ] && a=${empty}; prev=$a; set -- "$@" "$a"; done; exec qemu-system-x86_64 "$@"`);
  const r = await withEnv({ TSVMM_LAB_QEMU: q }, () => tsvmm(["lab", "--kernel", "stock", "--quiet", "--", "true"], { limitMs: LIMIT }));
  fs.rmSync(path.dirname(q), { recursive: true, force: true });
  fs.rmSync(empty, { force: true });
  dropKept(r.stderr);
  assert.equal(r.status, 85, r.stderr);
  assert.match(r.stderr, /Kernel panic/);
});

test("no access to Debian's archive and nothing cached says so (81)", { timeout: 120_000 }, async () => {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), "lab-no-apt-"));
  const r = await withEnv({ TSVMM_LAB_CACHE: cache, TSVMM_LAB_MIRROR: "http://127.0.0.1:9/debian" }, () =>
    tsvmm(["lab", "--kernel", "stock", "--", "true"], { limitMs: 110_000 }),
  );
  fs.rmSync(cache, { recursive: true, force: true });
  assert.equal(r.status, 81, r.stderr);
  assert.match(r.stderr, /cannot read Debian's package index/);
  assert.match(r.stderr, /TSVMM_LAB_MIRROR/);
});
