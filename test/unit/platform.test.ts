import { test } from "node:test";
import assert from "node:assert/strict";
import { PortBus } from "../../vmm/devices/bus";
import { attachPcPlatform } from "../../vmm/arch/x86/platform/platform";
import { Cmos } from "../../vmm/arch/x86/platform/cmos";

function pc(cpus = 2, ramSize = 5n << 30n) {
  const bus = new PortBus();
  const resets: string[] = [];
  attachPcPlatform(bus, { cpus, ramSize, onReset: (how) => resets.push(how) });
  return { bus, resets };
}

function fwCfgItem(bus: PortBus, key: number, length: number): Buffer {
  bus.write(0x510, 2, key);
  return Buffer.from(Array.from({ length }, () => bus.read(0x511, 1)));
}

test("fw_cfg: signature, interface id, CPU count and RAM size, read a byte at a time", () => {
  const { bus } = pc(3, 5n << 30n);
  assert.equal(fwCfgItem(bus, 0x00, 4).toString("latin1"), "QEMU");
  assert.equal(fwCfgItem(bus, 0x01, 4).readUInt32LE(0), 1);
  assert.equal(fwCfgItem(bus, 0x05, 2).readUInt16LE(0), 3);
  assert.equal(fwCfgItem(bus, 0x03, 8).readBigUInt64LE(0), 5n << 30n);
  // selecting again rewinds; reading past the end and unknown keys give zeros
  assert.deepEqual([...fwCfgItem(bus, 0x05, 4)], [3, 0, 0, 0]);
  assert.deepEqual([...fwCfgItem(bus, 0x1234, 2)], [0, 0]);
  assert.equal(bus.unclaimed.size, 0);
});

test("CMOS: the clock in BCD from `now`, valid-RAM status, and scratch bytes keep writes", () => {
  const cmos = new Cmos(() => new Date(Date.UTC(2026, 10, 27, 9, 45, 37)));
  const reg = (i: number) => (cmos.write(0x70, 1, i | 0x80), cmos.read(0x71));
  assert.deepEqual([reg(0), reg(2), reg(4), reg(7), reg(8), reg(9), reg(0x32)], [0x37, 0x45, 0x09, 0x27, 0x11, 0x26, 0x20]);
  assert.equal(reg(0x0d), 0x80);
  assert.equal(reg(0x0a) & 0x80, 0, "no update in progress");
  cmos.write(0x70, 1, 0x40);
  cmos.write(0x71, 1, 0x5a);
  assert.equal(reg(0x40), 0x5a);
});

test("PCI configuration: the address register keeps its value and every function reads as absent", () => {
  const { bus } = pc();
  bus.write(0xcf8, 4, 0x80000000);
  assert.equal(bus.read(0xcf8, 4), 0x80000000);
  assert.equal(bus.read(0xcfc, 4), 0xffffffff);
  assert.equal(bus.read(0xcfe, 2), 0xffff);
  assert.equal(bus.unclaimed.size, 0);
});

test("reset: 0xfe to the i8042 command port, or bit 2 to 0xcf9; other writes do nothing", () => {
  const { bus, resets } = pc();
  bus.write(0x64, 1, 0xd1);
  bus.write(0xcf9, 1, 0x02);
  assert.deepEqual(resets, []);
  assert.equal(bus.read(0x64, 1) & 0x02, 0, "the input buffer reads empty");
  bus.write(0x64, 1, 0xfe);
  bus.write(0xcf9, 1, 0x06);
  assert.equal(resets.length, 2);
  assert.match(resets[0], /i8042/);
  assert.match(resets[1], /0xcf9/);
});

test("port 0x80 is ignored without being reported as unclaimed", () => {
  const { bus } = pc();
  bus.write(0x80, 1, 0);
  assert.equal(bus.read(0x80, 1), 0xff);
  assert.equal(bus.unclaimed.size, 0);
});
