// The Debian packages that tsvmm's tests and `tsvmm lab` need beyond what `npm install` needs
// (README "Needs"): the one list, each with its reason. `npm test` (scripts/test.js) installs the
// missing ones for the tiers it runs when it is root with apt-get, else stops with the command;
// `tsvmm lab` names them in its hints.
import * as fs from "node:fs";
import { spawnSync } from "node:child_process";
import { which } from "./proc";

/** What a package is for; a test tier lists the needs it has (scripts/test.js). */
export type Need = "lab" | "lab kernel build" | "test tools";

export interface HostPackage {
  name: string;
  /** a command on PATH or an absolute path the package installs: present means installed */
  provides: string;
  need: Need;
  why: string;
}

export const HOST_PACKAGES: readonly HostPackage[] = [
  { name: "qemu-system-x86", provides: "qemu-system-x86_64", need: "lab", why: "the nested lab is QEMU (TCG) emulating an AMD EPYC with SVM and nested paging" },
  { name: "debian-archive-keyring", provides: "/usr/share/keyrings/debian-archive-keyring.gpg", need: "lab", why: "the lab's private apt verifies the Debian archive it takes its kernels from" },
  { name: "busybox-static", provides: "busybox", need: "lab", why: "the lab's /init shell and tools in its initramfs (without it the lab fetches busybox-static from the archive itself)" },
  { name: "cpio", provides: "cpio", need: "lab", why: "test/lab/host checks the lab's own initramfs writer against cpio" },
  { name: "util-linux", provides: "setpriv", need: "lab", why: "setpriv --pdeathsig: QEMU dies with tsvmm lab, even when tsvmm lab is SIGKILLed; taskset: a one-CPU lab runs on one host CPU" },
  { name: "xz-utils", provides: "xz", need: "lab kernel build", why: "unpacking linux-source (.tar.xz); also the stock kernel's .ko.xz modules" },
  { name: "zstd", provides: "zstd", need: "lab", why: "stock kernel modules compressed with zstd" },
  { name: "flex", provides: "flex", need: "lab kernel build", why: "the sw-protected kernel's build: Kconfig's lexer" },
  { name: "bison", provides: "bison", need: "lab kernel build", why: "the sw-protected kernel's build: Kconfig's parser" },
  { name: "bc", provides: "bc", need: "lab kernel build", why: "the sw-protected kernel's build: timeconst.h" },
  { name: "libelf-dev", provides: "/usr/include/libelf.h", need: "lab kernel build", why: "the sw-protected kernel's build: objtool reads ELF" },
  { name: "libssl-dev", provides: "/usr/include/openssl/evp.h", need: "lab kernel build", why: "the sw-protected kernel's build: host tools that link libcrypto (certs, sign-file) when the config asks for them" },
  { name: "kmod", provides: "/usr/bin/kmod", need: "lab kernel build", why: "the kernel build's module tools (depmod); the lab's own kernels load no modules through it" },
  { name: "gdb", provides: "gdb", need: "test tools", why: "the debugger's tests attach gdb to a guest" },
  { name: "chromium", provides: "chromium", need: "test tools", why: "the trace viewer's test renders its HTML in headless Chromium" },
];

export function packageNamed(name: string): HostPackage {
  const p = HOST_PACKAGES.find((x) => x.name === name);
  if (!p) throw new Error(`no host package ${name} in vmm/lab/packages.ts`);
  return p;
}

export function isPresent(p: HostPackage): boolean {
  return p.provides.startsWith("/") ? fs.existsSync(p.provides) : !!which(p.provides, `${process.env.PATH ?? ""}:/usr/sbin:/sbin`);
}

export function missingPackages(needs: readonly Need[]): HostPackage[] {
  return HOST_PACKAGES.filter((p) => needs.includes(p.need) && !isPresent(p));
}

/** The command a user runs to install packages (with sudo unless root). */
export function installCommand(pkgs: readonly HostPackage[]): string {
  const sudo = process.getuid?.() === 0 ? "" : "sudo ";
  return `${sudo}apt-get install --no-install-recommends ${pkgs.map((p) => p.name).join(" ")}`;
}

/** Can this process install packages itself (root, with apt-get)? */
export function canInstall(): boolean {
  return process.getuid?.() === 0 && !!which("apt-get");
}

/**
 * apt-get update, then apt-get install, output passed through (apt's "Get:" lines are the
 * download's progress). Returns the packages still missing afterwards.
 */
export function installPackages(pkgs: readonly HostPackage[], say: (line: string) => void, timeoutMs = 30 * 60_000): HostPackage[] {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const apt = (args: string[]) =>
    spawnSync("apt-get", ["-q", "-o", "Dpkg::Use-Pty=0", ...args], { stdio: ["ignore", "inherit", "inherit"], env, timeout: timeoutMs, killSignal: "SIGKILL" });
  let t0 = Date.now();
  say("apt-get update (Debian's package index) ...");
  const u = apt(["update"]);
  say(`apt-get update: ${u.status === 0 ? "done" : `failed (${u.error?.message ?? `exit ${u.status}`}), installing from the index there is`} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  t0 = Date.now();
  say(`apt-get install ${pkgs.map((p) => p.name).join(" ")} ...`);
  const r = apt(["install", "-y", "--no-install-recommends", ...pkgs.map((p) => p.name)]);
  const left = pkgs.filter((p) => !isPresent(p));
  say(`apt-get install: ${r.status === 0 && !left.length ? "done" : `failed (${r.error?.message ?? `exit ${r.status}`})`} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return left;
}
