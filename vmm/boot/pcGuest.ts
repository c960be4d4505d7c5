// A guest booted by a standard protocol on the PC platform (in-kernel irqchip and PIT, the PC
// ports, secondary vCPUs waiting for INIT/SIPI): a multiboot kernel or a Linux bzImage. This is
// what the machine needs from either: bytes to put in RAM and the boot vCPU's entry.
import type { NativeVcpu } from "../native";
import type { Layout } from "../machine/layout";
import { pcMemoryMap } from "./memoryMap";
import { buildMultibootBoot, MULTIBOOT_BOOTLOADER_MAGIC, MultibootModule, parseMultiboot } from "./multiboot";
import { buildLinuxBoot, parseBzImage } from "./linux";
import { enterFlat32 } from "../arch/x86/reset";
import { enterLong64, longModeTables } from "../arch/x86/longMode";
import { mpTable } from "../arch/x86/mpTable";

export interface PcGuest {
  kind: "multiboot" | "linux";
  name: string;
  /** What to copy into RAM (GPAs below 4 GiB); memSize > data.length is zero-filled */
  writes: Array<{ gpa: number; data: Buffer; memSize?: number }>;
  /** Put the boot vCPU (0) at the kernel's entry */
  enter(vcpu: NativeVcpu): void;
  /** For the run log */
  summary: string;
}

const hex = (v: number) => "0x" + v.toString(16);

export function multibootGuest(name: string, file: Buffer, layout: Layout, cmdline: string, modules: MultibootModule[]): PcGuest {
  const image = parseMultiboot(name, file);
  const boot = buildMultibootBoot({ image, memoryMap: pcMemoryMap(layout.ram), cmdline, modules });
  return {
    kind: "multiboot",
    name,
    writes: boot.writes,
    enter: (vcpu) => enterFlat32(vcpu, { rip: BigInt(boot.entry), rax: BigInt(MULTIBOOT_BOOTLOADER_MAGIC), rbx: BigInt(boot.infoGpa) }),
    summary: `multiboot kernel ${name}: entry ${hex(boot.entry)}, info block at ${hex(boot.infoGpa)}${modules.length ? `, ${modules.length} module${modules.length > 1 ? "s" : ""}` : ""}`,
  };
}

/** Linux without ACPI finds its processors, IOAPIC and IRQ routing in an MP table. */
export function linuxGuest(name: string, file: Buffer, layout: Layout, cmdline: string, initrd?: { name: string; data: Buffer }): PcGuest {
  const image = parseBzImage(name, file);
  const boot = buildLinuxBoot({ image, memoryMap: pcMemoryMap(layout.ram), cmdline, initrd });
  return {
    kind: "linux",
    name,
    writes: [longModeTables(), mpTable(layout.cpus), ...boot.writes],
    enter: (vcpu) => enterLong64(vcpu, { rip: BigInt(boot.entry64), rsi: BigInt(boot.bootParamsGpa) }),
    summary:
      `Linux ${image.version >> 8}.${image.version & 0xff} protocol bzImage ${name}: kernel at ${hex(boot.kernelStart)}` +
      (boot.initrd ? `, initrd [${hex(boot.initrd.start)}, ${hex(boot.initrd.end)})` : ""),
  };
}

/**
 * What a console line says about how a PC guest ends. Linux prints "reboot: Power down" when it
 * powers off, or, with no power-off method (no ACPI: tsvmm's PC has none), "reboot: Power off not
 * available: System halted instead"; either way its vCPUs then halt (or init's exit panics). A
 * panic is "Kernel panic - not syncing: ...".
 */
export function consoleEvent(line: string): "power-off" | "panic" | undefined {
  if (/\breboot: (Power down|Power off not available: System halted instead)\b/.test(line)) return "power-off";
  if (/Kernel panic - not syncing/.test(line)) return "panic";
  return undefined;
}
