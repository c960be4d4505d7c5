// Just enough of the i8042 keyboard controller for a guest to reboot through it: the status
// port (0x64) reads "buffers empty" so a guest's wait-for-input-buffer loops end, and the
// "pulse reset line" command (0xfe to 0x64) resets the machine. No keyboard, no mouse: Linux
// finds none through PNP and does not probe further.
import type { PortDevice } from "../../../devices/bus";

export const I8042_DATA = 0x60;
export const I8042_COMMAND = 0x64;
const CMD_PULSE_RESET = 0xfe;

export class I8042 implements PortDevice {
  readonly name = "i8042 (reset only)";

  constructor(private readonly onReset: (how: string) => void) {}

  read(): number {
    return 0;
  }

  write(port: number, _size: number, value: number): void {
    if (port === I8042_COMMAND && (value & 0xff) === CMD_PULSE_RESET) this.onReset("i8042 reset (0xfe to port 0x64)");
  }
}
