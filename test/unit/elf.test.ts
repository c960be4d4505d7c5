import { test } from "node:test";
import assert from "node:assert/strict";
import { parseElf } from "../../vmm/machine/elf";
import { BadImageError } from "../../vmm/errors";
import { buildElf } from "../support/elfBuilder";

const code = Buffer.from([0xf4, 0xeb, 0xfd]);

test("parses segments, entry and description", () => {
  const elf = buildElf({
    entry: 0x100000n,
    segments: [{ paddr: 0x100000n, data: code, memsz: 0x2000n }, { paddr: 0x200000n, data: Buffer.from("data") }],
    description: "a test guest",
  });
  const image = parseElf("t", elf);
  assert.equal(image.entry, 0x100000n);
  assert.equal(image.segments.length, 2);
  assert.equal(image.segments[0].memSize, 0x2000n);
  assert.deepEqual([...image.segments[0].data], [...code]);
  assert.equal(image.description, "a test guest");
});

const refuses = (elf: Buffer, pattern: RegExp) =>
  assert.throws(() => parseElf("img", elf), (err: unknown) => err instanceof BadImageError && pattern.test(err.message) && /nothing was started/.test(err.message));

test("refuses a truncated file", () => {
  const elf = buildElf({ entry: 0x100000n, segments: [{ paddr: 0x100000n, data: Buffer.alloc(256, 0x90) }] });
  refuses(elf.subarray(0, 40), /truncated/);
  refuses(elf.subarray(0, elf.length - 100), /truncated: segment 0/);
});

test("refuses a wrong architecture, class or type", () => {
  refuses(buildElf({ machine: 183, entry: 0x100000n, segments: [{ paddr: 0x100000n, data: code }] }), /wrong architecture: e_machine=183/);
  refuses(buildElf({ class64: false, entry: 0x100000n, segments: [{ paddr: 0x100000n, data: code }] }), /not a 64-bit ELF/);
  refuses(buildElf({ type: 3, entry: 0x100000n, segments: [{ paddr: 0x100000n, data: code }] }), /not a static executable/);
  refuses(Buffer.from("#!/bin/sh\necho this is not an ELF file at all, just text padding it out\n"), /bad magic/);
});

test("refuses overlapping segments, bad sizes and a stray entry", () => {
  refuses(
    buildElf({ entry: 0x100000n, segments: [{ paddr: 0x100000n, data: code, memsz: 0x2000n }, { paddr: 0x101000n, data: code }] }),
    /segments overlap at 0x101000/,
  );
  refuses(buildElf({ entry: 0x100000n, segments: [{ paddr: 0x100000n, data: Buffer.alloc(16), memsz: 8n }] }), /exceeds memory size/);
  refuses(buildElf({ entry: 0x900000n, segments: [{ paddr: 0x100000n, data: code }] }), /entry point 0x900000 is outside/);
  refuses(buildElf({ entry: 0x100000n, segments: [] }), /no loadable segments/);
});
