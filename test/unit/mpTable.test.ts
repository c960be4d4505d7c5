import { test } from "node:test";
import assert from "node:assert/strict";
import { mpTable, MP_TABLE_GPA } from "../../vmm/arch/x86/mpTable";

const sum = (b: Buffer) => b.reduce((s, x) => s + x, 0) & 0xff;

test("the MP floating pointer and configuration table: checksums, processors, IOAPIC, ISA IRQs", () => {
  const { gpa, data } = mpTable(2);
  assert.equal(gpa, MP_TABLE_GPA);
  const pointer = data.subarray(0, 16);
  assert.equal(pointer.toString("latin1", 0, 4), "_MP_");
  assert.equal(sum(pointer), 0);
  const at = pointer.readUInt32LE(4) - gpa;
  const length = data.readUInt16LE(at + 4);
  const table = data.subarray(at, at + length);
  assert.equal(table.toString("latin1", 0, 4), "PCMP");
  assert.equal(sum(table), 0);
  assert.equal(table.readUInt32LE(36), 0xfee00000);
  const count = table.readUInt16LE(34);
  const kinds: number[] = [];
  for (let o = 44, i = 0; i < count; i++) {
    kinds.push(table[o]);
    if (table[o] === 0) {
      assert.equal(table[o + 1], kinds.length - 1, "APIC ids 0..n-1");
      assert.equal(table[o + 3] & 2, kinds.length === 1 ? 2 : 0, "only vCPU 0 is the boot processor");
    }
    o += table[o] === 0 ? 20 : 8;
  }
  assert.deepEqual(kinds.filter((k) => k === 0).length, 2);
  assert.deepEqual(kinds.filter((k) => k === 2).length, 1);
  assert.deepEqual(kinds.filter((k) => k === 3).length, 16);
  assert.deepEqual(kinds.filter((k) => k === 4).length, 2);
});
