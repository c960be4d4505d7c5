import { test } from "node:test";
import assert from "node:assert/strict";
import { Serial8250 } from "../../vmm/devices/serial";
import { PortBus } from "../../vmm/devices/bus";
import { DebugExit } from "../../vmm/devices/debugExit";

function uart() {
  const out: number[] = [];
  let changes = 0;
  const s = new Serial8250(0x3f8, (b) => out.push(...b));
  s.onFastPortsChanged = () => changes++;
  return { s, out, changes: () => changes };
}

test("THR writes are output; LSR says the transmitter is empty", () => {
  const { s, out } = uart();
  for (const c of Buffer.from("hi\n")) s.write(0x3f8, 1, c);
  assert.deepEqual(Buffer.from(out).toString(), "hi\n");
  assert.equal(s.read(0x3fd) & 0x60, 0x60);
  assert.equal(s.read(0x3fd) & 0x01, 0);
});

test("received bytes are read from RBR in order and set data-ready", () => {
  const { s, changes } = uart();
  s.receive(Buffer.from("ab"));
  assert.equal(changes(), 1);
  assert.equal(s.read(0x3fd) & 1, 1);
  assert.deepEqual(s.fastPorts().reads, [{ port: 0x3fd, value: 0x61 }]);
  assert.equal(s.read(0x3f8), 0x61);
  assert.equal(s.read(0x3f8), 0x62);
  assert.equal(s.read(0x3fd) & 1, 0);
  assert.equal(changes(), 2);
  assert.deepEqual(s.fastPorts().reads, [{ port: 0x3fd, value: 0x60 }]);
});

test("DLAB switches port 0 to the divisor latch and takes it off the fast path", () => {
  const { s, out, changes } = uart();
  assert.equal(s.fastPorts().consoleOut, 0x3f8);
  s.write(0x3fb, 1, 0x83);
  assert.equal(changes(), 1);
  assert.equal(s.fastPorts().consoleOut, -1);
  s.write(0x3f8, 1, 0x01);
  s.write(0x3f9, 1, 0x00);
  assert.equal(s.read(0x3f8), 0x01);
  assert.equal(out.length, 0);
  s.write(0x3fb, 1, 0x03);
  assert.equal(s.fastPorts().consoleOut, 0x3f8);
  assert.equal(s.read(0x3fb), 0x03);
});

test("loopback returns written bytes to the receiver", () => {
  const { s, out } = uart();
  s.write(0x3fc, 1, 0x10);
  assert.equal(s.fastPorts().consoleOut, -1);
  s.write(0x3f8, 1, 0x55);
  assert.equal(out.length, 0);
  assert.equal(s.read(0x3f8), 0x55);
});

test("the scratch register keeps its value; IIR reports no interrupt", () => {
  const { s } = uart();
  s.write(0x3ff, 1, 0xa5);
  assert.equal(s.read(0x3ff), 0xa5);
  assert.equal(s.read(0x3fa) & 1, 1);
});

test("the port bus routes to devices and records unclaimed ports", () => {
  const bus = new PortBus();
  let status = -1;
  bus.register(0xf4, 4, new DebugExit((v) => (status = v)));
  bus.write(0xf4, 4, 7);
  assert.equal(status, 7);
  assert.equal(bus.read(0x80, 1), 0xff);
  assert.equal(bus.read(0x80, 2), 0xffff);
  bus.write(0x80, 1, 0);
  assert.deepEqual(bus.unclaimed.get(0x80), { reads: 2, writes: 1 });
  assert.throws(() => bus.register(0xf6, 1, new DebugExit(() => {})), /overlap/);
});

function wiredUart() {
  const levels: number[] = [];
  const out: number[] = [];
  const s = new Serial8250(0x3f8, (b) => out.push(...b), (level) => levels.push(level));
  return { s, levels, out };
}

test("received data raises the IRQ when IER enables it and OUT2 is set; reading RBR lowers it", () => {
  const { s, levels } = wiredUart();
  s.write(0x3f9, 1, 0x01); // IER: received data
  s.receive(Buffer.from("x"));
  assert.deepEqual(levels, [1]);
  assert.equal(s.read(0x3fa) & 0x0f, 0x04, "IIR names received data");
  assert.equal(s.read(0x3f8), 0x78);
  assert.deepEqual(levels, [1, 0]);
  assert.equal(s.read(0x3fa) & 1, 1, "no interrupt pending");
  s.write(0x3fc, 1, 0x00); // OUT2 off gates the line
  s.receive(Buffer.from("y"));
  assert.deepEqual(levels, [1, 0]);
  s.write(0x3fc, 1, 0x08);
  assert.deepEqual(levels, [1, 0, 1]);
});

test("THRI: enabling it raises THRE at once, reading IIR clears it, each THR write re-arms it; THR leaves the fast path", () => {
  const { s, levels, out } = wiredUart();
  assert.equal(s.fastPorts().consoleOut, 0x3f8);
  s.write(0x3f9, 1, 0x02);
  assert.equal(s.fastPorts().consoleOut, -1, "THR writes must reach the device to re-arm THRE");
  assert.deepEqual(levels, [1]);
  assert.equal(s.read(0x3fa) & 0x0f, 0x02);
  assert.deepEqual(levels, [1, 0]);
  assert.equal(s.read(0x3fa) & 0x0f, 0x01, "read once, the THRE interrupt is gone");
  s.write(0x3f8, 1, 0x41);
  assert.deepEqual(levels, [1, 0, 1]);
  assert.deepEqual(out, [0x41]);
  s.write(0x3f9, 1, 0x00);
  assert.deepEqual(levels, [1, 0, 1, 0]);
  assert.equal(s.fastPorts().consoleOut, 0x3f8);
});

test("without a wired IRQ, THRI keeps the native fast path", () => {
  const { s } = uart();
  s.write(0x3f9, 1, 0x02);
  assert.equal(s.fastPorts().consoleOut, 0x3f8);
});
