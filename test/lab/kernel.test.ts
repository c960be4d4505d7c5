// What the lab kernels offer beyond KVM itself: huge pages (the kernel's own guest_memfd
// selftests need them), tracefs with KVM's trace events, and refusals that say what to do in the lab.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { labCli, labKernel, onLabKernel } from "./support";

test("tracefs is mounted and has KVM's trace events", (t) => {
  if (!labKernel()) return t.skip("not in the lab: the lab's init mounts tracefs");
  const events = "/sys/kernel/tracing/events/kvm";
  assert.ok(fs.existsSync(events), `${events} exists`);
  for (const e of ["kvm_exit", "kvm_entry", "kvm_hypercall"]) assert.ok(fs.existsSync(`${events}/${e}/enable`), e);
});

onLabKernel("sw-protected")("the sw-protected kernel has THP (madvise) and hugetlbfs", () => {
  assert.match(fs.readFileSync("/sys/kernel/mm/transparent_hugepage/enabled", "utf8"), /\[madvise\]/);
  assert.match(fs.readFileSync("/proc/filesystems", "utf8"), /\thugetlbfs\n/);
  assert.match(fs.readFileSync("/proc/meminfo", "utf8"), /^Hugepagesize:\s+2048 kB$/m);
});

onLabKernel("stock")("in the stock lab, a refused backend points at the lab's sw-protected kernel", { timeout: 240_000 }, async () => {
  const r = await labCli(["run", "convert", "--backend", "attributes"]);
  assert.equal(r.status, 69, r.stderr);
  assert.match(r.stderr, /--kernel sw-protected/);
  assert.doesNotMatch(r.stderr, /run it in the nested lab/);
});
