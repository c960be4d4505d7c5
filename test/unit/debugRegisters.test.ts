// DR0-DR3 and DR7 as the control core hands them to KVM_SET_GUEST_DEBUG (Intel SDM vol. 3, 18.2.4:
// L bit 2n, RW at 16+4n, LEN at 18+4n; LEN 00=1, 01=2, 11=4, 10=8 bytes; RW 00 execute, 01 write, 11 read/write).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Breakpoint, debugRegisters } from "../../vmm/control/control";

const exec = (slot: number, addr: bigint): Breakpoint => ({ id: slot + 1, spec: { kind: "addr", target: "x" }, hits: 0, addr, slot });
const watch = (slot: number, addr: bigint, length: 1 | 2 | 4 | 8, access: "w" | "rw"): Breakpoint => ({
  id: slot + 1, spec: { kind: "watch", target: "x", access }, hits: 0, watch: { addr, length, access }, slot,
});

test("instruction breakpoints and watchpoints share DR0-DR3; DR7 carries each slot's enable, RW and LEN", () => {
  const regs = debugRegisters([exec(0, 0x100000n), watch(1, 0x103000n, 4, "w"), watch(2, 0x103008n, 8, "rw"), watch(3, 0x10300an, 2, "w")]);
  assert.deepEqual(regs.slice(0, 4), [0x100000n, 0x103000n, 0x103008n, 0x10300an]);
  // slot 0: L0, RW=00 LEN=00; slot 1: L1, RW=01 LEN=11; slot 2: L2, RW=11 LEN=10; slot 3: L3, RW=01 LEN=01
  const dr7 = (1n << 0n) | (1n << 2n) | (1n << 4n) | (1n << 6n) | (0b1101n << 20n) | (0b1011n << 24n) | (0b0101n << 28n);
  assert.equal(regs[7], dr7);
  assert.equal(regs[7].toString(16), "5bd00055");
});

test("a slot freed or stepped over is left out; a 1-byte watch has LEN=00", () => {
  const regs = debugRegisters([exec(0, 0x100000n), watch(2, 0x103001n, 1, "w")], 0x100000n);
  assert.deepEqual(regs, [0n, 0n, 0x103001n, 0n, 0n, 0n, 0n, (1n << 4n) | (0b0001n << 24n)]);
  assert.deepEqual(debugRegisters([]), [0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n]);
});
