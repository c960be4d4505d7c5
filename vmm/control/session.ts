// Assembles the debugger for one run: the control core, event breakpoints from the command line,
// and the front ends asked for (monitor, GDB stub). runGuest() calls it before the VM starts.
import * as fs from "node:fs";
import type { Machine } from "../machine/machine";
import type { ElfImage } from "../machine/elf";
import { Control, ControlError } from "./control";
import { Commands } from "./commands";
import { MonitorHandle, MonitorInput, startMonitor } from "./monitor";
import { parseBreakSpec } from "./breakSpec";
import { SymbolTable } from "../debug/symbols";
import { LineTable } from "../debug/dwarfLines";
import { describeGdbAddress, GdbAddress, GdbStub, parseGdbAddress } from "../debug/gdbStub";
import { UsageError } from "../errors";

export interface DebuggerOptions {
  /** --break SPEC, each */
  breaks?: string[];
  /** --monitor (terminal or stdin) or --monitor-script FILE */
  monitor?: MonitorInput;
  /** --gdb tcp:PORT|unix:PATH */
  gdb?: string;
  /** --gdb-wait: start paused until a debugger attaches */
  gdbWait?: boolean;
  /** Why this KVM's guest debugging cannot be used (Verdict.debugging.refusal); absent = usable */
  guestDebug?: string;
  /** Why data watchpoints cannot be used here (Verdict.debugging.watchRefusal); absent = usable */
  watchpoints?: string;
  /** start paused even without a monitor (the TypeScript API) */
  startPaused?: boolean;
  /** called once the debugger is set up, before the VM starts (the TypeScript API) */
  onSession?: (session: DebuggerSession) => void;
  /** where the monitor writes (stdout in the CLI) */
  write?: (text: string) => void;
}

export interface DebuggerSession {
  control: Control;
  commands: Commands;
  gdb?: GdbStub;
  monitor?: MonitorHandle;
  close(): void;
}

/** Read a --monitor-script file into lines; a missing file is a usage error. */
export function readMonitorScript(file: string): MonitorInput {
  try {
    return { kind: "script", lines: fs.readFileSync(file, "utf8").split("\n") };
  } catch (err) {
    throw new UsageError(`--monitor-script ${file}: cannot be read (${(err as NodeJS.ErrnoException).code})`);
  }
}

type DebugImage = Pick<ElfImage, "name" | "symbols" | "lines" | "lineWarning">;

/** `images`: the guest (its name names the ELF for gdb) and the firmware, whose symbols and
 *  lines stops are described with (a multiboot or Linux guest has none) */
export async function startDebugger(machine: Machine, images: [DebugImage, ...DebugImage[]], opts: DebuggerOptions, log: (line: string) => void): Promise<DebuggerSession> {
  const [guest] = images;
  for (const image of images) if (image.lineWarning) log(`warning: ${image.lineWarning}`);
  const lines = images.flatMap((i) => (i.lines ? [i.lines] : []));
  const symbols = new SymbolTable(
    images.flatMap((i) => i.symbols),
    lines.length ? LineTable.merge(lines) : undefined,
  );
  const control = new Control(machine, symbols, opts.guestDebug, opts.watchpoints);
  const commands = new Commands(control);
  for (const text of opts.breaks ?? []) {
    try {
      control.addBreakpoint(parseBreakSpec(text));
    } catch (err) {
      if (err instanceof ControlError) throw new UsageError(`--break ${text}: ${err.message}`);
      throw err;
    }
  }
  let gdb: GdbStub | undefined;
  if (opts.gdb !== undefined || opts.gdbWait) {
    const address: GdbAddress = parseGdbAddress("--gdb", opts.gdb ?? "tcp:1234");
    gdb = new GdbStub(control, commands, (line) => log(line));
    await gdb.listen(address);
    // gdb 13 cannot open a Unix socket itself: it talks to one through socat.
    const target = "tcp" in address ? `:${gdb.port}` : `| socat - UNIX-CONNECT:${address.unix}`;
    const elf = guest.name.includes("/") ? guest.name : `build/guest/${guest.name}.elf`;
    log(`gdb: listening on ${describeGdbAddress(address)}: gdb ${elf} -ex 'target remote ${target}'`);
  }
  if (opts.monitor || opts.gdbWait || opts.startPaused) control.pauseAtStart();
  control.interactive = Boolean(opts.monitor || gdb || opts.onSession);
  if (!opts.monitor && !gdb && !opts.onSession && control.list().length) {
    // Nothing could resume a stopped VM: print each stop and go on.
    control.onStop((s) => {
      log(commands.describeStop(s).replace(/\n/g, "\ntsvmm: "));
      void control.resume().catch(() => undefined);
    });
  }
  const monitor = opts.monitor ? startMonitor(control, commands, opts.monitor, opts.write ?? ((t) => process.stdout.write(t))) : undefined;
  const session: DebuggerSession = {
    control,
    commands,
    gdb,
    monitor,
    close() {
      monitor?.close();
      gdb?.close();
    },
  };
  opts.onSession?.(session);
  return session;
}
