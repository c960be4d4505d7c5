// The debug-exit port: a 32-bit `out` of a status ends the VM with that status.
import type { PortDevice } from "./bus";

export class DebugExit implements PortDevice {
  readonly name = "debug exit";

  constructor(private readonly onExit: (status: number) => void) {}

  read(): number {
    return 0xffffffff;
  }

  write(_port: number, _size: number, value: number): void {
    this.onExit(value >>> 0);
  }
}
