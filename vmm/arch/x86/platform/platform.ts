// The PC ports a multiboot or Linux guest touches beside the console and the debug exit, put on
// the port bus in one place. These devices live under arch/x86 because they are the PC's (ISA
// ports, QEMU's x86 fw_cfg); the in-kernel irqchip and PIT (KVM_CREATE_IRQCHIP/PIT2) answer the
// PIC, PIT, IOAPIC and local APIC themselves.
import type { PortBus } from "../../../devices/bus";
import { IgnoredPort } from "../../../devices/ignored";
import { Cmos, CMOS_PORT } from "./cmos";
import { FwCfg, FW_CFG_PORT } from "./fwCfg";
import { I8042, I8042_COMMAND, I8042_DATA } from "./i8042";
import { PCI_CONFIG_ADDRESS, PCI_CONFIG_DATA, PciConfigNoDevices } from "./pciConfig";
import { RESET_CONTROL_PORT, ResetControl } from "./resetControl";

export const POST_CODE_PORT = 0x80;

export interface PcPlatformConfig {
  cpus: number;
  /** All RAM, for fw_cfg */
  ramSize: bigint;
  /** The guest asked for a reset; `how` names the port */
  onReset: (how: string) => void;
}

export function attachPcPlatform(bus: PortBus, config: PcPlatformConfig): void {
  bus.register(FW_CFG_PORT, 2, new FwCfg(config));
  bus.register(CMOS_PORT, 2, new Cmos());
  const pci = new PciConfigNoDevices();
  bus.register(PCI_CONFIG_ADDRESS, 1, pci);
  bus.register(PCI_CONFIG_DATA, 4, pci);
  bus.register(RESET_CONTROL_PORT, 1, new ResetControl(config.onReset));
  const i8042 = new I8042(config.onReset);
  bus.register(I8042_DATA, 1, i8042);
  bus.register(I8042_COMMAND, 1, i8042);
  bus.register(POST_CODE_PORT, 1, new IgnoredPort("POST code (I/O delay)"));
}
