import { test } from "node:test";
import assert from "node:assert/strict";
import { encodeRegister, encodeRegisters, RIP_REGNUM, targetXml, writeRegister, writeRegisters, X86_REGISTERS } from "../../vmm/debug/x86Registers";
import { REG_NAMES, Regs, Sregs } from "../../vmm/kvm/structs";

const regs = () => Object.fromEntries(REG_NAMES.map((n, i) => [n, BigInt(i + 1) * 0x1111n])) as Regs;
const seg = (selector: number) => ({ base: 0n, limit: 0, selector, type: 0, present: 1, dpl: 0, db: 0, s: 1, l: 0, g: 0, avl: 0, unusable: 0 });
const sregs = { cs: seg(8), ss: seg(0x10), ds: seg(0x10), es: seg(0x10), fs: seg(0), gs: seg(0) } as unknown as Sregs;

test("the register set is gdb's i386 core feature: 40 registers, 276 bytes, in 64bit-core.xml order", () => {
  assert.equal(X86_REGISTERS.length, 40);
  assert.deepEqual(
    X86_REGISTERS.slice(0, 24).map((r) => r.name),
    ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "eflags", "cs", "ss", "ds", "es", "fs", "gs"],
  );
  assert.equal(X86_REGISTERS.reduce((n, r) => n + r.bits / 8, 0), 276);
  assert.equal(RIP_REGNUM, 16);
  const xml = targetXml();
  assert.match(xml, /<architecture>i386:x86-64<\/architecture>/);
  assert.match(xml, /<feature name="org.gnu.gdb.i386.core">/);
  assert.match(xml, /<reg name="st0" bitsize="80" type="i387_ext" regnum="24"\/>/);
});

test("g encodes little-endian values in order; x87 registers are unavailable (xx)", () => {
  const g = encodeRegisters(regs(), sregs);
  assert.equal(g.length, 276 * 2);
  assert.equal(g.slice(0, 16), "1111000000000000"); // rax
  assert.equal(g.slice(16 * 16, 17 * 16), "2122010000000000"); // rip = 17 * 0x1111 = 0x12221
  assert.equal(g.slice(17 * 16, 17 * 16 + 8), "32330100"); // eflags: 32 bits of 18 * 0x1111
  assert.equal(g.slice(17 * 16 + 8, 17 * 16 + 16), "08000000"); // cs selector
  assert.equal(g.slice(-8), "xxxxxxxx");
  assert.equal(encodeRegister(RIP_REGNUM, regs(), sregs), "2122010000000000");
  assert.equal(encodeRegister(99, regs(), sregs), undefined);
});

test("P and G write general registers, rip and eflags; segments are refused", () => {
  const r = regs();
  assert.equal(writeRegister(r, 0, Buffer.from("efbeadde00000000", "hex")), undefined);
  assert.equal(r.rax, 0xdeadbeefn);
  assert.equal(writeRegister(r, 17, Buffer.from("46020000", "hex")), undefined);
  assert.equal(r.rflags, 0x246n);
  assert.match(writeRegister(r, 18, Buffer.from("08000000", "hex"))!, /cs is read-only/);
  assert.match(writeRegister(r, 0, Buffer.from("01", "hex"))!, /takes 8 bytes/);
  const block = Buffer.from(encodeRegisters(regs(), sregs).replace(/x/g, "0"), "hex");
  block.writeBigUInt64LE(0x100000n, 16 * 8);
  const w = regs();
  assert.equal(writeRegisters(w, block), undefined);
  assert.equal(w.rip, 0x100000n);
  assert.equal(w.rbx, regs().rbx);
});
