// The lab's two kernels, both from Debian's packages and cached under the user's cache dir:
//   stock         Debian's current linux-image (sid) and the modules the lab loads
//   sw-protected  built from Debian's linux-source with vmm/lab/kernel/sw-protected.config
//                 merged over `make tinyconfig` (KVM, KVM_AMD, KVM_SW_PROTECTED_VM built in)
// Cache entries are keyed by package version (and, for sw-protected, a hash of the config
// fragment and of the build recipe) and rebuilt only when those change.
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { PrivateApt, PackageInfo, dependsNames, extractDeb, lastLines } from "./apt";
import { LabError, LabStatus } from "./errors";
import { installCommand, missingPackages } from "./packages";
import { labSourceFile, mkdirp, publish } from "./paths";
import { Progress, pidAlive, removeTree, runProcess, seconds, which } from "./proc";

export type LabKernelKind = "stock" | "sw-protected";
export const LAB_KERNEL_KINDS: readonly LabKernelKind[] = ["stock", "sw-protected"];

export interface LabKernel {
  kind: LabKernelKind;
  /** bzImage to pass to QEMU's -kernel */
  image: string;
  /** directory of uncompressed .ko files and the load order (stock only) */
  modules?: { dir: string; order: string[] };
  /** Debian package version the kernel comes from */
  version: string;
  /** cache key: changes whenever the kernel must be rebuilt */
  key: string;
  /** true when taken from the cache without downloading or building */
  cached: boolean;
}

/** Modules the stock kernel needs in the lab; their dependencies are added from .modinfo. */
export const STOCK_MODULES = ["kvm-amd", "9pnet_virtio", "9p"];

/** Bump when the build steps change in a way that changes the kernel. */
const RECIPE = "tinyconfig+fragment+olddefconfig/bzImage v1";

export const CONFIG_FRAGMENT = "kernel/sw-protected.config";

/** Options that must hold in the built kernel's .config, or the lab is useless. */
const MUST_HAVE = [
  "CONFIG_64BIT=y",
  "CONFIG_KVM=y",
  "CONFIG_KVM_AMD=y",
  "CONFIG_KVM_SW_PROTECTED_VM=y",
  "CONFIG_9P_FS=y",
  "CONFIG_NET_9P_VIRTIO=y",
  "CONFIG_VIRTIO_PCI=y",
  "CONFIG_SERIAL_8250_CONSOLE=y",
  "CONFIG_BLK_DEV_INITRD=y",
  "CONFIG_DEVTMPFS=y",
  "CONFIG_TMPFS=y",
  // the kernel's guest_memfd selftests need huge pages; tracefs gives KVM's trace events
  "CONFIG_TRANSPARENT_HUGEPAGE=y",
  "CONFIG_TRANSPARENT_HUGEPAGE_MADVISE=y",
  "CONFIG_HUGETLBFS=y",
  "CONFIG_HUGETLB_PAGE=y",
  "CONFIG_FTRACE=y",
  "CONFIG_EVENT_TRACING=y",
];

export interface PrepareOptions {
  progress: Progress;
  cacheDir: string;
  apt: PrivateApt;
  /** refresh Debian's package index when older than this (ms) */
  indexMaxAgeMs: number;
  downloadTimeoutMs: number;
  buildTimeoutMs: number;
  /** busybox binary (for xzcat when the host has no xz) */
  busybox?: string;
}

function sha(text: string | Buffer): string {
  return createHash("sha256").update(text).digest("hex");
}

function ready(dir: string): boolean {
  return fs.existsSync(path.join(dir, "READY"));
}

/** Newest complete cache entry of a kind (used when Debian's archive cannot be reached). */
function newestEntry(kindDir: string): string | undefined {
  if (!fs.existsSync(kindDir)) return undefined;
  return fs
    .readdirSync(kindDir)
    .map((n) => path.join(kindDir, n))
    .filter(ready)
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
}

/**
 * Remove older entries of a kind, keeping `keep` and the newest other complete one: two
 * checkouts on different config fragments (branches) then do not rebuild each other's kernel.
 */
/** The bzImage of the newest complete cache entry of a kind (the kernel a lab of that kind boots), if any. */
export function cachedKernelImage(kind: LabKernelKind, cacheDir: string): string | undefined {
  const entry = newestEntry(path.join(cacheDir, kind));
  return entry && fs.existsSync(path.join(entry, "bzImage")) ? path.join(entry, "bzImage") : undefined;
}

function removeOtherEntries(kindDir: string, keep: string): void {
  const others = fs.readdirSync(kindDir).map((n) => path.join(kindDir, n)).filter((p) => p !== keep && !p.endsWith(".build.log"));
  const spare = others.filter(ready).sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
  for (const p of others) if (p !== spare) fs.rmSync(p, { recursive: true, force: true });
}

function loadEntry(kind: LabKernelKind, dir: string, cached: boolean): LabKernel {
  const meta = JSON.parse(fs.readFileSync(path.join(dir, "READY"), "utf8")) as { version: string; key: string; modules?: string[] };
  const k: LabKernel = { kind, image: path.join(dir, "bzImage"), version: meta.version, key: meta.key, cached };
  if (meta.modules) k.modules = { dir: path.join(dir, "modules"), order: meta.modules };
  return k;
}

/**
 * Ask the index (refreshed when old) for the packages; without network fall back to the newest
 * cached kernel of the kind.
 */
async function resolveOrCached<T>(
  kind: LabKernelKind,
  kindDir: string,
  opts: PrepareOptions,
  resolve: () => Promise<T>,
): Promise<T | LabKernel> {
  try {
    const u = await opts.apt.update(opts.indexMaxAgeMs, opts.downloadTimeoutMs);
    if (u.warning) opts.progress.warn(u.warning);
    return await resolve();
  } catch (err) {
    const fallback = newestEntry(kindDir);
    if (err instanceof LabError && err.status === LabStatus.NO_APT && fallback) {
      opts.progress.warn(`${err.message.replace(/^lab: /, "")}; using the cached ${kind} kernel in ${fallback}`);
      return loadEntry(kind, fallback, true);
    }
    throw err;
  }
}

async function mustShow(apt: PrivateApt, name: string): Promise<PackageInfo> {
  const p = await apt.show(name);
  if (!p) {
    throw new LabError(`Debian ${apt.suite} has no package ${name} (${apt.mirror})`, LabStatus.NO_APT,
      "the lab follows Debian's current kernel; set TSVMM_LAB_SUITE or TSVMM_LAB_MIRROR if sid is not what you want");
  }
  return p;
}

// ---------------------------------------------------------------------------------------- stock

export async function prepareStock(opts: PrepareOptions): Promise<LabKernel> {
  const kindDir = mkdirp(path.join(opts.cacheDir, "stock"));
  const resolved = await resolveOrCached("stock", kindDir, opts, async () => {
    const meta = await mustShow(opts.apt, "linux-image-amd64");
    const imageName = dependsNames(meta.depends).find((d) => /^linux-image-\d/.test(d));
    if (!imageName) throw new LabError(`linux-image-amd64 ${meta.version} names no linux-image package`, LabStatus.NO_APT);
    const abi = imageName.slice("linux-image-".length);
    const image = await mustShow(opts.apt, imageName);
    // Debian 7.x: linux-image-ABI is a small package depending on linux-binary-ABI (the signed
    // image) and linux-modules-ABI. Older layouts keep the image in linux-image-ABI itself.
    const pkgs: PackageInfo[] = [];
    for (const name of [`linux-binary-${abi}`, `linux-modules-${abi}`]) {
      const p = await opts.apt.show(name);
      if (p) pkgs.push(p);
    }
    if (!pkgs.some((p) => p.name.startsWith("linux-binary-"))) {
      const unsigned = await opts.apt.show(`linux-image-${abi}-unsigned`);
      pkgs.push(unsigned ?? image);
    }
    const key = `${abi}_${image.version}_${sha(STOCK_MODULES.join(",")).slice(0, 8)}`;
    return { abi, version: image.version, key, pkgs };
  });
  if ("image" in resolved) return resolved;
  const { abi, version, key, pkgs } = resolved;
  const entry = path.join(kindDir, key);
  if (ready(entry)) return loadEntry("stock", entry, true);

  const debs = await opts.progress.step(
    `downloading Debian's kernel ${abi} (${pkgs.map((p) => p.name).join(", ")})`,
    () => opts.apt.download(pkgs, opts.downloadTimeoutMs),
    (d) => `${(d.reduce((n, f) => n + fs.statSync(f).size, 0) / 1e6).toFixed(0)} MB`,
    () => opts.apt.downloadProgress(pkgs),
  );
  const work = `${entry}.work-${process.pid}`;
  fs.rmSync(work, { recursive: true, force: true });
  try {
    const root = path.join(work, "root");
    mkdirp(root);
    await opts.progress.step("extracting the kernel packages", async () => {
      for (const deb of debs) {
        const r = await runProcess("dpkg-deb", ["-x", deb, root], { timeoutMs: 10 * 60_000 });
        if (r.code !== 0) throw new LabError(`dpkg-deb -x ${deb} failed: ${lastLines(r.stderr, 4)}`, LabStatus.NO_APT);
      }
    });
    const vmlinuz = [path.join(root, "usr/lib/modules", abi, "vmlinuz"), path.join(root, "boot", `vmlinuz-${abi}`)].find((p) =>
      fs.existsSync(p),
    );
    if (!vmlinuz) throw new LabError(`no vmlinuz for ${abi} in ${pkgs.map((p) => p.name).join(", ")}`, LabStatus.NO_APT);
    const out = mkdirp(path.join(work, "entry"));
    fs.copyFileSync(vmlinuz, path.join(out, "bzImage"));
    const modRoot = path.join(root, "usr/lib/modules", abi);
    const order = await collectModules(modRoot, STOCK_MODULES, mkdirp(path.join(out, "modules")), opts.busybox);
    fs.writeFileSync(path.join(out, "READY"), JSON.stringify({ version, key, abi, modules: order }, null, 1) + "\n");
    publish(out, entry);
    removeOtherEntries(kindDir, entry);
  } finally {
    await removeTree(work);
    opts.apt.clean(debs);
  }
  return loadEntry("stock", entry, false);
}

/** Index every module file under a modules tree by its normalised name (dashes as underscores). */
function indexModules(dir: string, into = new Map<string, string>()): Map<string, string> {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) indexModules(p, into);
    else {
      const m = /^(.*)\.ko(\.xz|\.gz|\.zst)?$/.exec(e.name);
      if (m) into.set(m[1].replace(/-/g, "_"), p);
    }
  }
  return into;
}

async function decompressModule(file: string, busybox?: string): Promise<Buffer> {
  if (file.endsWith(".ko")) return fs.readFileSync(file);
  if (file.endsWith(".gz")) return zlib.gunzipSync(fs.readFileSync(file));
  const tool = file.endsWith(".xz")
    ? which("xz")
      ? ["xz", "-dc"]
      : busybox
        ? [busybox, "xzcat"]
        : undefined
    : which("zstd")
      ? ["zstd", "-dc"]
      : undefined;
  if (!tool) throw new LabError(`cannot decompress ${file}: install xz-utils (or zstd)`, LabStatus.INITRAMFS_FAILED, "apt-get install xz-utils zstd");
  const tmp = path.join(os.tmpdir(), `tsvmm-lab-mod-${process.pid}-${path.basename(file)}`);
  try {
    const r = await runProcess("sh", ["-c", `"$0" "$@" > "${tmp}"`, tool[0], tool[1], file], { timeoutMs: 60_000 });
    if (r.code !== 0) throw new LabError(`cannot decompress ${file}: ${r.stderr.trim()}`, LabStatus.INITRAMFS_FAILED);
    return fs.readFileSync(tmp);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** The `depends=` entry of a module's .modinfo. */
export function moduleDepends(ko: Buffer): string[] {
  const at = ko.indexOf("\0depends=");
  if (at < 0) return [];
  const end = ko.indexOf(0, at + 1);
  return ko
    .subarray(at + "\0depends=".length, end)
    .toString("utf8")
    .split(",")
    .map((s) => s.trim().replace(/-/g, "_"))
    .filter(Boolean);
}

/** Copy the wanted modules and their dependencies (uncompressed) into dest; returns the load order. */
async function collectModules(modRoot: string, wanted: string[], dest: string, busybox?: string): Promise<string[]> {
  const index = indexModules(modRoot);
  const order: string[] = [];
  const visiting = new Set<string>();
  const visit = async (raw: string): Promise<void> => {
    const name = raw.replace(/-/g, "_");
    if (order.includes(`${name}.ko`) || visiting.has(name)) return;
    const file = index.get(name);
    if (!file) throw new LabError(`module ${raw} is not in ${modRoot}`, LabStatus.INITRAMFS_FAILED);
    visiting.add(name);
    const ko = await decompressModule(file, busybox);
    for (const dep of moduleDepends(ko)) await visit(dep);
    fs.writeFileSync(path.join(dest, `${name}.ko`), ko);
    order.push(`${name}.ko`);
  };
  for (const w of wanted) await visit(w);
  return order;
}

// ----------------------------------------------------------------------------------- sw-protected

function fragmentText(): string {
  return fs.readFileSync(labSourceFile(CONFIG_FRAGMENT), "utf8");
}

/** The cache key part that depends on the repository: fragment contents and build recipe. */
export function configHash(): string {
  return sha(RECIPE + "\n" + fragmentText()).slice(0, 12);
}

function checkBuildTools(): void {
  const missing = missingPackages(["lab kernel build"]);
  if (missing.length) {
    throw new LabError(
      `cannot build the sw-protected kernel: missing ${missing.map((p) => `${p.provides} (${p.name})`).join(", ")}`,
      LabStatus.NO_BUILD_TOOLS,
      `${installCommand(missing)}  (or use --kernel stock, which needs no build)`,
    );
  }
}

/** Parse `CONFIG_X=v` / `# CONFIG_X is not set` lines. */
export function parseConfig(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split("\n")) {
    let r = /^(CONFIG_\w+)=(.*)$/.exec(line);
    if (r) m.set(r[1], r[2]);
    else if ((r = /^# (CONFIG_\w+) is not set$/.exec(line))) m.set(r[1], "n");
  }
  return m;
}

export async function prepareSwProtected(opts: PrepareOptions): Promise<LabKernel> {
  const kindDir = mkdirp(path.join(opts.cacheDir, "sw-protected"));
  const resolved = await resolveOrCached("sw-protected", kindDir, opts, () => resolveSource(opts.apt));
  if ("image" in resolved) return resolved;
  const { src, key } = resolved;
  const entry = path.join(kindDir, key);
  if (ready(entry)) return loadEntry("sw-protected", entry, true);

  checkBuildTools();
  const work = path.join(await chooseBuildRoot(kindDir), `tsvmm-lab-build-${key}-${process.pid}`);
  await removeTree(work);
  const tree: BuildTree = { work, src: mkdirp(path.join(work, "src")), out: mkdirp(path.join(work, "out")), log: path.join(kindDir, `${key}.build.log`) };
  fs.writeFileSync(tree.log, "");
  const [deb] = await opts.progress.step(
    `downloading ${src.name} ${src.version}`,
    () => opts.apt.download([src], opts.downloadTimeoutMs),
    (d) => `${(fs.statSync(d[0]).size / 1e6).toFixed(0)} MB`,
    () => opts.apt.downloadProgress([src]),
  );
  const started = Date.now();
  try {
    await opts.progress.step(`unpacking ${src.name}`, () => unpackSource(deb, src, tree, opts), undefined, () => `${countFiles(tree.src)} files`);
    opts.apt.clean([deb]);
    await opts.progress.step("configuring (tinyconfig + vmm/lab/kernel/sw-protected.config)", () => configure(tree, opts));
    const steps = await makeBzImage(tree, opts, expectedSteps(kindDir));
    opts.progress.say(`built the sw-protected kernel: ${seconds(Date.now() - started)} with unpacking and configuration`);
    publishBuild(tree, entry, { version: src.version, key, package: src.name, steps });
    removeOtherEntries(kindDir, entry);
  } finally {
    await removeTree(work);
    opts.apt.clean([deb]);
  }
  return loadEntry("sw-protected", entry, false);
}

interface BuildTree {
  /** the whole build directory, removed at the end */
  work: string;
  src: string;
  /** O= of the build */
  out: string;
  log: string;
}

/** linux-source (a metapackage) -> linux-source-X.Y: the package and the cache key. */
async function resolveSource(apt: PrivateApt): Promise<{ src: PackageInfo; key: string }> {
  const meta = await mustShow(apt, "linux-source");
  const srcName = dependsNames(meta.depends).find((d) => /^linux-source-\d/.test(d));
  if (!srcName) throw new LabError(`linux-source ${meta.version} names no linux-source-X.Y package`, LabStatus.NO_APT);
  const src = await mustShow(apt, srcName);
  return { src, key: `${src.version}_${configHash()}` };
}

async function unpackSource(deb: string, src: PackageInfo, tree: BuildTree, opts: PrepareOptions): Promise<void> {
  const debRoot = path.join(tree.work, "deb");
  await extractDeb(deb, debRoot);
  const tarDir = path.join(debRoot, "usr", "src");
  const tarball = fs.readdirSync(tarDir).find((f) => /^linux-source-.*\.tar\.(xz|gz|bz2|zst)$/.test(f));
  if (!tarball) throw new LabError(`${src.name} holds no linux-source tarball under /usr/src`, LabStatus.NO_APT);
  const r = await runProcess("tar", ["-xf", path.join(tarDir, tarball), "-C", tree.src, "--strip-components=1"], {
    timeoutMs: opts.buildTimeoutMs,
    logFile: tree.log,
  });
  fs.rmSync(debRoot, { recursive: true, force: true });
  if (r.code !== 0) throw buildFailed(`unpacking ${tarball}`, tree.log);
}

/** tinyconfig, the fragment merged over it, olddefconfig; then check that what the lab needs survived. */
async function configure(tree: BuildTree, opts: PrepareOptions): Promise<void> {
  const inTree = (file: string, args: string[]) => runProcess(file, args, { cwd: tree.src, timeoutMs: 10 * 60_000, logFile: tree.log });
  if ((await inTree("make", [`O=${tree.out}`, "tinyconfig"])).code !== 0) throw buildFailed("make tinyconfig", tree.log);
  const fragment = path.join(tree.work, "sw-protected.config");
  fs.writeFileSync(fragment, fragmentText());
  const merge = await inTree("sh", ["scripts/kconfig/merge_config.sh", "-m", "-O", tree.out, path.join(tree.out, ".config"), fragment]);
  if (merge.code !== 0) throw buildFailed("merge_config.sh", tree.log);
  if ((await inTree("make", [`O=${tree.out}`, "olddefconfig"])).code !== 0) throw buildFailed("make olddefconfig", tree.log);
  const cfg = parseConfig(fs.readFileSync(path.join(tree.out, ".config"), "utf8"));
  const lost = MUST_HAVE.filter((kv) => {
    const [k, v] = kv.split("=");
    return cfg.get(k) !== v;
  });
  if (lost.length) {
    fs.appendFileSync(tree.log, `\ntsvmm lab: the merged .config lacks ${lost.join(" ")}\n`);
    throw buildFailed(`configuration (the merged .config lacks ${lost.join(" ")})`, tree.log);
  }
  const dropped = [...parseConfig(fragmentText())].filter(([k, v]) => (cfg.get(k) ?? "n") !== v).map(([k, v]) => `${k}=${v}`);
  if (dropped.length) opts.progress.say(`note: Kconfig did not keep ${dropped.join(" ")} (dependencies)`);
}

/** Kbuild's quiet lines ("  CC      kernel/fork.o"): one per build step. */
const STEP_LINE = /^ {2}[A-Z][A-Z0-9_-]*\s+\S/gm;
/**
 * Steps of the tinyconfig+fragment build of 7.2.13 (measured), for the percentage of a first
 * build; later ones use the count kept in the last entry's READY.
 */
const MEASURED_STEPS = 1910;

function countSteps(log: string): number {
  try {
    return fs.readFileSync(log, "utf8").match(STEP_LINE)?.length ?? 0;
  } catch {
    return 0;
  }
}

/** How many steps the last build of this kind took (kept in its READY), else the measured number. */
function expectedSteps(kindDir: string): number {
  const last = newestEntry(kindDir);
  if (last) {
    const steps = (JSON.parse(fs.readFileSync(path.join(last, "READY"), "utf8")) as { steps?: number }).steps;
    if (steps) return steps;
  }
  return MEASURED_STEPS;
}

/** make bzImage under nice, with its progress (steps done of those expected) every 15 s; returns the steps. */
async function makeBzImage(tree: BuildTree, opts: PrepareOptions, expected: number): Promise<number> {
  const jobs = String((os.availableParallelism?.() ?? os.cpus().length) + 1);
  const before = countSteps(tree.log);
  const r = await opts.progress.step(
    `building the sw-protected kernel (make -j${jobs} bzImage under nice in ${tree.work}; log: ${tree.log})`,
    () => runProcess("make", [`O=${tree.out}`, `-j${jobs}`, "bzImage"], { cwd: tree.src, timeoutMs: opts.buildTimeoutMs, logFile: tree.log, nice: true }),
    undefined,
    () => {
      const done = countSteps(tree.log) - before;
      return `about ${Math.min(99, Math.floor((100 * done) / expected))}% (${done} of ~${expected} steps; now ${lastLines(readTail(tree.log), 1).trim()})`;
    },
  );
  if (r.timedOut) throw buildFailed(`make bzImage (killed after the ${opts.buildTimeoutMs / 1000} s limit; TSVMM_LAB_BUILD_TIMEOUT)`, tree.log);
  if (r.code !== 0) throw buildFailed("make bzImage", tree.log);
  return countSteps(tree.log) - before;
}

/** The built kernel, its .config and log as a cache entry (staged beside it: the build may be on another filesystem). */
function publishBuild(tree: BuildTree, entry: string, meta: { version: string; key: string; package: string; steps: number }): void {
  const out = `${entry}.tmp-${process.pid}`;
  fs.rmSync(out, { recursive: true, force: true });
  mkdirp(out);
  fs.copyFileSync(path.join(tree.out, "arch/x86/boot/bzImage"), path.join(out, "bzImage"));
  fs.copyFileSync(path.join(tree.out, ".config"), path.join(out, "config"));
  fs.copyFileSync(tree.log, path.join(out, "build.log"));
  fs.writeFileSync(path.join(out, "READY"), JSON.stringify(meta, null, 1) + "\n");
  publish(out, entry);
  fs.rmSync(tree.log, { force: true });
}

function countFiles(dir: string): number {
  let n = 0;
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      n++;
      if (e.isDirectory()) walk(path.join(d, e.name));
    }
  };
  try {
    walk(dir);
  } catch {
    /* being unpacked */
  }
  return n;
}

/**
 * Where to unpack and build (~2 GB, ~100k files): a tmpfs when one has room (unpacking, building
 * and above all deleting the tree are much faster there), else the cache directory.
 * TSVMM_LAB_BUILD_DIR overrides. Trees left by killed builds are removed first.
 */
async function chooseBuildRoot(kindDir: string): Promise<string> {
  const candidates = process.env.TSVMM_LAB_BUILD_DIR ? [process.env.TSVMM_LAB_BUILD_DIR] : ["/dev/shm", kindDir];
  for (const dir of candidates) {
    try {
      mkdirp(dir);
      fs.accessSync(dir, fs.constants.W_OK);
      const st = fs.statfsSync(dir);
      if (dir !== kindDir && st.bavail * st.bsize < 4e9 && !process.env.TSVMM_LAB_BUILD_DIR) continue;
      for (const n of fs.readdirSync(dir)) {
        const m = /^tsvmm-lab-build-.*-(\d+)$/.exec(n);
        if (m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))) await removeTree(path.join(dir, n));
      }
      return dir;
    } catch {
      continue;
    }
  }
  return kindDir;
}

function readTail(file: string): string {
  try {
    const fd = fs.openSync(file, "r");
    try {
      const size = fs.fstatSync(fd).size;
      const n = Math.min(size, 4096);
      const buf = Buffer.alloc(n);
      fs.readSync(fd, buf, 0, n, size - n);
      return buf.toString("utf8");
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return "";
  }
}

function buildFailed(step: string, log: string): LabError {
  const tail = readTail(log)
    .split("\n")
    .filter((l) => l.trim())
    .slice(-15)
    .map((l) => "    " + l)
    .join("\n");
  return new LabError(`building the sw-protected kernel failed at ${step}; full log: ${log}\n${tail}`, LabStatus.BUILD_FAILED,
    "fix vmm/lab/kernel/sw-protected.config or the build tools, or use --kernel stock");
}

export async function prepareKernel(kind: LabKernelKind, opts: PrepareOptions): Promise<LabKernel> {
  return kind === "stock" ? prepareStock(opts) : prepareSwProtected(opts);
}
