// Where the built firmware and test guests live, and how a name on the command line becomes an image.
import * as fs from "node:fs";
import * as path from "node:path";
import { BadImageError } from "./errors";
import { ElfImage, parseElf } from "./machine/elf";

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
      description = parseElf(f, fs.readFileSync(file)).description ?? description;
    } catch (err) {
      description = `(unreadable: ${(err as Error).message})`;
    }
    return { name: f.replace(/\.elf$/, ""), path: file, description };
  });
}

function readImage(file: string, label: string): ElfImage {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw new BadImageError(label, `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return parseElf(label, bytes);
}

/** A shipped guest by name (`hello`) or any ELF by path (`./my.elf`). */
export function loadGuest(nameOrPath: string): ElfImage {
  const looksLikePath = nameOrPath.includes("/") || nameOrPath.endsWith(".elf");
  if (looksLikePath) return readImage(nameOrPath, nameOrPath);
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
  return readImage(file, nameOrPath);
}

export function loadFirmware(): ElfImage {
  if (!fs.existsSync(FIRMWARE_PATH))
    throw new BadImageError("firmware", `${FIRMWARE_PATH} is not built: run \`npm run build:guests\``);
  return readImage(FIRMWARE_PATH, "firmware");
}
