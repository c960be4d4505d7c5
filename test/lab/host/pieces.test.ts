// The lab's pure pieces, on the host (no QEMU, no network): cpio writer, run script, /tmp
// handling, module dependencies, .config parsing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { writeCpio } from "../../../vmm/lab/initramfs";
import { keepPaths, runScript, shq } from "../../../vmm/lab/stage";
import { moduleDepends, parseConfig } from "../../../vmm/lab/kernel";
import { dependsNames } from "../../../vmm/lab/apt";
import { privateMemoryHint } from "../../../vmm/host/caps";

/** Minimal newc reader: [name, mode, data] of every entry. */
function readCpio(buf: Buffer): { name: string; mode: number; data: Buffer; rdev: [number, number] }[] {
  const out = [];
  let off = 0;
  const pad = (n: number) => (n + 3) & ~3;
  for (;;) {
    const h = buf.subarray(off, off + 110).toString("ascii");
    assert.equal(h.slice(0, 6), "070701", `magic at ${off}`);
    const f = (i: number) => parseInt(h.slice(6 + i * 8, 14 + i * 8), 16);
    const namesize = f(11);
    const filesize = f(6);
    const name = buf.subarray(off + 110, off + 110 + namesize - 1).toString("utf8");
    const dataAt = pad(off + 110 + namesize);
    const data = buf.subarray(dataAt, dataAt + filesize);
    off = pad(dataAt + filesize);
    if (name === "TRAILER!!!") break;
    out.push({ name, mode: f(1), data, rdev: [f(9), f(10)] as [number, number] });
  }
  assert.equal(off, buf.length, "nothing after the trailer");
  return out;
}

test("writeCpio: newc entries with modes, data, symlinks and device nodes, 4-byte aligned", () => {
  const buf = writeCpio([
    { name: "bin", type: "dir" },
    { name: "/bin/busybox", type: "file", data: Buffer.from("abcde"), mode: 0o755 },
    { name: "bin/sh", type: "symlink", target: "busybox" },
    { name: "dev/console", type: "char", major: 5, minor: 1 },
  ]);
  const e = readCpio(buf);
  assert.deepEqual(e.map((x) => x.name), ["bin", "bin/busybox", "bin/sh", "dev/console"]);
  assert.equal(e[0].mode, 0o040755);
  assert.equal(e[1].mode, 0o100755);
  assert.equal(e[1].data.toString(), "abcde");
  assert.equal(e[2].mode, 0o120777);
  assert.equal(e[2].data.toString(), "busybox");
  assert.equal(e[3].mode, 0o020600);
  assert.deepEqual(e[3].rdev, [5, 1]);
});

test("writeCpio: the system's cpio lists the archive the same way (when installed)", (t) => {
  const cpio = spawnSync("cpio", ["--version"]);
  if (cpio.status !== 0) return t.skip("no cpio on this host");
  const buf = writeCpio([
    { name: "a", type: "dir" },
    { name: "a/b", type: "file", data: Buffer.alloc(1001, 7) },
  ]);
  const r = spawnSync("cpio", ["-t", "--quiet"], { input: buf, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split("\n"), ["a", "a/b"]);
});

test("runScript: cwd, environment and argv survive quoting through /bin/sh", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lab-run-"));
  try {
    const nasty = `it's "quoted" $HOME \`x\` \\ \n newline`;
    const script = runScript(
      [process.execPath, "-e", "console.log(JSON.stringify({cwd: process.cwd(), a: process.argv.slice(1), e: process.env.NASTY, n: Object.keys(process.env).length}))", nasty],
      dir,
      { NASTY: nasty, PATH: "/usr/bin:/bin" },
    );
    const r = spawnSync("/bin/sh", ["-c", script], { encoding: "utf8", env: { UNRELATED: "1" } });
    assert.equal(r.status, 0, r.stderr);
    const got = JSON.parse(r.stdout);
    assert.equal(got.cwd, fs.realpathSync(dir));
    assert.deepEqual(got.a, [nasty]);
    assert.equal(got.e, nasty);
    assert.ok(got.n <= 3, "only the given environment (env -i)");
    const bad = spawnSync("/bin/sh", ["-c", runScript(["true"], "/no/such/dir", {})], { encoding: "utf8" });
    assert.equal(bad.status, 126);
    assert.match(bad.stderr, /cannot enter \/no\/such\/dir/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(shq("a'b"), `'a'\\''b'`);
});

test("keepPaths: only paths under /tmp, parents first, no nesting", () => {
  assert.deepEqual(keepPaths(["/work/main", "/home/x"]), []);
  assert.deepEqual(keepPaths(["/tmp/a/b/c", "/tmp/a/b", "/tmp/z"]), ["/tmp/z", "/tmp/a/b"].sort((a, b) => a.length - b.length));
  assert.deepEqual(keepPaths(["/tmp/a", "/tmp/a"]), ["/tmp/a"]);
  assert.deepEqual(keepPaths(["/tmpx/a"]), []);
});

test("moduleDepends reads .modinfo; dependsNames reads Depends fields", () => {
  const ko = Buffer.concat([Buffer.from("\x7fELF junk\0license=GPL\0depends=kvm,ccp\0name=kvm_amd\0", "latin1")]);
  assert.deepEqual(moduleDepends(ko), ["kvm", "ccp"]);
  assert.deepEqual(moduleDepends(Buffer.from("\0depends=\0name=x\0")), []);
  assert.deepEqual(moduleDepends(Buffer.from("no modinfo")), []);
  assert.deepEqual(moduleDepends(Buffer.from("\0depends=9pnet,irq-bypass\0")), ["9pnet", "irq_bypass"]);
  assert.deepEqual(
    dependsNames("linux-base-amd64 (= 7.2.13-1), linux-image-7.2.13+deb14-amd64 (= 7.2.13-1), dracut | initramfs-tools (>= 0.120)"),
    ["linux-base-amd64", "linux-image-7.2.13+deb14-amd64", "dracut"],
  );
});

test("parseConfig: set, unset and string options; the fragment keeps what the lab needs", () => {
  const c = parseConfig('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="x y"\n# comment\n');
  assert.equal(c.get("CONFIG_A"), "y");
  assert.equal(c.get("CONFIG_B"), "n");
  assert.equal(c.get("CONFIG_C"), '"x y"');
  const frag = parseConfig(fs.readFileSync(path.join(__dirname, "../../../../vmm/lab/kernel/sw-protected.config"), "utf8"));
  for (const k of ["CONFIG_KVM", "CONFIG_KVM_AMD", "CONFIG_KVM_SW_PROTECTED_VM", "CONFIG_9P_FS", "CONFIG_NET_9P_VIRTIO", "CONFIG_VIRTIO_PCI", "CONFIG_SERIAL_8250_CONSOLE", "CONFIG_BLK_DEV_INITRD", "CONFIG_DEVTMPFS", "CONFIG_TMPFS", "CONFIG_CGROUPS", "CONFIG_EXPERT", "CONFIG_FUTEX", "CONFIG_EPOLL", "CONFIG_EVENTFD", "CONFIG_UNIX", "CONFIG_MEMFD_CREATE"])
    assert.equal(frag.get(k), "y", k);
  for (const k of ["CONFIG_KVM_AMD_SEV", "CONFIG_MODULES"]) assert.equal(frag.get(k), "n", k);
});

test("privateMemoryHint: outside the lab, the lab; inside the stock lab, its sw-protected kernel", () => {
  assert.match(privateMemoryHint(undefined), /tsvmm lab -- tsvmm run/);
  assert.match(privateMemoryHint("stock"), /--kernel sw-protected/);
  assert.doesNotMatch(privateMemoryHint("sw-protected"), /--kernel sw-protected/);
});
