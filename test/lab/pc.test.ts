// PC guests on the lab's real KVM: the project's multiboot test kernel. Linux as a guest is in
// linux.test.ts: it runs in a lab of its own with one CPU (the lab:linux tier, `npm run test:linux`).
import { test } from "node:test";
import assert from "node:assert/strict";
import { labCli } from "./support";
import { assessHost, probeHost } from "../../vmm/host/caps";

test("the multiboot test kernel with 2 vCPUs: INIT/SIPI, fw_cfg, PIT and UART interrupts", { timeout: 300_000 }, async () => {
  const t0 = Date.now();
  const r = await labCli(["run", "multiboot", "--cpus", "2"], 280_000);
  assert.equal(r.status, 0, `status ${r.status}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  assert.doesNotMatch(r.stdout, /^not ok/m);
  assert.match(r.stdout, /^1\.\.11\r?$/m);
  assert.match(r.stdout, /# AP up: local APIC id 1, CPUID\.1 APIC id 1/);
  process.stderr.write(`# tsvmm run multiboot --cpus 2 in the lab: ${Date.now() - t0} ms (including Node start)\n`);
});

const verdict = assessHost(probeHost());
for (const backend of ["attributes", "memslots"] as const) {
  const offered = verdict.backends[backend].available;
  test(`the multiboot test kernel, 2 vCPUs, on the ${backend} backend: ${offered ? "all RAM shared there, the same results" : "refused (69) where this kernel has no such backend"}`, { timeout: 300_000 }, async () => {
    const r = await labCli(["run", "multiboot", "--cpus", "2", "--backend", backend], 280_000);
    const out = `status ${r.status}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
    if (!offered) {
      assert.equal(r.status, 69, out);
      assert.match(r.stderr, new RegExp(`private memory is not available here: --backend ${backend}: `), out);
      return;
    }
    assert.equal(r.status, 0, out);
    assert.doesNotMatch(r.stdout, /^not ok/m);
    assert.match(r.stdout, /^1\.\.11\r?$/m);
    assert.match(r.stderr, new RegExp(`RAM 64 MiB: ${backend} backend`));
    assert.match(r.stderr, /pages now: 0 private, 16384 shared/);
  });
}
