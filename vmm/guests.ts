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
      const bytes = fs.readFileSync(file);
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

/** The bytes of a file the user named (an image, an initrd); exit 65 if it cannot be read. */
export function readImageFile(file: string, label: string = file): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new BadImageError(label, `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

function readImage(file: string, label: string): ElfImage {
  return parseElf(label, readImageFile(file, label));
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
