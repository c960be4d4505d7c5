// Where the built firmware and test guests live, and how a name on the command line becomes an image.
import * as fs from "node:fs";
import * as path from "node:path";
import { BadImageError } from "./errors";
import { ElfImage, parseElf } from "./machine/elf";
import { findMultibootHeader } from "./boot/multiboot";

/** The checkout root (dist/vmm/guests.js -> ../..) */
export const PROJECT_ROOT = path.resolve(__dirname, "..", "..");
export const GUEST_DIR = path.join(PROJECT_ROOT, "build", "guest");
export const FIRMWARE_PATH = path.join(PROJECT_ROOT, "build", "firmware", "firmware.elf");

export interface GuestEntry {
  name: string;
  path: string;
  description: string;
}

export function listGuests(): GuestEntry[] {
  let files: string[] = [];
  try {
    files = fs.readdirSync(GUEST_DIR).filter((f) => f.endsWith(".elf")).sort();
  } catch {
    return [];
  }
  return files.map((f) => {
    const file = path.join(GUEST_DIR, f);
    let description = "(no description)";
    try {
      const bytes = readImageFile(file, f);
      description =
        findMultibootHeader(bytes) !== undefined
          ? "a multiboot v1 kernel, booted on the PC platform (in-kernel irqchip and PIT, fw_cfg, INIT/SIPI)"
          : (parseElf(f, bytes).description ?? description);
    } catch (err) {
      description = `(unreadable: ${(err as Error).message})`;
    }
    return { name: f.replace(/\.elf$/, ""), path: file, description };
  });
}

/** Larger images are refused before reading: far more than any test guest, small enough to read at once. */
export const MAX_IMAGE_SIZE = 1 << 30; // a whole number of GiB, as the messages say

function readImage(file: string, label: string): ElfImage {
  return parseElf(label, readImageFile(file, label));
}

/** The bytes of a file the user named (a guest, a kernel, an initrd); exit 65 if it cannot be read. */
export function readImageFile(file: string, label: string = file): Buffer {
  const fsError = (err: unknown) =>
    (err as NodeJS.ErrnoException).syscall ? new BadImageError(label, `cannot be read (${(err as NodeJS.ErrnoException).code})`) : err;
  let fd: number;
  try {
    // Stat before opening: opening a device can have effects, and a FIFO blocks until a writer comes.
    checkImageFile(label, fs.statSync(file));
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (err) {
    throw fsError(err);
  }
  try {
    const size = checkImageFile(label, fs.fstatSync(fd)); // the path may have been replaced meanwhile
    const bytes = Buffer.alloc(size);
    let got = 0;
    while (got < size) {
      const n = fs.readSync(fd, bytes, got, size - got, got);
      if (n === 0) break; // the file shrank
      got += n;
    }
    return bytes.subarray(0, got);
  } catch (err) {
    throw fsError(err);
  } finally {
    fs.closeSync(fd);
  }
}

/** Regular files up to MAX_IMAGE_SIZE only: /dev/zero would be read without end. Returns the size. */
function checkImageFile(label: string, stat: fs.Stats): number {
  if (!stat.isFile()) throw new BadImageError(label, `is not a regular file (${fileKind(stat)}); give the path of an ELF file`);
  if (stat.size > MAX_IMAGE_SIZE) throw new BadImageError(label, `is ${stat.size} bytes; guest images are limited to ${MAX_IMAGE_SIZE >> 30} GiB`);
  return stat.size;
}

function fileKind(stat: fs.Stats): string {
  if (stat.isDirectory()) return "a directory";
  if (stat.isCharacterDevice()) return "a character device";
  if (stat.isBlockDevice()) return "a block device";
  if (stat.isFIFO()) return "a FIFO";
  if (stat.isSocket()) return "a socket";
  return "not a file";
}

/** A shipped guest by name (`hello`) or any file by path: its label and bytes. */
export function readGuest(nameOrPath: string): { label: string; bytes: Buffer } {
  const looksLikePath = nameOrPath.includes("/") || nameOrPath.endsWith(".elf");
  if (looksLikePath) return { label: nameOrPath, bytes: readImageFile(nameOrPath) };
  return { label: nameOrPath, bytes: readImageFile(shippedGuestPath(nameOrPath), nameOrPath) };
}

/** A shipped guest by name (`hello`) or any ELF by path (`./my.elf`). */
export function loadGuest(nameOrPath: string): ElfImage {
  const { label, bytes } = readGuest(nameOrPath);
  return parseElf(label, bytes);
}

function shippedGuestPath(nameOrPath: string): string {
  const file = path.join(GUEST_DIR, `${nameOrPath}.elf`);
  if (!fs.existsSync(file)) {
    const known = listGuests().map((g) => g.name);
    throw new BadImageError(
      nameOrPath,
      known.length
        ? `is not a shipped guest (known: ${known.join(", ")}; or give a path to an ELF)`
        : `is not built: run \`npm run build:guests\` (or \`npm install\`)`,
    );
  }
  return file;
}

export function loadFirmware(): ElfImage {
  if (!fs.existsSync(FIRMWARE_PATH))
    throw new BadImageError("firmware", `${FIRMWARE_PATH} is not built: run \`npm run build:guests\``);
  return readImage(FIRMWARE_PATH, "firmware");
}
