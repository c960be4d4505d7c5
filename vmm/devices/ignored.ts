// A port that is known and deliberately ignored (e.g. the POST-code port 0x80 that guests write
// for I/O delays): writes are dropped, reads return all-ones, and it is not reported as unclaimed.
import { allOnes, type PortDevice } from "./bus";

export class IgnoredPort implements PortDevice {
  constructor(readonly name: string) {}

  read(_port: number, size: number): number {
    return allOnes(size);
  }

  write(): void {}
}
