// The lab's initramfs: Debian's busybox-static, vmm/lab/init.sh as /init and, for the stock
// kernel, the modules it loads. Written as a cpio "newc" archive by this file (no cpio tool).
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { PrivateApt, extractDeb } from "./apt";
import { LabError, LabStatus } from "./errors";
import { LabKernel } from "./kernel";
import { installCommand, packageNamed } from "./packages";
import { labSourceFile, mkdirp, publish } from "./paths";
import { Progress } from "./proc";

export type CpioEntry =
  | { name: string; type: "dir"; mode?: number }
  | { name: string; type: "file"; data: Buffer; mode?: number }
  | { name: string; type: "symlink"; target: string }
  | { name: string; type: "char"; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

/** Serialise entries as a cpio newc archive (what the kernel unpacks as initramfs). */
export function writeCpio(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const hex = (n: number) => (n >>> 0).toString(16).padStart(8, "0");
  const push = (name: string, mode: number, data: Buffer, rdevMajor = 0, rdevMinor = 0, nlink = 1) => {
    const nameBuf = Buffer.from(name + "\0", "utf8");
    const header =
      "070701" +
      [ino++, mode, 0, 0, nlink, 0, data.length, 0, 0, rdevMajor, rdevMinor, nameBuf.length, 0].map(hex).join("");
    parts.push(Buffer.from(header, "ascii"), nameBuf, Buffer.alloc(pad4(110 + nameBuf.length)));
    parts.push(data, Buffer.alloc(pad4(data.length)));
  };
  for (const e of entries) {
    const name = e.name.replace(/^\/+/, "");
    switch (e.type) {
      case "dir":
        push(name, S_IFDIR | (e.mode ?? 0o755), Buffer.alloc(0), 0, 0, 2);
        break;
      case "file":
        push(name, S_IFREG | (e.mode ?? 0o644), e.data);
        break;
      case "symlink":
        push(name, S_IFLNK | 0o777, Buffer.from(e.target, "utf8"));
        break;
      case "char":
        push(name, S_IFCHR | (e.mode ?? 0o600), Buffer.alloc(0), e.major, e.minor);
        break;
    }
  }
  push("TRAILER!!!", 0, Buffer.alloc(0), 0, 0, 1);
  return Buffer.concat(parts);
}

/** The host's static busybox (busybox-static), else Debian's from the private apt, cached by version. */
export async function prepareBusybox(apt: PrivateApt, cacheDir: string, progress: Progress, downloadTimeoutMs: number): Promise<{ path: string; version: string }> {
  const host = hostBusybox();
  if (host) return { path: host, version: `host-${createHash("sha256").update(fs.readFileSync(host)).digest("hex").slice(0, 12)}` };
  const kindDir = mkdirp(path.join(cacheDir, "busybox"));
  try {
    const u = await apt.update(24 * 3600_000, downloadTimeoutMs);
    if (u.warning) progress.warn(u.warning);
    const pkg = await apt.show("busybox-static");
    if (!pkg) throw new LabError(`Debian ${apt.suite} has no busybox-static`, LabStatus.NO_APT);
    const entry = path.join(kindDir, pkg.version.replace(/[^\w.+-]/g, "_"));
    const bin = path.join(entry, "busybox");
    if (fs.existsSync(bin)) return { path: bin, version: pkg.version };
    const [deb] = await progress.step(`downloading busybox-static ${pkg.version}`, () => apt.download([pkg], downloadTimeoutMs), undefined, () => apt.downloadProgress([pkg]));
    const x = `${entry}.x-${process.pid}`;
    try {
      await extractDeb(deb, x);
      const found = ["usr/bin/busybox", "bin/busybox"].map((p) => path.join(x, p)).find((p) => fs.existsSync(p));
      if (!found) throw new LabError(`busybox-static ${pkg.version} holds no busybox binary`, LabStatus.INITRAMFS_FAILED);
      const tmp = mkdirp(`${entry}.tmp-${process.pid}`);
      fs.copyFileSync(found, path.join(tmp, "busybox"));
      fs.chmodSync(path.join(tmp, "busybox"), 0o755);
      publish(tmp, entry);
    } finally {
      fs.rmSync(x, { recursive: true, force: true });
      apt.clean([deb]);
    }
    for (const n of fs.readdirSync(kindDir)) if (path.join(kindDir, n) !== entry) fs.rmSync(path.join(kindDir, n), { recursive: true, force: true });
    return { path: bin, version: pkg.version };
  } catch (err) {
    const cached = cachedBusybox(cacheDir);
    if (cached && err instanceof LabError && err.status === LabStatus.NO_APT) {
      progress.warn(`${err.message.replace(/^lab: /, "")}; using ${cached}`);
      return { path: cached, version: path.basename(path.dirname(cached)) };
    }
    if (err instanceof LabError && err.status === LabStatus.NO_APT) {
      throw new LabError(err.message.replace(/^lab: /, ""), LabStatus.NO_APT,
        `${installCommand([packageNamed("busybox-static")])}, or give the lab access to Debian's archive (TSVMM_LAB_MIRROR)`);
    }
    throw err;
  }
}

const HOST_BUSYBOX = ["/usr/bin/busybox", "/bin/busybox"];

const hostBusybox = () => HOST_BUSYBOX.find((p) => fs.existsSync(p) && isStatic(p));

function cachedBusybox(cacheDir: string): string | undefined {
  const kindDir = path.join(cacheDir, "busybox");
  if (!fs.existsSync(kindDir)) return undefined;
  return fs.readdirSync(kindDir).map((n) => path.join(kindDir, n, "busybox")).find((p) => fs.existsSync(p));
}

/** The static busybox a prepared lab already has (the host's, else the cached Debian one): no download. */
export const localBusybox = (cacheDir: string): string | undefined => hostBusybox() ?? cachedBusybox(cacheDir);

function isStatic(file: string): boolean {
  // A static ELF has no PT_INTERP program header: look for the interpreter path instead.
  const head = fs.readFileSync(file).subarray(0, 4096).toString("latin1");
  return !head.includes("/lib64/ld-linux") && !head.includes("/lib/ld-linux");
}

/**
 * Build (or take from the cache) the initramfs for a kernel. Keyed by the kernel's key, the
 * busybox version and the contents of init.sh.
 */
export function buildInitramfs(kernel: LabKernel, busybox: { path: string; version: string }, cacheDir: string): string {
  const init = fs.readFileSync(labSourceFile("init.sh"));
  const key = createHash("sha256")
    .update([kernel.kind, kernel.key, busybox.version, (kernel.modules?.order ?? []).join(",")].join("\n"))
    .update(init)
    .digest("hex")
    .slice(0, 16);
  const dir = mkdirp(path.join(cacheDir, "initramfs"));
  const file = path.join(dir, `${kernel.kind}-${key}.cpio`);
  if (fs.existsSync(file)) return file;
  if (!fs.existsSync(busybox.path)) {
    throw new LabError(`busybox is missing at ${busybox.path}`, LabStatus.INITRAMFS_FAILED);
  }
  const entries: CpioEntry[] = [
    { name: "bin", type: "dir" },
    { name: "sbin", type: "dir" },
    { name: "dev", type: "dir" },
    { name: "dev/console", type: "char", major: 5, minor: 1 },
    { name: "dev/null", type: "char", major: 1, minor: 3, mode: 0o666 },
    { name: "proc", type: "dir" },
    { name: "sys", type: "dir" },
    { name: "tmp", type: "dir", mode: 0o1777 },
    { name: "newroot", type: "dir" },
    { name: "labio", type: "dir" },
    { name: "keep", type: "dir" },
    { name: "lab", type: "dir" },
    { name: "bin/busybox", type: "file", data: fs.readFileSync(busybox.path), mode: 0o755 },
    { name: "bin/sh", type: "symlink", target: "busybox" },
    { name: "init", type: "file", data: init, mode: 0o755 },
  ];
  const order = kernel.modules?.order ?? [];
  entries.push({ name: "lab/modules", type: "file", data: Buffer.from(order.map((m) => m + "\n").join("")) });
  if (kernel.modules) {
    entries.push({ name: "lab/modules.d", type: "dir" });
    for (const m of order) {
      entries.push({ name: `lab/modules.d/${m}`, type: "file", data: fs.readFileSync(path.join(kernel.modules.dir, m)) });
    }
  }
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, writeCpio(entries));
  fs.renameSync(tmp, file);
  for (const n of fs.readdirSync(dir)) {
    if (n.startsWith(`${kernel.kind}-`) && path.join(dir, n) !== file) fs.rmSync(path.join(dir, n), { force: true });
  }
  return file;
}
