// The console as a person would have seen it: bytes go through a headless xterm, and the final
// screen is read back as text.
import { Terminal } from "@xterm/headless";

export class ConsoleScreen {
  private readonly term: Terminal;
  private pending = Promise.resolve();

  constructor(cols = 80, rows = 25) {
    this.term = new Terminal({ cols, rows, allowProposedApi: true, convertEol: false });
  }

  write(bytes: Uint8Array): void {
    const copy = Uint8Array.from(bytes);
    this.pending = this.pending.then(() => new Promise<void>((resolve) => this.term.write(copy, resolve)));
  }

  /** The visible screen, trailing blank lines removed. */
  async text(): Promise<string> {
    await this.pending;
    const buffer = this.term.buffer.active;
    const lines: string[] = [];
    for (let y = 0; y < this.term.rows; y++) lines.push(buffer.getLine(buffer.viewportY + y)?.translateToString(true) ?? "");
    while (lines.length && !lines[lines.length - 1].trim()) lines.pop();
    return lines.join("\n");
  }

  dispose(): void {
    this.term.dispose();
  }
}
