// Capability gates for host tests: on a user's machine a missing /dev/kvm skips with a reason;
// with CI=true it fails.
import * as fs from "node:fs";
import type { TestContext } from "node:test";
import { assessHost, probeHost } from "../../vmm/host/caps";

export function requireKvm(t: TestContext): boolean {
  let problem: string | undefined;
  try {
    fs.accessSync("/dev/kvm", fs.constants.R_OK | fs.constants.W_OK);
  } catch (err) {
    problem = `/dev/kvm is not usable (${(err as NodeJS.ErrnoException).code})`;
  }
  if (!problem) return true;
  if (process.env.CI === "true") throw new Error(`${problem}, and CI=true forbids skipping`);
  t.skip(problem);
  return false;
}

/** "native" or "emulated", from the same probe `tsvmm caps` uses */
export function hostExecution(): string {
  return assessHost(probeHost()).execution;
}
