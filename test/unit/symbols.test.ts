// The symboliser against the real shipped guest ELF, cross-checked with binutils' nm.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { execFileSync } from "node:child_process";
import { SymbolTable } from "../../vmm/debug/symbols";
import { GUEST_DIR } from "../../vmm/guests";

const hello = path.join(GUEST_DIR, "hello.elf");

test("symbols of a shipped guest match nm, and addresses are described as name+offset", () => {
  const table = SymbolTable.fromElf(fs.readFileSync(hello));
  const nm = execFileSync("nm", [hello], { encoding: "utf8" });
  const main = /^([0-9a-f]+) T tsvmm_main$/m.exec(nm);
  assert.ok(main, "nm lists tsvmm_main");
  const addr = BigInt("0x" + main[1]);
  assert.equal(table.lookup("tsvmm_main")?.addr, addr);
  assert.equal(table.describe(addr), "tsvmm_main");
  assert.equal(table.describe(addr + 0x3dn), "tsvmm_main+0x3d");
  assert.equal(table.describe(0x10n), "0x10");
  assert.ok(table.complete("tsvmm_").includes("tsvmm_main"));
  assert.ok(table.size >= 5);
});

test("a file without a symbol table gives an empty table, not an error", () => {
  const table = SymbolTable.fromElf(Buffer.from("not an elf"));
  assert.equal(table.size, 0);
  assert.equal(table.describe(0x100000n), "0x100000");
});
