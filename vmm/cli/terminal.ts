// Typed input for the guest: with a terminal on stdin, raw mode, bytes to COM1. Ctrl-A x quits.
import { isatty } from "node:tty";

export function attachTerminalInput(send: (bytes: Uint8Array) => void, quit: () => void): (() => void) | undefined {
  // Asked of the descriptor: process.stdin is made on first use, 7-20 ms for nothing without a terminal.
  if (!isatty(0)) return undefined;
  const stdin = process.stdin;
  stdin.setRawMode(true);
  let escape = false;
  const onData = (data: Buffer) => {
    for (const b of data) {
      if (escape) {
        escape = false;
        if (b === 0x78 /* x */) return quit();
        if (b !== 0x01) send(Uint8Array.of(0x01));
      } else if (b === 0x01 /* Ctrl-A */) {
        escape = true;
        continue;
      }
      if (b === 0x03 /* Ctrl-C in raw mode */) return quit();
      send(Uint8Array.of(b));
    }
  };
  stdin.on("data", onData);
  stdin.resume();
  let detached = false;
  return () => {
    if (detached) return;
    detached = true;
    stdin.off("data", onData);
    try {
      stdin.setRawMode(false);
    } catch {
      // The terminal is gone (it hung up: SIGHUP); there is no mode left to restore.
    }
    stdin.pause();
  };
}
