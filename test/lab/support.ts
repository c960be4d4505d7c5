// Helpers for the lab tier. These tests run inside `tsvmm lab` (TSVMM_LAB names the kernel), or
// directly on a host whose KVM runs guests natively; one Node process runs them all (run.ts).
import * as fs from "node:fs";
import { test } from "node:test";
import { tsvmm, CliResult } from "../support/cli";
import { loadAddon } from "../../vmm/native";
import { decodeCpuid } from "../../vmm/kvm/structs";

export type LabKernelKind = "stock" | "sw-protected";

/** The lab kernel this process runs on, or undefined outside the lab. */
export function labKernel(): LabKernelKind | undefined {
  const k = process.env.TSVMM_LAB;
  return k === "stock" || k === "sw-protected" ? k : undefined;
}

/**
 * A test of one lab kernel is registered only on that kernel: npm test runs the tier on both, so
 * every test runs once and none is reported as skipped (CI=true counts skips as failures).
 */
export const onLabKernel = (kind: LabKernelKind): typeof test => (labKernel() === kind ? test : ((() => undefined) as unknown as typeof test));

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

/** The highest usable shared bit: just below the CPU's physical address width */
export function sharedBit(): number {
  const kvm = new (loadAddon().Kvm)("/dev/kvm");
  try {
    return (decodeCpuid(kvm.supportedCpuid()).find((e) => e.function === 0x80000008)!.eax & 0xff) - 1;
  } finally {
    kvm.close();
  }
}
