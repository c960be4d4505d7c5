// Runs the real tsvmm CLI as a child process with a hard time limit.
import { spawn } from "node:child_process";
import * as path from "node:path";

export const ROOT = path.resolve(__dirname, "..", "..", "..");
export const TSVMM = path.join(ROOT, "bin", "tsvmm.js");

export interface CliResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** `input`: text for stdin (a pipe, not a terminal); without it stdin is an empty pipe */
export function tsvmm(
  args: string[],
  opts: { limitMs?: number; signalAfterMs?: number; waitFor?: RegExp; signal?: NodeJS.Signals; input?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TSVMM, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    child.stdin.end(opts.input ?? "");
    let stdout = "";
    let stderr = "";
    const limit = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`tsvmm ${args.join(" ")} did not finish within ${opts.limitMs ?? 30000} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, opts.limitMs ?? 30000);
    let interrupted = false;
    const maybeInterrupt = () => {
      if (!interrupted && opts.waitFor && opts.waitFor.test(stdout)) {
        interrupted = true;
        setTimeout(() => child.kill(opts.signal ?? "SIGINT"), opts.signalAfterMs ?? 0);
      }
    };
    child.stdout.on("data", (d) => {
      stdout += d;
      maybeInterrupt();
    });
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (status, signal) => {
      clearTimeout(limit);
      resolve({ status, signal, stdout, stderr });
    });
  });
}
