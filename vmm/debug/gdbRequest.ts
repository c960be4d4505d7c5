// The packets Debian's gdb (13) sends to an x86-64 remote target, parsed into typed requests.
// Anything not listed is "unknown" (the stub answers with an empty packet, meaning unsupported);
// a listed packet with bad fields is "malformed" (the stub answers E.. with the reason).
import { fromHex } from "./gdbPacket";

/** gdb thread ids: -1 = all, 0 = any, n > 0 = vCPU n - 1 */
export type ThreadId = number;

export type VContAction = { action: "c" | "s"; thread: ThreadId } | { action: "t"; thread: ThreadId };

export type GdbRequest =
  | { kind: "supported"; features: string[] }
  | { kind: "noAckMode" }
  | { kind: "xfer"; object: string; annex: string; offset: number; length: number }
  | { kind: "readRegisters" }
  | { kind: "writeRegisters"; data: Buffer }
  | { kind: "readRegister"; regnum: number }
  | { kind: "writeRegister"; regnum: number; value: Buffer }
  | { kind: "readMemory"; addr: bigint; length: number }
  | { kind: "writeMemory"; addr: bigint; data: Buffer }
  | { kind: "breakpoint"; insert: boolean; type: number; addr: bigint; size: number }
  | { kind: "vContQuery" }
  | { kind: "vCont"; actions: VContAction[] }
  | { kind: "continue" }
  | { kind: "step" }
  | { kind: "setThread"; op: "g" | "c"; thread: ThreadId }
  | { kind: "threadAlive"; thread: ThreadId }
  | { kind: "threadList"; first: boolean }
  | { kind: "currentThread" }
  | { kind: "threadExtraInfo"; thread: ThreadId }
  | { kind: "haltReason" }
  | { kind: "attached" }
  | { kind: "monitor"; command: string }
  | { kind: "kill" }
  | { kind: "detach" }
  | { kind: "unknown"; packet: string }
  | { kind: "malformed"; packet: string; reason: string };

const HEX = /^[0-9a-fA-F]+$/;

function parseThread(text: string): ThreadId | undefined {
  if (text === "-1") return -1;
  if (!HEX.test(text)) return undefined;
  return parseInt(text, 16);
}

function parseAddrLength(text: string): { addr: bigint; length: number } | undefined {
  const m = /^([0-9a-fA-F]+),([0-9a-fA-F]+)$/.exec(text);
  if (!m) return undefined;
  return { addr: BigInt("0x" + m[1]), length: parseInt(m[2], 16) };
}

export function parseRequest(payload: Buffer): GdbRequest {
  // Binary data (X) is the only non-text payload; everything else is ASCII.
  const packet = payload.toString("latin1");
  const bad = (reason: string): GdbRequest => ({ kind: "malformed", packet, reason });
  const head = packet[0];
  const rest = packet.slice(1);
  switch (head) {
    case "?":
      return { kind: "haltReason" };
    case "g":
      return rest === "" ? { kind: "readRegisters" } : bad("g takes no arguments");
    case "G": {
      const data = fromHex(rest);
      return data ? { kind: "writeRegisters", data } : bad("G needs hex register data");
    }
    case "p":
      return HEX.test(rest) ? { kind: "readRegister", regnum: parseInt(rest, 16) } : bad("p needs a register number");
    case "P": {
      const m = /^([0-9a-fA-F]+)=([0-9a-fA-F]*)$/.exec(rest);
      const value = m && fromHex(m[2]);
      return m && value ? { kind: "writeRegister", regnum: parseInt(m[1], 16), value } : bad("P needs n=value");
    }
    case "m": {
      const al = parseAddrLength(rest);
      return al ? { kind: "readMemory", ...al } : bad("m needs addr,length");
    }
    case "M": {
      const m = /^([0-9a-fA-F]+),([0-9a-fA-F]+):([0-9a-fA-F]*)$/.exec(rest);
      const data = m && fromHex(m[3]);
      if (!m || !data) return bad("M needs addr,length:hex");
      if (data.length !== parseInt(m[2], 16)) return bad("M length does not match its data");
      return { kind: "writeMemory", addr: BigInt("0x" + m[1]), data };
    }
    case "X": {
      const colon = payload.indexOf(0x3a);
      const al = colon > 0 ? parseAddrLength(payload.toString("latin1", 1, colon)) : undefined;
      if (!al) return bad("X needs addr,length:data");
      const data = payload.subarray(colon + 1);
      if (data.length !== al.length) return bad("X length does not match its data");
      return { kind: "writeMemory", addr: al.addr, data: Buffer.from(data) };
    }
    case "Z":
    case "z": {
      // Z type,addr,kind[;cond...]: conditions (target-side) are not offered in qSupported.
      const m = /^([0-4]),([0-9a-fA-F]+),([0-9a-fA-F]+)$/.exec(rest);
      if (!m) return bad(`${head} needs type,addr,kind`);
      return { kind: "breakpoint", insert: head === "Z", type: Number(m[1]), addr: BigInt("0x" + m[2]), size: parseInt(m[3], 16) };
    }
    case "c":
      // "c addr" (resume at addr) is deprecated; gdb 13 uses vCont. Refuse the address form.
      return rest === "" ? { kind: "continue" } : bad("c with an address is not supported");
    case "s":
      return rest === "" ? { kind: "step" } : bad("s with an address is not supported");
    case "H": {
      const op = rest[0];
      const thread = parseThread(rest.slice(1));
      if ((op !== "g" && op !== "c") || thread === undefined) return bad("H needs g or c and a thread id");
      return { kind: "setThread", op, thread };
    }
    case "T": {
      const thread = parseThread(rest);
      return thread === undefined ? bad("T needs a thread id") : { kind: "threadAlive", thread };
    }
    case "k":
      return { kind: "kill" };
    case "D":
      return { kind: "detach" };
    case "v":
      return parseV(packet, bad);
    case "q":
    case "Q":
      return parseQuery(packet, bad);
    default:
      return { kind: "unknown", packet };
  }
}

function parseV(packet: string, bad: (reason: string) => GdbRequest): GdbRequest {
  if (packet === "vCont?") return { kind: "vContQuery" };
  if (packet.startsWith("vCont;")) {
    const actions: VContAction[] = [];
    for (const part of packet.slice(6).split(";")) {
      const [what, thread] = part.split(":");
      const t = thread === undefined ? -1 : parseThread(thread);
      if (t === undefined) return bad(`vCont: bad thread id in ${part}`);
      // C/S (resume with a signal) act like c/s: a VM has no signals to deliver.
      const a = what[0] === "C" ? "c" : what[0] === "S" ? "s" : what[0];
      if (a !== "c" && a !== "s" && a !== "t") return bad(`vCont: unsupported action ${what}`);
      actions.push({ action: a, thread: t });
    }
    return actions.length ? { kind: "vCont", actions } : bad("vCont without actions");
  }
  return { kind: "unknown", packet };
}

function parseQuery(packet: string, bad: (reason: string) => GdbRequest): GdbRequest {
  if (packet.startsWith("qSupported")) {
    const list = packet.startsWith("qSupported:") ? packet.slice("qSupported:".length).split(";") : [];
    return { kind: "supported", features: list.filter(Boolean) };
  }
  if (packet === "QStartNoAckMode") return { kind: "noAckMode" };
  if (packet.startsWith("qXfer:")) {
    const m = /^qXfer:([^:]+):read:([^:]*):([0-9a-fA-F]+),([0-9a-fA-F]+)$/.exec(packet);
    if (!m) return bad("qXfer needs object:read:annex:offset,length");
    return { kind: "xfer", object: m[1], annex: m[2], offset: parseInt(m[3], 16), length: parseInt(m[4], 16) };
  }
  if (packet === "qfThreadInfo") return { kind: "threadList", first: true };
  if (packet === "qsThreadInfo") return { kind: "threadList", first: false };
  if (packet === "qC") return { kind: "currentThread" };
  if (packet === "qAttached" || packet.startsWith("qAttached:")) return { kind: "attached" };
  if (packet.startsWith("qThreadExtraInfo,")) {
    const thread = parseThread(packet.slice("qThreadExtraInfo,".length));
    return thread === undefined ? bad("qThreadExtraInfo needs a thread id") : { kind: "threadExtraInfo", thread };
  }
  if (packet.startsWith("qRcmd,")) {
    const command = fromHex(packet.slice(6));
    return command ? { kind: "monitor", command: command.toString("utf8") } : bad("qRcmd needs hex text");
  }
  return { kind: "unknown", packet };
}
