// PCI configuration mechanism #1 with no devices: the address register at 0xcf8 (32-bit) keeps
// what the guest writes, the data window 0xcfc-0xcff reads all-ones (no function answers), so
// a guest's bus scan finds nothing. 0xcf9 (reset control) is a separate device.
import { allOnes, type PortDevice } from "../../../devices/bus";

export const PCI_CONFIG_ADDRESS = 0xcf8;
export const PCI_CONFIG_DATA = 0xcfc;

export class PciConfigNoDevices implements PortDevice {
  readonly name = "PCI configuration (no devices)";
  private address = 0;

  read(port: number, size: number): number {
    if (port === PCI_CONFIG_ADDRESS && size === 4) return this.address;
    return allOnes(size);
  }

  write(port: number, size: number, value: number): void {
    if (port === PCI_CONFIG_ADDRESS && size === 4) this.address = value >>> 0;
  }
}
