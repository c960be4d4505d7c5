// Debian packages through apt with a private sources file and private state: the machine's own
// apt configuration (sources, lists, cache, dpkg status) is never read for sources nor changed.
import * as fs from "node:fs";
import * as path from "node:path";
import { LabError, LabStatus } from "./errors";
import { installCommand, packageNamed } from "./packages";
import { mkdirp, publish, withLock } from "./paths";
import { runProcess, which } from "./proc";

export const DEFAULT_MIRROR = "http://deb.debian.org/debian";
export const DEFAULT_SUITE = "sid";
const KEYRING = packageNamed("debian-archive-keyring").provides;

export interface PackageInfo {
  name: string;
  version: string;
  depends: string;
  fields: Record<string, string>;
}

export class PrivateApt {
  readonly mirror: string;
  readonly suite: string;
  readonly archives: string;
  private readonly opts: string[];

  constructor(readonly dir: string) {
    this.mirror = process.env.TSVMM_LAB_MIRROR || DEFAULT_MIRROR;
    this.suite = process.env.TSVMM_LAB_SUITE || DEFAULT_SUITE;
    const sources = mkdirp(path.join(dir, "sources.list.d"));
    const prefs = mkdirp(path.join(dir, "preferences.d"));
    const lists = mkdirp(path.join(dir, "lists", "partial"));
    const cache = path.join(dir, "cache");
    mkdirp(path.join(cache, "archives", "partial"));
    this.archives = path.join(cache, "archives");
    const state = mkdirp(path.join(dir, "state"));
    const status = path.join(state, "status");
    if (!fs.existsSync(status)) fs.writeFileSync(status, "");
    fs.writeFileSync(
      path.join(sources, "tsvmm-lab.sources"),
      `Types: deb\nURIs: ${this.mirror}\nSuites: ${this.suite}\nComponents: main\nSigned-By: ${KEYRING}\n`,
    );
    this.opts = [
      "-o", "Dir::Etc::SourceList=/dev/null",
      "-o", `Dir::Etc::SourceParts=${sources}`,
      "-o", "Dir::Etc::Preferences=/dev/null",
      "-o", `Dir::Etc::PreferencesParts=${prefs}`,
      "-o", `Dir::State=${state}`,
      "-o", `Dir::State::Lists=${path.dirname(lists)}`,
      "-o", `Dir::State::status=${status}`,
      "-o", `Dir::Cache=${cache}`,
      "-o", "APT::Architecture=amd64",
      "-o", "APT::Architectures::=amd64",
      "-o", "Acquire::Languages=none",
      "-o", "Acquire::Retries=3",
      "-o", "Acquire::http::Timeout=60",
    ];
    if (process.getuid?.() === 0) this.opts.push("-o", "APT::Sandbox::User=root");
  }

  /** apt-get runs one at a time on this private state (two kernels may be prepared at once). */
  private locked<T>(timeoutMs: number, fn: () => Promise<T>): Promise<T> {
    return withLock(path.join(this.dir, ".lock"), timeoutMs, () => undefined, fn);
  }

  private static checkTools(): void {
    for (const tool of ["apt-get", "apt-cache", "dpkg-deb"]) {
      if (!which(tool)) {
        throw new LabError(
          `${tool} is not installed: the lab takes its kernels and busybox from Debian's archive with apt`,
          LabStatus.NO_APT,
          "run tsvmm lab on Debian or Ubuntu (apt-get, apt-cache and dpkg-deb are needed)",
        );
      }
    }
    if (!fs.existsSync(KEYRING)) {
      throw new LabError(`${KEYRING} is missing: Debian's archive cannot be verified`, LabStatus.NO_APT,
        installCommand([packageNamed("debian-archive-keyring")]));
    }
  }

  private listsFile(): string | undefined {
    const lists = path.join(this.dir, "lists");
    return fs.readdirSync(lists).find((f) => f.includes("_Packages"));
  }

  /** Age of the package index in ms, or undefined when there is none. */
  indexAgeMs(): number | undefined {
    const f = this.listsFile();
    if (!f) return undefined;
    return Date.now() - fs.statSync(path.join(this.dir, "lists", f)).mtimeMs;
  }

  /**
   * Refresh the index when it is older than maxAgeMs. Without network an existing index is
   * kept (with a warning returned); with none at all this fails with NO_APT.
   */
  async update(maxAgeMs: number, timeoutMs: number): Promise<{ updated: boolean; warning?: string }> {
    PrivateApt.checkTools();
    const age = this.indexAgeMs();
    if (age !== undefined && age < maxAgeMs) return { updated: false };
    const r = await this.locked(timeoutMs, () => runProcess("apt-get", [...this.opts, "-q", "update"], { timeoutMs }));
    const failed = r.code !== 0 || r.timedOut || /^(E|W): (Failed|Some index)/m.test(r.stderr);
    if (!failed) {
      const f = this.listsFile();
      if (f) fs.utimesSync(path.join(this.dir, "lists", f), new Date(), new Date());
      return { updated: true };
    }
    const why = r.timedOut ? `timed out after ${timeoutMs / 1000} s` : lastLines(r.stderr || r.stdout, 6);
    if (age !== undefined) {
      return { updated: false, warning: `apt-get update for ${this.mirror} ${this.suite} failed (${why.trim()}); using the index from ${Math.round(age / 3.6e6)} h ago` };
    }
    throw new LabError(
      `cannot read Debian's package index (${this.mirror} ${this.suite}): ${why}`,
      LabStatus.NO_APT,
      "the lab needs Debian's archive once per kernel version; check the network or set TSVMM_LAB_MIRROR",
    );
  }

  /** Identity of the current index: answers of show() are remembered while it stays the same. */
  private indexId(): string {
    const f = this.listsFile();
    if (!f) return "";
    const st = fs.statSync(path.join(this.dir, "lists", f));
    return `${f}:${st.size}:${st.mtimeMs}`;
  }

  private showCache(): { index: string; pkgs: Record<string, PackageInfo | null> } {
    const file = path.join(this.dir, "show-cache.json");
    const index = this.indexId();
    try {
      const c = JSON.parse(fs.readFileSync(file, "utf8"));
      if (c.index === index) return c;
    } catch {
      /* none yet */
    }
    return { index, pkgs: {} };
  }

  /** The candidate stanza of a package, or undefined when the index has no such package. */
  async show(name: string): Promise<PackageInfo | undefined> {
    const cache = this.showCache();
    if (name in cache.pkgs) return cache.pkgs[name] ?? undefined;
    const info = await this.showUncached(name);
    cache.pkgs[name] = info ?? null;
    const file = path.join(this.dir, "show-cache.json");
    fs.writeFileSync(`${file}.tmp-${process.pid}`, JSON.stringify(cache));
    fs.renameSync(`${file}.tmp-${process.pid}`, file);
    return info;
  }

  private async showUncached(name: string): Promise<PackageInfo | undefined> {
    const r = await runProcess("apt-cache", [...this.opts, "show", "--no-all-versions", name], { timeoutMs: 60_000 });
    if (r.code !== 0 || !r.stdout.trim()) return undefined;
    const fields: Record<string, string> = {};
    let key = "";
    for (const line of r.stdout.split("\n")) {
      if (line === "") break;
      if (/^\s/.test(line) && key) fields[key] += "\n" + line.trim();
      else {
        const m = /^([\w-]+):\s?(.*)$/.exec(line);
        if (m) fields[(key = m[1])] = m[2];
      }
    }
    if (!fields.Package) return undefined;
    return { name: fields.Package, version: fields.Version, depends: fields.Depends ?? "", fields };
  }

  /** Download packages (exact name=version) into the private cache; returns the .deb paths. */
  async download(pkgs: PackageInfo[], timeoutMs: number): Promise<string[]> {
    const want = pkgs.map((p) => `${p.name}=${p.version}`);
    const r = await this.locked(timeoutMs, () => runProcess("apt-get", [...this.opts, "-q", "download", ...want], { timeoutMs, cwd: this.archives }));
    if (r.code !== 0 || r.timedOut) {
      throw new LabError(
        `cannot download ${want.join(" ")}: ${r.timedOut ? `timed out after ${timeoutMs / 1000} s` : lastLines(r.stderr, 6)}`,
        LabStatus.NO_APT,
        "check access to Debian's archive (TSVMM_LAB_MIRROR)",
      );
    }
    return pkgs.map((p) => {
      const ver = p.version.replace(/:/g, "%3a");
      const hit = fs.readdirSync(this.archives).find((f) => f.startsWith(`${p.name}_${ver}_`) && f.endsWith(".deb"));
      if (!hit) throw new LabError(`apt-get download did not leave ${p.name} ${p.version} in ${this.archives}`, LabStatus.NO_APT);
      return path.join(this.archives, hit);
    });
  }

  /** How far a download() of these packages has come: "MB of MB (percent)", from the files being written. */
  downloadProgress(pkgs: PackageInfo[]): string {
    const total = pkgs.reduce((n, p) => n + (Number(p.fields.Size) || 0), 0);
    let got = 0;
    for (const dir of [this.archives, path.join(this.archives, "partial")]) {
      for (const f of fs.readdirSync(dir)) {
        if (pkgs.some((p) => f.startsWith(`${p.name}_`))) got += fs.statSync(path.join(dir, f)).size;
      }
    }
    const mb = (n: number) => (n / 1e6).toFixed(0);
    return total ? `${mb(got)} of ${mb(total)} MB (${Math.min(100, Math.floor((100 * got) / total))}%)` : `${mb(got)} MB`;
  }

  /** Remove downloaded .deb files (they are large and their contents are cached extracted). */
  clean(debs: string[]): void {
    for (const d of debs) fs.rmSync(d, { force: true });
  }
}

/** dpkg-deb -x into dir (replaced whole). */
export async function extractDeb(deb: string, dir: string): Promise<void> {
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  mkdirp(tmp);
  const r = await runProcess("dpkg-deb", ["-x", deb, tmp], { timeoutMs: 10 * 60_000 });
  if (r.code !== 0) throw new LabError(`dpkg-deb -x ${deb} failed: ${lastLines(r.stderr, 4)}`, LabStatus.NO_APT);
  publish(tmp, dir);
}

/** Package names from a Depends field, first alternative of each, without version constraints. */
export function dependsNames(depends: string): string[] {
  return depends
    .split(",")
    .map((d) => d.split("|")[0].trim().split(/\s|\(/)[0])
    .filter(Boolean);
}

export function lastLines(text: string, n: number): string {
  return text.trim().split("\n").slice(-n).join("\n");
}
