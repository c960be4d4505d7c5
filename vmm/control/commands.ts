// The monitor's commands, over the control core. The terminal monitor, --monitor-script and
// gdb's `monitor CMD` all run them through execute(); each command exists once, here.
import { Control, ControlError, PageRun, Stop } from "./control";
import { describeBreakSpec, GpaRange, parseBreakSpec, parseRange } from "./breakSpec";
import { TsvmmError } from "../errors";
import { parseSize } from "../cli/parse";
import { ExitStatus } from "../errors";
import { PAGE } from "../memory/pageState";

export interface CommandDef {
  name: string;
  aliases: string[];
  usage: string;
  help: string;
  /** gdb has its own way to do this (and the stub's qRcmd cannot wait for the guest) */
  notFromGdb?: string;
}

export const COMMANDS: readonly CommandDef[] = [
  { name: "help", aliases: ["h", "?"], usage: "help", help: "list the commands" },
  { name: "continue", aliases: ["c", "cont"], usage: "continue", help: "run every vCPU until a breakpoint, an event it asks for, or the end", notFromGdb: "continue" },
  { name: "pause", aliases: [], usage: "pause", help: "stop every vCPU now (Ctrl-C does the same)" },
  { name: "step", aliases: ["s", "stepi", "si"], usage: "step [N]", help: "execute N guest instructions (default 1) on the stopped vCPU; the others stay paused", notFromGdb: "stepi" },
  { name: "next", aliases: ["n"], usage: "next", help: "run to the next event of any kind (conversion, refusal, fault, or an exit TypeScript handles)", notFromGdb: "continue" },
  { name: "regs", aliases: ["r", "registers"], usage: "regs [VCPU]", help: "general registers, RIP symbolised (default: the stopped vCPU)" },
  { name: "sregs", aliases: [], usage: "sregs [VCPU]", help: "control registers, EFER, segments, descriptor tables" },
  { name: "vcpus", aliases: ["threads"], usage: "vcpus", help: "every vCPU: running, paused or halted, and where" },
  { name: "pages", aliases: ["p"], usage: "pages [RANGE]", help: "private/shared runs with page counts and a compact map (RANGE: START-END or START+SIZE)" },
  { name: "events", aliases: ["ev"], usage: "events [N]", help: "the last N events (default 20)" },
  { name: "x", aliases: [], usage: "x/FMT ADDR", help: "guest memory at a guest-physical ADDR or symbol, shared pages only (FMT: count, x|d|u|c, b|h|w|g; e.g. x/16xb 0x200000)" },
  { name: "convert", aliases: [], usage: "convert RANGE private|shared", help: "convert pages from the host (recorded with source monitor)" },
  { name: "punch", aliases: [], usage: "punch RANGE", help: "discard the private backing of pages (they read as zero afterwards)" },
  { name: "break", aliases: ["b"], usage: "break SPEC", help: "add a breakpoint: conversion[,range=,to=,source=,vcpu=], fault, refused, exit=NAME, addr=SYMBOL|ADDRESS, watch=SYMBOL|ADDRESS[+LEN][,access=w|rw]" },
  { name: "watch", aliases: ["w"], usage: "watch ADDR[+LEN] [w|rw]", help: "stop after the guest writes (w, default) or reads or writes (rw) LEN bytes (1, 2, 4, 8; aligned) at a symbol or guest-virtual ADDR; shares the 4 debug registers with addr= breakpoints" },
  { name: "delete", aliases: ["d"], usage: "delete ID", help: "remove a breakpoint or watchpoint" },
  { name: "info", aliases: ["i"], usage: "info break", help: "list the breakpoints and watchpoints with their hit counts" },
  { name: "why", aliases: [], usage: "why", help: "what stopped the VM" },
  { name: "quit", aliases: ["q", "exit"], usage: "quit", help: "end the VM (exit status 130) and leave" },
];

const byName = new Map<string, CommandDef>();
for (const c of COMMANDS) for (const n of [c.name, ...c.aliases]) byName.set(n, c);

export function findCommand(word: string): CommandDef | undefined {
  return byName.get(word.split("/")[0]);
}

/** Names for tab completion */
export function completeCommand(line: string, symbols: (prefix: string) => string[]): string[] {
  const words = line.split(/\s+/);
  if (words.length <= 1) return COMMANDS.map((c) => c.name).filter((n) => n.startsWith(line));
  const last = words[words.length - 1];
  const cmd = findCommand(words[0])?.name;
  if (cmd === "convert" && words.length === 3) return ["private", "shared"].filter((s) => s.startsWith(last));
  if (cmd === "info") return ["break"].filter((s) => s.startsWith(last));
  if (cmd === "break" && (last.startsWith("addr=") || last.startsWith("watch="))) return symbols(last.slice(last.indexOf("=") + 1)).map((s) => last.slice(0, last.indexOf("=") + 1) + s);
  if (cmd === "break" && words.length === 2) return ["conversion", "fault", "refused", "exit=", "addr=", "watch="].filter((s) => s.startsWith(last));
  if (cmd === "x" || (cmd === "watch" && words.length === 2)) return symbols(last);
  if (cmd === "watch" && words.length === 3) return ["w", "rw"].filter((s) => s.startsWith(last));
  return [];
}

export interface ExamineFormat {
  count: number;
  format: "x" | "d" | "u" | "c";
  size: 1 | 2 | 4 | 8;
}

const SIZES = { b: 1, h: 2, w: 4, g: 8 } as const;

/** "x/16xb" -> { count: 16, format: "x", size: 1 }; gdb's defaults: 1, x, w */
export function parseExamine(word: string): ExamineFormat {
  const m = /^x(?:\/(\d*)([xduc]?)([bhwg]?)([xduc]?))?$/.exec(word);
  if (!m) throw new ControlError(`${word}: bad format; write x/FMT ADDR with FMT = count, x|d|u|c, b|h|w|g (e.g. x/8xg 0x200000)`);
  const count = m[1] ? Number(m[1]) : 1;
  if (count < 1 || count > 4096) throw new ControlError(`${word}: count must be 1 to 4096`);
  const format = (m[2] || m[4] || "x") as ExamineFormat["format"];
  const size = format === "c" ? 1 : SIZES[(m[3] || "w") as keyof typeof SIZES];
  return { count, format, size };
}

function formatValue(v: bigint, f: ExamineFormat): string {
  switch (f.format) {
    case "x":
      return "0x" + v.toString(16).padStart(f.size * 2, "0");
    case "u":
      return v.toString();
    case "d":
      return BigInt.asIntN(f.size * 8, v).toString();
    case "c": {
      const n = Number(v);
      return n >= 0x20 && n < 0x7f ? `'${String.fromCharCode(n)}'` : `\\x${n.toString(16).padStart(2, "0")}`;
    }
  }
}

const hex = (v: bigint) => "0x" + v.toString(16);
const MAP_WIDTH = 64;

/** Runs as lines, then a map: one character per page (or per group when there are many): . shared, P private, : mixed */
export function formatPages(runs: PageRun[]): string {
  const lines = runs.map((r) => `  ${hex(r.start)}-${hex(r.end)} ${r.state.padEnd(7)} ${r.pages} page${r.pages === 1 ? "" : "s"}`);
  const total = runs.reduce((n, r) => n + r.pages, 0);
  const privatePages = runs.filter((r) => r.state === "private").reduce((n, r) => n + r.pages, 0);
  const perChar = Math.max(1, Math.ceil(total / (MAP_WIDTH * 4)));
  let map = "";
  let page = 0;
  const states: string[] = [];
  for (const r of runs) for (let i = 0; i < r.pages; i++) states.push(r.state);
  for (; page < total; page += perChar) {
    const group = states.slice(page, page + perChar);
    map += group.every((s) => s === "private") ? "P" : group.every((s) => s === "shared") ? "." : ":";
  }
  const rows = map.match(new RegExp(`.{1,${MAP_WIDTH}}`, "g")) ?? [];
  const first = runs[0]?.start ?? 0n;
  const rowBytes = BigInt(MAP_WIDTH * perChar) * PAGE;
  return [
    ...lines,
    `  ${total} pages: ${privatePages} private, ${total - privatePages} shared; map (. shared, P private, : mixed; ${perChar} page${perChar === 1 ? "" : "s"} per character):`,
    ...rows.map((row, i) => `  ${hex(first + BigInt(i) * rowBytes).padStart(10)} ${row}`),
  ].join("\n");
}

export class Commands {
  /** the vCPU that step/regs use by default: the one the VM stopped for */
  constructor(private readonly control: Control) {}

  private get current(): number {
    return this.control.stop?.vcpu ?? 0;
  }

  /** Run one command line; returns what to print. Throws only for `quit`'s end of session. */
  async execute(line: string, from: "monitor" | "gdb" = "monitor"): Promise<string> {
    const words = line.trim().split(/\s+/).filter(Boolean);
    if (words.length === 0) return "";
    const def = findCommand(words[0]);
    try {
      if (!def) throw new ControlError(`unknown command ${JSON.stringify(words[0])}; \`help\` lists them`);
      if (from === "gdb" && def.notFromGdb) throw new ControlError(`use gdb's own \`${def.notFromGdb}\` for ${def.name}`);
      return await this.run(def, words);
    } catch (err) {
      if (err instanceof ControlError) return `error: ${err.message}`;
      if (err instanceof TsvmmError) return `error: ${err.describe()}`;
      throw err;
    }
  }

  private async run(def: CommandDef, words: string[]): Promise<string> {
    const c = this.control;
    const args = words.slice(1);
    const arity = (max: number) => {
      if (args.length > max) throw new ControlError(`${def.name} takes at most ${max} argument${max === 1 ? "" : "s"}: ${def.usage}`);
    };
    const number = (text: string, what: string) => {
      if (!/^\d+$/.test(text)) throw new ControlError(`${what} ${JSON.stringify(text)} is not a number: ${def.usage}`);
      return Number(text);
    };
    const range = (text: string | undefined): GpaRange => {
      if (!text) throw new ControlError(`${def.name} needs a RANGE: ${def.usage}`);
      return parseRange(def.name, text);
    };
    switch (def.name) {
      case "help":
        return COMMANDS.map((x) => `  ${x.usage.padEnd(30)} ${x.help}`).join("\n");
      case "continue":
        arity(0);
        return this.runUntilStop(() => c.resume());
      case "next":
        arity(0);
        return this.runUntilStop(() => c.next());
      case "pause":
        arity(0);
        if (c.paused) return "already paused: " + c.why();
        return this.describeStop(await c.pause());
      case "step": {
        arity(1);
        const n = args[0] ? number(args[0], "N") : 1;
        const stop = await c.step(this.current, n);
        if (c.ended) return this.describeEnd();
        return `${stop.text}\n${c.formatRegisters(stop.vcpu)}`;
      }
      case "regs":
        arity(1);
        return c.formatRegisters(args[0] ? number(args[0], "VCPU") : this.current);
      case "sregs": {
        arity(1);
        const { sregs: s } = c.registers(args[0] ? number(args[0], "VCPU") : this.current);
        const seg = (n: keyof typeof s) => {
          const x = s[n] as { selector: number; base: bigint; limit: number; type: number; l: number; db: number; dpl: number; present: number };
          return `  ${String(n).padEnd(3)} sel=0x${x.selector.toString(16).padStart(4, "0")} base=${hex(x.base)} limit=0x${x.limit.toString(16)} type=0x${x.type.toString(16)} dpl=${x.dpl} l=${x.l} db=${x.db} p=${x.present}`;
        };
        return [
          `  cr0=${hex(s.cr0)} cr2=${hex(s.cr2)} cr3=${hex(s.cr3)} cr4=${hex(s.cr4)} cr8=${hex(s.cr8)} efer=${hex(s.efer)} apic_base=${hex(s.apicBase)}`,
          ...(["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"] as const).map(seg),
          `  gdt base=${hex(s.gdt.base)} limit=0x${s.gdt.limit.toString(16)}  idt base=${hex(s.idt.base)} limit=0x${s.idt.limit.toString(16)}`,
        ].join("\n");
      }
      case "vcpus":
        arity(0);
        return c
          .vcpus()
          .map((v) => `  vCPU ${v.index}: ${v.state}${v.rip ? ` at ${v.rip}` : ""}${v.index === this.current && c.paused ? "  (current)" : ""}`)
          .join("\n");
      case "pages":
        arity(1);
        return formatPages(c.pages(args[0] ? range(args[0]) : undefined));
      case "events": {
        arity(1);
        const list = c.events(args[0] ? number(args[0], "N") : 20);
        return list.length ? list.map((e) => `  ${e.time.toFixed(3).padStart(10)} ms  ${e.text}`).join("\n") : "  (no events yet)";
      }
      case "x":
        return this.examine(words[0], args);
      case "convert": {
        arity(2);
        const to = args[1];
        if (to !== "private" && to !== "shared") throw new ControlError(`convert needs private or shared: ${def.usage}`);
        const r = range(args[0]);
        const errno = await c.convert(r, to, "monitor");
        const last = c.events(1)[0];
        return errno === 0 ? `converted ${hex(r.start)}-${hex(r.end)} to ${to}${last ? `: ${last.text}` : ""}` : `error: the engine refused (errno ${errno})${last ? `: ${last.text}` : ""}`;
      }
      case "punch": {
        arity(1);
        const r = range(args[0]);
        const bytes = await c.punch(r);
        return `punched ${hex(r.start)}-${hex(r.end)}: ${bytes >> 10n} KiB of private backing discarded`;
      }
      case "break": {
        if (!args.length) throw new ControlError(`break needs a SPEC: ${def.usage}`);
        const b = c.addBreakpoint(parseBreakSpec(args.join(","), "break"));
        return `breakpoint ${b.id}: ${describeBreakSpec(b.spec)}${b.addr !== undefined ? ` at ${hex(b.addr)}: ${c.symbols.describe(b.addr)}` : ""}`;
      }
      case "watch": {
        arity(2);
        if (!args[0]) throw new ControlError(`watch needs an address: ${def.usage}`);
        if (args[1] !== undefined && args[1] !== "w" && args[1] !== "rw") throw new ControlError(`watch: ${JSON.stringify(args[1])} is not w or rw (x86 cannot watch reads alone): ${def.usage}`);
        const b = c.addBreakpoint(parseBreakSpec(`watch=${args[0]},access=${args[1] ?? "w"}`, "watch"));
        return `watchpoint ${b.id}: ${c.describeWatch(b.watch!)}, ${b.watch!.access === "w" ? "writes" : "reads and writes"} (DR${b.slot})`;
      }
      case "delete":
        arity(1);
        if (!args[0]) throw new ControlError(`delete needs a breakpoint number: ${def.usage}`);
        c.deleteBreakpoint(number(args[0], "ID"));
        return `deleted breakpoint ${args[0]}`;
      case "info": {
        if (args[0] !== "break" && args[0] !== "breakpoints" && args[0] !== "b") throw new ControlError(`info knows only \`info break\``);
        const list = c.list();
        const where = (b: (typeof list)[number]) => (b.watch ? `  ${c.describeWatch(b.watch)}` : b.addr !== undefined ? `  at ${hex(b.addr)}` : "") + (b.slot !== undefined ? ` (DR${b.slot})` : "");
        return list.length ? list.map((b) => `  ${String(b.id).padStart(3)}  ${describeBreakSpec(b.spec).padEnd(50)} hits ${b.hits}${where(b)}`).join("\n") : "  no breakpoints";
      }
      case "why":
        arity(0);
        return c.why();
      case "quit":
        if (!c.ended) c.kill(ExitStatus.INTERRUPTED, "ended from the monitor (quit)");
        return "quit";
    }
    throw new ControlError(`${def.name}: not implemented`);
  }

  private examine(word: string, args: string[]): string {
    const f = parseExamine(word);
    if (args.length !== 1) throw new ControlError("x needs one address: x/FMT ADDR");
    const c = this.control;
    const addr = c.symbols.lookup(args[0])?.addr ?? parseSize("x", args[0]);
    const r = c.readPhysical(addr, f.count * f.size);
    if ("error" in r) return `error: ${hex(r.at)}: ${r.error}`;
    const perLine = Math.max(1, 16 / f.size);
    const lines: string[] = [];
    for (let i = 0; i < f.count; i += perLine) {
      const values: string[] = [];
      for (let k = i; k < Math.min(f.count, i + perLine); k++) {
        let v = 0n;
        for (let b = f.size - 1; b >= 0; b--) v = (v << 8n) | BigInt(r.data[k * f.size + b]);
        values.push(formatValue(v, f));
      }
      const at = addr + BigInt(i * f.size);
      lines.push(`${hex(at)} <${c.symbols.describe(at)}>:\t${values.join(" ")}`);
    }
    return lines.join("\n");
  }

  private async runUntilStop(start: () => Promise<void>): Promise<string> {
    const stopped = this.control.nextStop();
    await start();
    const stop = await stopped;
    return stop ? this.describeStop(stop) : this.describeEnd();
  }

  describeEnd(): string {
    const r = this.control.ended;
    return r ? `the VM ended: ${r.reason} (status ${r.status})` : "the VM is running";
  }

  /** The stop report: what, which vCPU, its registers with RIP symbolised, pages around the GPA */
  describeStop(stop: Stop): string {
    const c = this.control;
    const lines = [`stopped: ${stop.text}`];
    if (c.ended) return lines.concat(this.describeEnd()).join("\n");
    lines.push(c.formatRegisters(stop.vcpu));
    const e = stop.event;
    if (e?.kind === "conversion") {
      const around = 16n * PAGE;
      const ramSize = c.ramSize;
      const start = e.gpa > around ? (e.gpa - around) & ~(PAGE - 1n) : 0n;
      const end = e.gpa + e.size + around < ramSize ? (e.gpa + e.size + around + PAGE - 1n) & ~(PAGE - 1n) : ramSize;
      try {
        lines.push(`  pages around ${hex(e.gpa)}:`, formatPages(c.pages({ start, end })));
      } catch (err) {
        lines.push(`  pages: ${(err as Error).message}`);
      }
    }
    return lines.join("\n");
  }
}
