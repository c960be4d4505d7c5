// Tiny multiboot kernels for tests: the header with the address fields (flag 16) and raw 32-bit
// code, loaded at 1 MiB. Written to a temporary file the CLI can boot.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const MAGIC = 0x1badb002;
const LOAD = 0x100000;

/** A file whose code (after a 32-byte header) runs at 1 MiB + 32; extra header flags are ORed in. */
export function kludgeKernel(code: number[], extraFlags = 0): Buffer {
  const flags = (0x10000 | extraFlags) >>> 0;
  const header = Buffer.alloc(32);
  header.writeUInt32LE(MAGIC, 0);
  header.writeUInt32LE(flags, 4);
  header.writeUInt32LE((-(MAGIC + flags)) >>> 0, 8);
  header.writeUInt32LE(LOAD, 12); // header_addr
  header.writeUInt32LE(LOAD, 16); // load_addr
  header.writeUInt32LE(0, 20); // load_end_addr: the whole file
  header.writeUInt32LE(0, 24); // bss_end_addr: none
  header.writeUInt32LE(LOAD + 32, 28); // entry_addr
  return Buffer.concat([header, Buffer.from(code)]);
}

export function writeTemp(name: string, bytes: Buffer): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-mb-"));
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  return file;
}

export const CLI_HLT_LOOP = [0xfa, 0xf4, 0xeb, 0xfd]; // cli; hlt; jmp .-1
export const I8042_RESET = [0xb0, 0xfe, 0xe6, 0x64, 0xeb, 0xfe]; // mov $0xfe,%al; out %al,$0x64; jmp .
export const CF9_RESET = [0xb0, 0x06, 0xba, 0xf9, 0x0c, 0x00, 0x00, 0xee, 0xeb, 0xfe]; // mov $6,%al; mov $0xcf9,%edx; out %al,(%dx); jmp .
