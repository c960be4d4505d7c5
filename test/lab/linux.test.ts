// Linux as a guest on the lab's real KVM: the lab's own kernel with a busybox initramfs under
// `tsvmm run --kernel`, 1 and 2 vCPUs, and a line typed on tsvmm's terminal; all RAM shared
// (guest_memfd with MMAP|INIT_SHARED by default; with `--backend attributes|memslots` the same
// all-shared RAM on that backend's VM and slots). These run in a lab with one CPU (the lab:linux tier, `npm run test:linux`): in the two-CPU
// lab the nested SVM now and then delivers the guest's LAPIC timer interrupt with IF=0 and the
// guest deadlocks, under QEMU as under tsvmm (docs/exit-path.md), so they are registered only there.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as os from "node:os";
import { spawn } from "node:child_process";
import { labCli, labKernel } from "./support";
import { TSVMM } from "../support/cli";
import { INIT_MARK, LINUX_CASES, LINUX_GUEST_APPEND, LinuxCase, linuxGuestFiles } from "../support/linuxGuest";

const linuxLab = labKernel() === "sw-protected" && os.cpus().length === 1;
/** TSVMM_LINUX_CASE=ID registers only that case (npm test runs each in a lab of its own) */
const onlyCase = process.env.TSVMM_LINUX_CASE;
if (onlyCase && !(LINUX_CASES as readonly string[]).includes(onlyCase)) throw new Error(`TSVMM_LINUX_CASE=${onlyCase}: no such case (${LINUX_CASES.join(", ")})`);
function linuxTest(id: LinuxCase, name: string, options: { timeout: number }, fn: () => Promise<void>): void {
  if (linuxLab && (!onlyCase || onlyCase === id)) test(name, options, fn);
}

function bootLinux(cpus: number, backend: string | undefined) {
  const files = linuxGuestFiles();
  if ("missing" in files) assert.fail(files.missing);
  const args = ["run", "--kernel", files.kernel, "--initrd", files.initrd, "--append", LINUX_GUEST_APPEND];
  return labCli([...args, "--mem", "256M", "--cpus", String(cpus), "--timeout", "240", ...(backend ? ["--backend", backend] : [])], 280_000);
}

/** How the run log names the RAM of each backend */
const RAM_LINE: Record<string, RegExp> = {
  default: /RAM 256 MiB: guest_memfd \(MMAP\|INIT_SHARED/,
  attributes: /RAM 256 MiB: attributes backend: KVM_X86_SW_PROTECTED_VM/,
  memslots: /RAM 256 MiB: memslots backend: guest_memfd/,
};

for (const [id, cpus, backend] of [["1cpu", 1, undefined], ["2cpus", 2, undefined], ["attributes", 1, "attributes"], ["memslots", 1, "memslots"]] as const) {
  const on = backend ? `, --backend ${backend}` : "";
  linuxTest(id, `Linux (the lab's kernel, busybox initramfs), ${cpus} vCPU${cpus > 1 ? "s" : ""}${on}: /init reports its facts and powers off (0)`, { timeout: 300_000 }, async () => {
    const t0 = Date.now();
    const r = await bootLinux(cpus, backend);
    const ms = Date.now() - t0;
    const out = `status ${r.status}\nstdout:\n${r.stdout.slice(-4000)}\nstderr:\n${r.stderr}`;
    assert.equal(r.status, 0, out);
    assert.match(r.stdout, new RegExp(INIT_MARK), out);
    const memTotal = Number(/^MemTotal:\s+(\d+) kB/m.exec(r.stdout)?.[1]);
    assert.ok(memTotal > 200_000 && memTotal < 262_144, `MemTotal ${memTotal} kB of 256 MiB RAM`);
    assert.match(r.stdout, new RegExp(`TSVMM-GUEST online CPUs: ${cpus === 1 ? "0" : `0-${cpus - 1}`}\\r?$`, "m"));
    // "  4:  N [M]  IO-APIC  4-edge  ttyS0": one count per CPU
    const irq4 = /^\s*4:((?:\s+\d+)+)\s+IO-APIC.*ttyS0/m.exec(r.stdout)?.[1].trim().split(/\s+/).map(Number);
    assert.ok(irq4 && irq4.length === cpus && irq4.reduce((a, b) => a + b) > 0, `the 8250 driver took interrupts on IRQ 4: ${irq4}`);
    assert.match(r.stdout, /TSVMM-GUEST done/);
    assert.match(r.stdout, /reboot: Power off not available: System halted instead/);
    assert.match(r.stderr, /guest powered off/);
    assert.match(r.stderr, RAM_LINE[backend ?? "default"]);
    if (backend) assert.match(r.stderr, /pages now: 0 private, 65536 shared/);
    process.stderr.write(`# tsvmm run --kernel (Linux, ${cpus} vCPUs${on}) in the lab: ${ms} ms to power-off (including Node start)\n`);
  });
}

/** `script` gives tsvmm a terminal (typed input reaches COM1 only from one); `typed` is sent once `prompt` shows. */
function bootOnTerminal(args: string[], prompt: RegExp, typed: string, limitMs: number): Promise<{ status: number | null; output: string }> {
  const quote = (a: string) => `'${a.replace(/'/g, "'\\''")}'`;
  const child = spawn("script", ["-qfec", [process.execPath, TSVMM, ...args].map(quote).join(" "), "/dev/null"], { stdio: ["pipe", "pipe", "pipe"] });
  let output = "";
  let sent = false;
  const onData = (d: Buffer) => {
    output += d.toString();
    if (!sent && prompt.test(output)) {
      sent = true;
      child.stdin.write(typed);
    }
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);
  return new Promise((resolve, reject) => {
    const limit = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`no end within ${limitMs} ms\n${output.slice(-3000)}`));
    }, limitMs);
    child.on("error", reject);
    child.on("close", (status) => {
      clearTimeout(limit);
      resolve({ status, output });
    });
  });
}

linuxTest("typed", "Linux, 1 vCPU: a line typed on tsvmm's terminal reaches the guest's shell through COM1", { timeout: 300_000 }, async () => {
  const files = linuxGuestFiles();
  if ("missing" in files) assert.fail(files.missing);
  const args = ["run", "--kernel", files.kernel, "--initrd", files.initrd, "--append", `${LINUX_GUEST_APPEND} tsvmm_typed=1`, "--mem", "256M", "--timeout", "200"];
  const r = await bootOnTerminal(args, /TSVMM-GUEST waiting for a line/, "hello from the host\r", 250_000);
  assert.equal(r.status, 0, r.output.slice(-4000));
  assert.match(r.output, /TSVMM-GUEST typed: hello from the host/);
  assert.match(r.output, /guest powered off/);
});
