// Guest console bytes and run-log lines on two streams (stdout, stderr) that often reach one
// terminal or pipe. The console's bytes pass unchanged; a log line never lands inside a console
// line: it waits for the console's line end, at most `holdMs`, and then starts on a fresh line
// (a newline written to the log stream) so the break is visible. Writes to the two streams keep
// their order even when one of them is backed up (pipes are asynchronous in Node).

/** The part of a Node writable stream this needs (process.stdout, process.stderr). */
export interface OutputStream {
  write(chunk: Uint8Array | string): unknown;
  readonly writableLength: number;
  readonly destroyed: boolean;
  once(event: "drain" | "close", listener: () => void): unknown;
  off(event: "drain" | "close", listener: () => void): unknown;
}

export const LOG_HOLD_MS = 200;

export class ConsoleLogWriter {
  /** The console's last byte was a newline (or a break put the terminal at a line start) */
  private atLineStart = true;
  private held: string[] = [];
  private holdTimer?: NodeJS.Timeout;
  private readonly queue: Array<{ to: OutputStream; chunk: Uint8Array | string }> = [];
  private lastTarget?: OutputStream;
  private waiting = false;

  constructor(
    private readonly consoleOut: OutputStream,
    private readonly logOut: OutputStream,
    private readonly holdMs = LOG_HOLD_MS,
  ) {}

  /** Console bytes; they are kept until written, so the caller must not reuse the buffer. */
  console(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    const newline = this.held.length ? bytes.indexOf(0x0a) : -1;
    if (newline >= 0) {
      // The console line the held log lines waited for ends here: finish it, then let them out.
      this.send(this.consoleOut, bytes.subarray(0, newline + 1));
      this.atLineStart = true;
      this.release();
      bytes = bytes.subarray(newline + 1);
      if (bytes.length === 0) return;
    }
    this.send(this.consoleOut, bytes);
    this.atLineStart = bytes[bytes.length - 1] === 0x0a;
  }

  /** One log line (or several, joined by newlines); the newline at its end is added here. */
  log(line: string): void {
    this.held.push(line + "\n");
    if (this.atLineStart) this.release();
    else if (!this.holdTimer) {
      this.holdTimer = setTimeout(() => this.breakLine(), this.holdMs);
      this.holdTimer.unref();
    }
  }

  /** No more console output is coming: held lines go out now, on a fresh line. */
  end(): void {
    if (!this.atLineStart) this.breakLine();
  }

  private breakLine(): void {
    this.send(this.logOut, "\n");
    this.atLineStart = true;
    this.release();
  }

  private release(): void {
    clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    for (const line of this.held) this.send(this.logOut, line);
    this.held = [];
  }

  private send(to: OutputStream, chunk: Uint8Array | string): void {
    this.queue.push({ to, chunk });
    this.pump();
  }

  /** Write in order; before switching streams, wait until the previous one has flushed. */
  private pump(): void {
    while (this.queue.length && !this.waiting) {
      const next = this.queue[0];
      const last = this.lastTarget;
      if (last && last !== next.to && last.writableLength > 0 && !last.destroyed) {
        this.waiting = true;
        const resume = () => {
          last.off("drain", resume);
          last.off("close", resume);
          this.waiting = false;
          this.pump();
        };
        last.once("drain", resume);
        last.once("close", resume);
        return;
      }
      this.queue.shift();
      this.lastTarget = next.to;
      if (!next.to.destroyed) next.to.write(next.chunk);
    }
  }
}
