// Helpers for the lab tier. These tests run inside `tsvmm lab` (TSVMM_LAB names the kernel), or
// directly on a host whose KVM runs guests natively; one Node process runs them all (run.ts).
import * as fs from "node:fs";
import type { TestContext } from "node:test";
import { tsvmm, CliResult } from "../support/cli";

export type LabKernelKind = "stock" | "sw-protected";

/** The lab kernel this process runs on, or undefined outside the lab. */
export function labKernel(): LabKernelKind | undefined {
  const k = process.env.TSVMM_LAB;
  return k === "stock" || k === "sw-protected" ? k : undefined;
}

/** Skip (with the reason) unless running inside the lab on this kernel. */
export function onlyOnLabKernel(t: TestContext, kind: LabKernelKind): boolean {
  if (labKernel() === kind) return true;
  t.skip(`only on the lab's ${kind} kernel (this is ${labKernel() ?? "not the lab"})`);
  return false;
}

/** Node starts in ~2 s under TCG: give every CLI call in the lab a generous limit. */
export function labCli(args: string[], limitMs = 180_000): Promise<CliResult> {
  return tsvmm(args, { limitMs });
}

export function readParam(mod: string, name: string): string | undefined {
  try {
    return fs.readFileSync(`/sys/module/${mod}/parameters/${name}`, "utf8").trim();
  } catch {
    return undefined;
  }
}
