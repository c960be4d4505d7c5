// The reset control register at 0xcf9: writing a value with bit 2 (reset CPU) set resets the
// machine. Linux writes 0x02 then 0x06 ("reboot=pci"); bit 1 only selects a hard reset.
import type { PortDevice } from "../../../devices/bus";

export const RESET_CONTROL_PORT = 0xcf9;
const RST_CPU = 0x04;

export class ResetControl implements PortDevice {
  readonly name = "reset control (0xcf9)";
  private value = 0;

  constructor(private readonly onReset: (how: string) => void) {}

  read(): number {
    return this.value;
  }

  write(_port: number, _size: number, value: number): void {
    this.value = value & 0xff & ~RST_CPU;
    if (value & RST_CPU) this.onReset(`reset control (0x${(value & 0xff).toString(16)} to port 0xcf9)`);
  }
}
