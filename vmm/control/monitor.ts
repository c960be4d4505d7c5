// The monitor front end: command lines from a script, from stdin, or from a person at a terminal
// (node:readline with history and tab completion; Ctrl-C pauses the VM). Every command runs
// through Commands.execute(), the same path gdb's `monitor CMD` takes.
import * as readline from "node:readline";
import type { Control } from "./control";
import { Commands, completeCommand } from "./commands";

export const PROMPT = "(tsvmm) ";

export type MonitorInput =
  | { kind: "script"; lines: string[] }
  | { kind: "stream"; input: NodeJS.ReadableStream }
  | { kind: "terminal"; input: NodeJS.ReadableStream; output: NodeJS.WritableStream };

export interface MonitorHandle {
  /** Resolves when the monitor has no more input (script or stream ended, or quit) */
  done: Promise<void>;
  close(): void;
}

/** Run the monitor. When its input ends before the VM does, the VM runs on, and later stops are
 *  printed and resumed (nothing is left waiting for input that cannot come). */
export function startMonitor(control: Control, commands: Commands, source: MonitorInput, write: (text: string) => void): MonitorHandle {
  const print = (text: string) => {
    if (text) write(text.endsWith("\n") ? text : text + "\n");
  };
  const queue: string[] = [];
  let busy = false;
  let finished = false;
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  let rl: readline.Interface | undefined;

  const end = () => {
    if (finished) return;
    finished = true;
    rl?.close();
    if (!control.ended) {
      print("monitor: no more commands; the VM runs on (later stops are printed and resumed)");
      control.onStop((s) => {
        print(commands.describeStop(s));
        void control.resume().catch(() => undefined);
      });
      if (control.paused) void control.resume().catch(() => undefined);
    }
    finish();
  };

  const drain = async () => {
    if (busy) return;
    busy = true;
    await control.firstStop;
    while (queue.length && !finished) {
      const line = queue.shift()!;
      const trimmed = line.trim();
      if (source.kind !== "terminal" && (trimmed === "" || trimmed.startsWith("#"))) continue;
      if (source.kind !== "terminal") print(PROMPT + trimmed);
      if (control.ended && trimmed !== "quit") {
        print(commands.describeEnd());
        continue;
      }
      const out = await commands.execute(trimmed);
      if (out === "quit") {
        end();
        break;
      }
      print(out);
    }
    busy = false;
    if (source.kind === "terminal" && !finished) rl?.prompt();
    if (inputEnded && !queue.length && !finished) end();
  };

  let inputEnded = false;
  control.onEnd(() => {
    if (source.kind === "terminal") {
      print("\n" + commands.describeEnd());
      end();
    }
  });

  if (source.kind === "script") {
    queue.push(...source.lines);
    inputEnded = true;
    void drain();
  } else {
    const terminal = source.kind === "terminal";
    rl = readline.createInterface({
      input: source.input,
      output: terminal ? source.output : undefined,
      terminal,
      prompt: PROMPT,
      historySize: 1000,
      completer: terminal ? (line: string) => [completeCommand(line, (p) => control.symbols.complete(p)).map((c) => replaceLast(line, c)), line] : undefined,
    });
    rl.on("line", (line) => {
      queue.push(line);
      void drain();
    });
    rl.on("close", () => {
      inputEnded = true;
      if (!busy) end();
    });
    if (terminal) {
      rl.on("SIGINT", () => {
        if (control.ended) return;
        if (!control.paused) void control.pause("interrupt", 0, "interrupted from the monitor (Ctrl-C)").catch(() => undefined);
        else {
          print("\n(the VM is paused; `continue` runs it, `quit` ends it)");
          rl?.prompt();
        }
      });
      rl.prompt();
    }
  }
  return { done, close: end };
}

function replaceLast(line: string, word: string): string {
  const i = line.lastIndexOf(" ");
  return i < 0 ? word : line.slice(0, i + 1) + word;
}
