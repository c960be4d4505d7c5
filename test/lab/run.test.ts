// Guests on the lab's real KVM, through the CLI.
import { test } from "node:test";
import assert from "node:assert/strict";
import { labCli } from "./support";

test("tsvmm run hello boots and exits 0", { timeout: 300_000 }, async () => {
  const t0 = Date.now();
  const r = await labCli(["run", "hello"], 280_000);
  assert.equal(r.status, 0, `status ${r.status}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  assert.ok(r.stdout.length > 0, "the guest printed something");
  process.stderr.write(`# tsvmm run hello in the lab: ${Date.now() - t0} ms (including Node start)\n`);
});
