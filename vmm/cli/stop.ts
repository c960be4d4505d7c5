// What stops a running VM from outside: SIGINT, SIGTERM, SIGHUP, or stdout going away. Each ends
// the run cleanly (summary, the trace's end event) with its own status.
import { ExitStatus } from "../errors";
import type { StopRequest } from "../run";

/** 128 + the signal's number, as a shell reports a process the signal killed. */
export const SIGNAL_STATUS = {
  SIGHUP: ExitStatus.HANGUP,
  SIGINT: ExitStatus.INTERRUPTED,
  SIGTERM: ExitStatus.TERMINATED,
} as const;

/** What a failed write to stdout means for the exit status. */
export function stdoutFailure(err: NodeJS.ErrnoException): StopRequest {
  return err.code === "EPIPE"
    ? { status: ExitStatus.STDOUT_CLOSED, reason: "stdout was closed (EPIPE), so the VM was stopped" }
    : { status: ExitStatus.OUTPUT_FAILED, reason: `stdout: write failed (${err.code ?? err.message}), so the VM was stopped` };
}

/**
 * Abort `abort` with a StopRequest on the first stop signal or stdout failure. Each signal is
 * caught once: a second one of the same kind ends tsvmm at once, as if it were not handled.
 * Returns the function that detaches the handlers.
 */
export function abortOnStop(abort: AbortController): () => void {
  const onSignal = (signal: NodeJS.Signals) => {
    const status = SIGNAL_STATUS[signal as keyof typeof SIGNAL_STATUS];
    abort.abort({ status, reason: `interrupted by ${signal}` } satisfies StopRequest);
  };
  const onStdoutError = (err: NodeJS.ErrnoException) => abort.abort(stdoutFailure(err));
  for (const signal of Object.keys(SIGNAL_STATUS)) process.once(signal, onSignal);
  process.stdout.on("error", onStdoutError);
  return () => {
    for (const signal of Object.keys(SIGNAL_STATUS)) process.removeListener(signal, onSignal);
    process.stdout.removeListener("error", onStdoutError);
  };
}
