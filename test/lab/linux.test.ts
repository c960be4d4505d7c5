// Linux as a guest on the lab's real KVM: the lab's own kernel with a busybox initramfs under
// `tsvmm run --kernel`, 1 and 2 vCPUs, and a line typed on tsvmm's terminal; all RAM shared
// (guest_memfd with MMAP|INIT_SHARED by default; with `--backend attributes|memslots` the same
// all-shared RAM on that backend's VM and slots). These run in a lab with one CPU (the lab:linux tier, `npm run test:linux`): in the two-CPU
// lab the nested SVM now and then delivers the guest's LAPIC timer interrupt with IF=0 and the
// guest deadlocks, under QEMU as under tsvmm (docs/exit-path.md), so they are registered only there.
import { test, TestContext } from "node:test";
import assert from "node:assert/strict";
import * as os from "node:os";
import { spawn } from "node:child_process";
import { labCli, labKernel } from "./support";
import { TSVMM } from "../support/cli";
import { INIT_MARK, LINUX_CASES, LINUX_GUEST_APPEND, LinuxCase, linuxGuestFiles, NESTED_STALL_MARK, nestedStall } from "../support/linuxGuest";

const linuxLab = labKernel() === "sw-protected" && os.cpus().length === 1;
/** TSVMM_LINUX_CASE=ID registers only that case (npm test runs each in a lab of its own) */
const onlyCase = process.env.TSVMM_LINUX_CASE;
if (onlyCase && !(LINUX_CASES as readonly string[]).includes(onlyCase)) throw new Error(`TSVMM_LINUX_CASE=${onlyCase}: no such case (${LINUX_CASES.join(", ")})`);
/** tsvmm's --timeout for one boot: a boot takes 12-50 s in a one-CPU lab */
const GUEST_LIMIT_S = 120;

function linuxTest(id: LinuxCase, name: string, fn: (t: TestContext) => Promise<void>): void {
  // two boots (see bootAgainOnStall), each within GUEST_LIMIT_S, and Node's start around them
  if (linuxLab && (!onlyCase || onlyCase === id)) test(name, { timeout: 2 * (GUEST_LIMIT_S + 40) * 1000 }, fn);
}

/**
 * Boot, and boot once more if the first boot ended in the nested stack's known stall (tsvmm's
 * timeout report: a vCPU in the kernel with interrupts off; test/support/linuxGuest.ts): about 1 in
 * 23 boots in a pinned one-CPU lab, seen under QEMU too. The test output names it (npm test lists
 * it at the end). Any other failure, or a second stall, is the test's verdict.
 */
async function bootAgainOnStall<R extends { status: number | null }>(t: TestContext, boot: () => Promise<R>, output: (r: R) => string): Promise<R> {
  const first = await boot();
  const stall = nestedStall(first.status, output(first));
  if (!stall) return first;
  t.diagnostic(`${NESTED_STALL_MARK} (${stall}; docs/exit-path.md): booting it again`);
  return boot();
}

function bootLinux(cpus: number, backend: string | undefined) {
  const files = linuxGuestFiles();
  if ("missing" in files) assert.fail(files.missing);
  const args = ["run", "--kernel", files.kernel, "--initrd", files.initrd, "--append", LINUX_GUEST_APPEND];
  return labCli([...args, "--mem", "256M", "--cpus", String(cpus), "--timeout", String(GUEST_LIMIT_S), ...(backend ? ["--backend", backend] : [])], (GUEST_LIMIT_S + 30) * 1000);
}

/** How the run log names the RAM of each backend */
const RAM_LINE: Record<string, RegExp> = {
  default: /RAM 256 MiB: guest_memfd \(MMAP\|INIT_SHARED/,
  attributes: /RAM 256 MiB: attributes backend: KVM_X86_SW_PROTECTED_VM/,
  memslots: /RAM 256 MiB: memslots backend: guest_memfd/,
};

for (const [id, cpus, backend] of [["1cpu", 1, undefined], ["2cpus", 2, undefined], ["attributes", 1, "attributes"], ["memslots", 1, "memslots"]] as const) {
  const on = backend ? `, --backend ${backend}` : "";
  linuxTest(id, `Linux (the lab's kernel, busybox initramfs), ${cpus} vCPU${cpus > 1 ? "s" : ""}${on}: /init reports its facts and powers off (0)`, async (t) => {
    const t0 = Date.now();
    const r = await bootAgainOnStall(t, () => bootLinux(cpus, backend), (r) => r.stderr);
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

linuxTest("typed", "Linux, 1 vCPU: a line typed on tsvmm's terminal reaches the guest's shell through COM1", async (t) => {
  const files = linuxGuestFiles();
  if ("missing" in files) assert.fail(files.missing);
  const args = ["run", "--kernel", files.kernel, "--initrd", files.initrd, "--append", `${LINUX_GUEST_APPEND} tsvmm_typed=1`, "--mem", "256M", "--timeout", String(GUEST_LIMIT_S)];
  const r = await bootAgainOnStall(t, () => bootOnTerminal(args, /TSVMM-GUEST waiting for a line/, "hello from the host\r", (GUEST_LIMIT_S + 30) * 1000), (r) => r.output);
  assert.equal(r.status, 0, r.output.slice(-4000));
  assert.match(r.output, /TSVMM-GUEST typed: hello from the host/);
  assert.match(r.output, /guest powered off/);
});
