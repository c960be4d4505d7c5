// The lab itself: a real KVM (kvm_amd) with nested paging, reachable at /dev/kvm.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import { labKernel, readParam } from "./support";

test("the lab's /dev/kvm is kvm_amd with nested paging", () => {
  assert.ok(fs.existsSync("/dev/kvm"), "/dev/kvm exists");
  fs.accessSync("/dev/kvm", fs.constants.R_OK | fs.constants.W_OK);
  assert.ok(fs.existsSync("/sys/module/kvm_amd"), `kvm_amd is loaded (TSVMM_LAB=${labKernel() ?? "unset"})`);
  assert.equal(readParam("kvm_amd", "npt"), "Y", "kvm_amd npt=Y");
});

test("the lab keeps the checkout visible and the scratch directory writable", () => {
  assert.ok(fs.existsSync(`${__dirname}/tier.js`), "this build is visible in the lab");
  const scratch = process.env.TSVMM_LAB_SCRATCH;
  if (!labKernel() || !scratch) return;
  const f = `${scratch}/lab-tier-${process.pid}`;
  fs.writeFileSync(f, "x");
  assert.equal(fs.readFileSync(f, "utf8"), "x");
  fs.rmSync(f);
  const t = fs.mkdtempSync("/tmp/lab-tier-");
  fs.rmSync(t, { recursive: true });
});

test("the lab has more than one CPU (tsvmm lab boots it with --cpus 2 by default)", (t) => {
  if (!labKernel()) return t.skip("not in the lab");
  assert.ok(os.cpus().length >= 2, `${os.cpus().length} CPUs online`);
});
