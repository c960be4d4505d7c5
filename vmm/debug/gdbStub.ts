// The GDB stub: gdb's remote serial protocol over TCP or a Unix socket, in all-stop mode, on the
// control core. vCPU n is gdb thread n + 1. Instruction breakpoints (Z0 and Z1) both use the
// debug registers (KVM_GUESTDBG_USE_HW_BP): int3 is not reported by every KVM (see `tsvmm caps`).
// Watchpoints (Z2 write, Z3 read, Z4 access) share the same four registers; x86 cannot watch reads
// alone, so Z3 watches reads and writes and gdb ignores the hits that changed the value.
import * as net from "node:net";
import * as fs from "node:fs";
import { Control, ControlError, Stop } from "../control/control";
import type { Commands } from "../control/commands";
import { encodePacket, PacketReader, toHex } from "./gdbPacket";
import { GdbRequest, parseRequest } from "./gdbRequest";
import { encodeRegister, encodeRegisters, targetXml, writeRegister, writeRegisters } from "./x86Registers";
import { ExitStatus, UsageError } from "../errors";

export type GdbAddress = { tcp: { host: string; port: number } } | { unix: string };

/** "tcp:PORT", "tcp:HOST:PORT", ":PORT" or "unix:PATH" */
export function parseGdbAddress(option: string, text: string): GdbAddress {
  const t = String(text).trim();
  let m = /^(?:tcp:)?(?:([^:]+):)?(\d+)$/.exec(t.startsWith(":") ? t.slice(1) : t);
  if (m) {
    const port = Number(m[2]);
    if (port < 1 || port > 65535) throw new UsageError(`${option} ${t}: port ${port} is out of range`, "use 1 to 65535");
    return { tcp: { host: m[1] ?? "127.0.0.1", port } };
  }
  m = /^unix:(.+)$/.exec(t);
  if (m) return { unix: m[1] };
  throw new UsageError(`${option} ${JSON.stringify(t)} is not an address`, `write tcp:PORT (e.g. ${option} tcp:1234) or unix:PATH`);
}

export function describeGdbAddress(a: GdbAddress): string {
  return "tcp" in a ? `${a.tcp.host}:${a.tcp.port}` : a.unix;
}

const SIGTRAP = "05";
const SIGINT = "02";
const SIGSEGV = "0b";
/** Z types 2, 3, 4 and the stop reply reasons gdb expects for them */
const WATCH_REASONS: Record<number, string> = { 2: "watch", 3: "rwatch", 4: "awatch" };

export class GdbStub {
  private server?: net.Server;
  private session?: GdbSession;
  private attachWaiters: Array<() => void> = [];

  constructor(
    private readonly control: Control,
    private readonly commands: Commands,
    private readonly log: (line: string) => void,
  ) {}

  /** Listen; a port in use or a bad path is a UsageError naming it. */
  listen(address: GdbAddress): Promise<void> {
    return new Promise((resolve, reject) => {
      const server = net.createServer((socket) => this.accept(socket));
      server.once("error", (err: NodeJS.ErrnoException) => {
        const where = describeGdbAddress(address);
        const inUse = "tcp" in address
          ? new UsageError(`--gdb: ${where} is already in use (EADDRINUSE)`, "pick another port, or end whatever listens there")
          : new UsageError(`--gdb: ${where} already exists and is not a socket (EADDRINUSE)`, "remove it or choose another path");
        reject(err.code === "EADDRINUSE" ? inUse : new UsageError(`--gdb: cannot listen on ${where} (${err.code ?? err.message})`));
      });
      if ("unix" in address) {
        try {
          if (fs.statSync(address.unix).isSocket()) fs.unlinkSync(address.unix); // a stale socket from an earlier run
        } catch {
          // absent: fine
        }
        server.listen(address.unix, () => resolve());
      } else server.listen(address.tcp.port, address.tcp.host, () => resolve());
      this.server = server;
    });
  }

  get port(): number | undefined {
    const a = this.server?.address();
    return a && typeof a === "object" ? a.port : undefined;
  }

  /** Resolves when a debugger connects (--gdb-wait) */
  attached(): Promise<void> {
    return this.session ? Promise.resolve() : new Promise((r) => this.attachWaiters.push(r));
  }

  private accept(socket: net.Socket): void {
    if (this.session) {
      this.log("gdb: a second debugger tried to connect; refused (one at a time)");
      socket.end();
      return;
    }
    this.log(`gdb: debugger connected${socket.remoteAddress ? ` from ${socket.remoteAddress}:${socket.remotePort}` : ""}`);
    const session = new GdbSession(this.control, this.commands, socket, this.log);
    this.session = session;
    for (const w of this.attachWaiters.splice(0)) w();
    socket.on("close", () => {
      session.detach("disconnected");
      if (this.session === session) this.session = undefined;
    });
  }

  close(): void {
    this.session?.close();
    this.server?.close();
  }
}

class GdbSession {
  private readonly reader = new PacketReader();
  private noAck = false;
  private generalThread = 0; // vCPU for g/p/m
  private running = false;
  private detached = false;
  private readonly breakpoints = new Map<string, number>(); // "type:addr:kind" -> control breakpoint id
  private readonly offStop: () => void;
  private readonly offEnd: () => void;
  private lastStop?: { signal: string; vcpu: number; reason?: string };

  constructor(
    private readonly control: Control,
    private readonly commands: Commands,
    private readonly socket: net.Socket,
    private readonly log: (line: string) => void,
  ) {
    socket.setNoDelay(true);
    socket.on("data", (chunk) => this.receive(chunk));
    socket.on("error", () => undefined); // a reset connection ends in "close"
    this.offStop = control.onStop((s) => this.stopped(s));
    this.offEnd = control.onEnd((r) => {
      if (this.running) this.send(`W${(r.status & 0xff).toString(16).padStart(2, "0")}`);
      this.running = false;
    });
  }

  private receive(chunk: Buffer): void {
    for (const item of this.reader.feed(chunk)) {
      switch (item.kind) {
        case "packet":
          if (!this.noAck) this.socket.write("+");
          void this.handle(parseRequest(item.payload)).catch((err) => {
            this.log(`gdb: ${(err as Error).message}`);
            this.send("E01");
          });
          break;
        case "bad-checksum":
          this.socket.write("-"); // gdb retransmits
          break;
        case "interrupt":
          if (this.running && !this.control.ended) void this.control.pause("interrupt", this.generalThread, "interrupted by gdb (Ctrl-C)").catch(() => undefined);
          break;
        case "nak":
        case "ack":
          break; // replies are not retransmitted: TCP and Unix sockets do not lose bytes
      }
    }
  }

  private send(payload: string | Buffer): void {
    if (!this.socket.destroyed) this.socket.write(encodePacket(payload));
  }

  private stopReply(stop: { signal: string; vcpu: number; reason?: string }): string {
    return `T${stop.signal}thread:${(stop.vcpu + 1).toString(16)};${stop.reason ? stop.reason + ";" : ""}`;
  }

  private stopped(s: Stop): void {
    const reason = s.reason === "breakpoint" && s.breakpoint !== undefined ? this.stopReason(s.breakpoint) : undefined;
    this.lastStop = { signal: s.reason === "interrupt" ? SIGINT : s.reason === "fault" ? SIGSEGV : SIGTRAP, vcpu: s.vcpu, reason };
    this.generalThread = s.vcpu;
    if (this.running) {
      this.running = false;
      this.send(this.stopReply(this.lastStop));
    }
  }

  /** The stop reply's reason field: swbreak:, hwbreak:, or watch:/rwatch:/awatch: with the address */
  private stopReason(id: number): string | undefined {
    for (const [key, bid] of this.breakpoints) {
      if (bid !== id) continue;
      const [type, addr] = key.split(":");
      return WATCH_REASONS[Number(type)] ? `${WATCH_REASONS[Number(type)]}:${BigInt(addr).toString(16)}` : type === "0" ? "swbreak:" : "hwbreak:";
    }
    return undefined;
  }

  private thread(t: number): number {
    return t <= 0 ? this.generalThread : t - 1;
  }

  private ended(): string | undefined {
    const r = this.control.ended;
    return r ? `W${(r.status & 0xff).toString(16).padStart(2, "0")}` : undefined;
  }

  private async handle(req: GdbRequest): Promise<void> {
    const c = this.control;
    const reply = (p: string | Buffer) => this.send(p);
    const error = (err: unknown) => {
      if (err instanceof ControlError) {
        this.log(`gdb: ${err.message}`);
        return reply("E01");
      }
      throw err;
    };
    try {
      switch (req.kind) {
        case "supported":
          return reply("PacketSize=4000;qXfer:features:read+;swbreak+;hwbreak+;vContSupported+;QStartNoAckMode+");
        case "noAckMode":
          reply("OK");
          this.noAck = true;
          return;
        case "xfer": {
          if (req.object !== "features" || req.annex !== "target.xml") return reply("E00");
          const xml = Buffer.from(targetXml());
          const chunk = xml.subarray(req.offset, req.offset + req.length);
          return reply(Buffer.concat([Buffer.from(req.offset + req.length >= xml.length ? "l" : "m"), chunk]));
        }
        case "haltReason": {
          const end = this.ended();
          if (end) return reply(end);
          // Attaching stops the target (all-stop); with --gdb-wait it is stopping at its start
          await c.firstStop;
          if (!c.paused && !c.ended) await c.pause("interrupt", 0, "paused: gdb attached");
          const s = c.stop!;
          this.generalThread = s.vcpu;
          return reply(this.stopReply(this.lastStop ?? { signal: SIGTRAP, vcpu: s.vcpu }));
        }
        case "attached":
          return reply("1");
        case "threadList":
          return reply(req.first ? "m" + Array.from({ length: c.cpus }, (_, i) => (i + 1).toString(16)).join(",") : "l");
        case "currentThread":
          return reply(`QC${(this.generalThread + 1).toString(16)}`);
        case "threadAlive":
          return reply(req.thread >= 1 && req.thread <= c.cpus ? "OK" : "E01");
        case "threadExtraInfo": {
          const v = c.vcpus()[this.thread(req.thread)];
          return reply(toHex(Buffer.from(v ? `vCPU ${v.index} ${v.state}` : "no such vCPU")));
        }
        case "setThread":
          if (req.op === "g") {
            if (req.thread > c.cpus) return reply("E01");
            this.generalThread = this.thread(req.thread);
          }
          return reply("OK");
        case "readRegisters": {
          const { regs, sregs } = c.registers(this.generalThread);
          return reply(encodeRegisters(regs, sregs));
        }
        case "readRegister": {
          const { regs, sregs } = c.registers(this.generalThread);
          const value = encodeRegister(req.regnum, regs, sregs);
          return reply(value ?? "E00");
        }
        case "writeRegisters":
        case "writeRegister": {
          const { regs } = c.registers(this.generalThread);
          const problem = req.kind === "writeRegisters" ? writeRegisters(regs, req.data) : writeRegister(regs, req.regnum, req.value);
          if (problem) {
            this.log(`gdb: register write refused: ${problem}`);
            return reply("E01");
          }
          c.setRegisters(this.generalThread, regs);
          return reply("OK");
        }
        case "readMemory": {
          const r = c.readVirtual(this.generalThread, req.addr, Math.min(req.length, 0x1000));
          return reply("data" in r ? toHex(r.data) : "E14");
        }
        case "writeMemory": {
          const r = c.writeVirtual(this.generalThread, req.addr, req.data);
          return reply("data" in r ? "OK" : "E14");
        }
        case "breakpoint":
          return reply(this.breakpoint(req.insert, req.type, req.addr, req.size));
        case "vContQuery":
          return reply("vCont;c;C;s;S;t");
        case "vCont": {
          const step = req.actions.find((a) => a.action === "s");
          if (step) return await this.step(this.thread(step.thread));
          if (req.actions.some((a) => a.action === "c")) return await this.continue();
          // "t": stop; everything is stopped already in all-stop mode
          return reply("OK");
        }
        case "continue":
          return await this.continue();
        case "step":
          return await this.step(this.generalThread);
        case "monitor": {
          const out = await this.commands.execute(req.command, "gdb");
          if (out === "quit") return reply("OK");
          return reply(toHex(Buffer.from(out.endsWith("\n") || !out ? out : out + "\n")));
        }
        case "kill":
          this.log("gdb: kill: ending the VM");
          c.kill(ExitStatus.INTERRUPTED, "killed by the debugger (gdb kill)");
          return reply("OK");
        case "detach":
          reply("OK");
          this.detach("detached");
          return;
        case "malformed":
          this.log(`gdb: malformed packet ${JSON.stringify(req.packet.slice(0, 60))}: ${req.reason}`);
          return reply("E01");
        case "unknown":
          return reply("");
      }
    } catch (err) {
      return error(err);
    }
  }

  /** Z/z 0-4: kind is the instruction length (0, 1) or the number of bytes watched (2-4) */
  private breakpoint(insert: boolean, type: number, addr: bigint, kind: number): string {
    const key = `${type}:${addr}:${type >= 2 ? kind : 0}`;
    if (insert) {
      if (this.breakpoints.has(key)) return "OK";
      const target = "0x" + addr.toString(16);
      // Bad lengths, misaligned addresses, no free debug register, or a KVM on which they do
      // not work (see `tsvmm caps`): an error reply, and the reason in tsvmm's log.
      const b = this.control.addBreakpoint(type <= 1 ? { kind: "addr", target } : { kind: "watch", target, length: kind, access: type === 2 ? "w" : "rw" });
      this.breakpoints.set(key, b.id);
    } else {
      const id = this.breakpoints.get(key);
      if (id !== undefined) {
        this.breakpoints.delete(key);
        this.control.deleteBreakpoint(id);
      }
    }
    return "OK";
  }

  private async continue(): Promise<void> {
    const end = this.ended();
    if (end) return this.send(end);
    this.running = true;
    await this.control.resume();
  }

  private async step(vcpu: number): Promise<void> {
    const end = this.ended();
    if (end) return this.send(end);
    const stop = await this.control.step(vcpu, 1);
    const after = this.ended();
    if (after) return this.send(after);
    this.lastStop = { signal: SIGTRAP, vcpu: stop.vcpu };
    this.generalThread = stop.vcpu;
    this.send(this.stopReply(this.lastStop));
  }

  /** The debugger went away: drop its breakpoints and let the VM run on. */
  detach(how: string): void {
    if (this.detached) return;
    this.detached = true;
    this.offStop();
    this.offEnd();
    for (const id of this.breakpoints.values()) {
      try {
        this.control.deleteBreakpoint(id);
      } catch {
        // already gone
      }
    }
    this.breakpoints.clear();
    this.log(`gdb: debugger ${how}; the VM runs on`);
    if (!this.control.ended && this.control.paused) void this.control.resume().catch(() => undefined);
    if (how === "detached") this.socket.end();
  }

  close(): void {
    this.detach("closed");
    this.socket.destroy();
  }
}
