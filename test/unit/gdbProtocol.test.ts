// GDB remote protocol: framing, escaping, and the packets gdb 13 sends to an x86-64 target.
import { test } from "node:test";
import assert from "node:assert/strict";
import { checksum, decodePayload, encodePacket, fromHex, PacketReader } from "../../vmm/debug/gdbPacket";
import { parseRequest } from "../../vmm/debug/gdbRequest";

const p = (s: string) => parseRequest(Buffer.from(s, "latin1"));

test("encodePacket: checksum, and $ # } * escaped", () => {
  assert.equal(encodePacket("OK").toString(), "$OK#9a");
  assert.equal(encodePacket("").toString(), "$#00");
  const escaped = encodePacket(Buffer.from([0x24, 0x23, 0x7d, 0x2a, 0x41]));
  assert.equal(escaped.toString("latin1"), "$}\x04}\x03}]}\x0aA#" + checksum(Buffer.from("}\x04}\x03}]}\x0aA", "latin1")).toString(16).padStart(2, "0"));
  // round trip through the reader
  const items = new PacketReader().feed(escaped);
  assert.deepEqual(items, [{ kind: "packet", payload: Buffer.from([0x24, 0x23, 0x7d, 0x2a, 0x41]) }]);
});

test("reader: acks, NAKs, Ctrl-C, packets split across chunks, noise", () => {
  const r = new PacketReader();
  assert.deepEqual(r.feed(Buffer.from("+")), [{ kind: "ack" }]);
  assert.deepEqual(r.feed(Buffer.from("$qSupp")), []);
  assert.deepEqual(r.feed(Buffer.from("orted#3")), []);
  const [item] = r.feed(Buffer.from("7"));
  assert.equal(item.kind, "packet");
  assert.equal(item.kind === "packet" && item.payload.toString(), "qSupported");
  assert.deepEqual(r.feed(Buffer.from([0x03])), [{ kind: "interrupt" }]);
  assert.deepEqual(r.feed(Buffer.from("-")), [{ kind: "nak" }]);
  assert.deepEqual(r.feed(Buffer.from("\r\nxyz")), []);
});

test("reader: a bad checksum is reported (the stub NAKs it), and the stream goes on", () => {
  const r = new PacketReader();
  const items = r.feed(Buffer.from("$g#00$g#67"));
  assert.equal(items[0].kind, "bad-checksum");
  assert.equal(items[0].kind === "bad-checksum" && items[0].expected, 0x67);
  assert.equal(items[1].kind, "packet");
  assert.equal(r.feed(Buffer.from("$g#zz"))[0].kind, "bad-checksum");
});

test("decodePayload expands run-length encoding", () => {
  assert.equal(decodePayload(Buffer.from("0* ")).toString(), "0".repeat(4)); // ' ' = 32 -> 3 more
  assert.equal(decodePayload(Buffer.from("a}]b")).toString(), "a}b");
});

test("fromHex refuses odd and non-hex text", () => {
  assert.deepEqual(fromHex("0aff"), Buffer.from([0x0a, 0xff]));
  assert.equal(fromHex("abc"), undefined);
  assert.equal(fromHex("zz"), undefined);
});

test("parses what gdb 13 sends on connect", () => {
  assert.deepEqual(p("qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;xmlRegisters=i386"), {
    kind: "supported",
    features: ["multiprocess+", "swbreak+", "hwbreak+", "qRelocInsn+", "xmlRegisters=i386"],
  });
  assert.deepEqual(p("qXfer:features:read:target.xml:0,ffb"), { kind: "xfer", object: "features", annex: "target.xml", offset: 0, length: 0xffb });
  assert.deepEqual(p("Hg0"), { kind: "setThread", op: "g", thread: 0 });
  assert.deepEqual(p("Hc-1"), { kind: "setThread", op: "c", thread: -1 });
  assert.deepEqual(p("?"), { kind: "haltReason" });
  assert.deepEqual(p("qfThreadInfo"), { kind: "threadList", first: true });
  assert.deepEqual(p("qsThreadInfo"), { kind: "threadList", first: false });
  assert.deepEqual(p("qC"), { kind: "currentThread" });
  assert.deepEqual(p("qAttached"), { kind: "attached" });
  assert.deepEqual(p("QStartNoAckMode"), { kind: "noAckMode" });
  assert.deepEqual(p("T2"), { kind: "threadAlive", thread: 2 });
});

test("parses registers, memory and breakpoints", () => {
  assert.deepEqual(p("g"), { kind: "readRegisters" });
  assert.deepEqual(p("p10"), { kind: "readRegister", regnum: 16 });
  assert.deepEqual(p("P0=0100000000000000"), { kind: "writeRegister", regnum: 0, value: Buffer.from("0100000000000000", "hex") });
  assert.deepEqual(p("m100000,40"), { kind: "readMemory", addr: 0x100000n, length: 0x40 });
  assert.deepEqual(p("M200000,2:beef"), { kind: "writeMemory", addr: 0x200000n, data: Buffer.from([0xbe, 0xef]) });
  assert.deepEqual(parseRequest(Buffer.concat([Buffer.from("X10,3:"), Buffer.from([0x23, 0x00, 0x7d])])), {
    kind: "writeMemory",
    addr: 0x10n,
    data: Buffer.from([0x23, 0x00, 0x7d]),
  });
  assert.deepEqual(p("Z0,1000d0,1"), { kind: "breakpoint", insert: true, type: 0, addr: 0x1000d0n, size: 1 });
  assert.deepEqual(p("z1,1000d0,1"), { kind: "breakpoint", insert: false, type: 1, addr: 0x1000d0n, size: 1 });
});

test("parses execution control, monitor, kill and detach", () => {
  assert.deepEqual(p("vCont?"), { kind: "vContQuery" });
  assert.deepEqual(p("vCont;s:1;c"), { kind: "vCont", actions: [{ action: "s", thread: 1 }, { action: "c", thread: -1 }] });
  assert.deepEqual(p("vCont;C05:2"), { kind: "vCont", actions: [{ action: "c", thread: 2 }] });
  assert.deepEqual(p("vCont;t"), { kind: "vCont", actions: [{ action: "t", thread: -1 }] });
  assert.deepEqual(p("c"), { kind: "continue" });
  assert.deepEqual(p("s"), { kind: "step" });
  assert.deepEqual(p("qRcmd," + Buffer.from("pages 0x200000+2M").toString("hex")), { kind: "monitor", command: "pages 0x200000+2M" });
  assert.deepEqual(p("k"), { kind: "kill" });
  assert.deepEqual(p("D"), { kind: "detach" });
});

test("unknown packets and bad fields are told apart", () => {
  assert.equal(p("qTStatus").kind, "unknown");
  assert.equal(p("vMustReplyEmpty").kind, "unknown");
  assert.equal(p("!").kind, "unknown");
  for (const bad of ["m100000", "M1,2:ab", "Z9,1,1", "Hx1", "p", "qRcmd,zz", "vCont;q", "c1000"]) assert.equal(p(bad).kind, "malformed", bad);
});
