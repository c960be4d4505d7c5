// Port I/O dispatch. Devices see only port numbers and values: no fds, no threads, no KVM.

export interface PortDevice {
  readonly name: string;
  /** Value of an `in` of `size` bytes (1, 2 or 4) at `port` */
  read(port: number, size: number): number;
  write(port: number, size: number, value: number): void;
}

/** What a read of nothing returns: all-ones of the access size */
export const allOnes = (size: number): number => (size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff);

interface Mapping {
  first: number;
  last: number;
  device: PortDevice;
}

/** Addresses (ports, MMIO) that no device claims, with how often each was read and written */
export class UnclaimedAccesses extends Map<number, { reads: number; writes: number }> {
  note(at: number, write: boolean): void {
    let n = this.get(at);
    if (!n) this.set(at, (n = { reads: 0, writes: 0 }));
    if (write) n.writes++;
    else n.reads++;
  }
}

export class PortBus {
  private readonly mappings: Mapping[] = [];
  /** Ports touched that no device claims (reads return all-ones, writes are dropped) */
  readonly unclaimed = new UnclaimedAccesses();

  register(first: number, count: number, device: PortDevice): void {
    const last = first + count - 1;
    const clash = this.mappings.find((m) => first <= m.last && m.first <= last);
    if (clash) throw new Error(`ports 0x${first.toString(16)}-0x${last.toString(16)} of ${device.name} overlap ${clash.device.name}`);
    this.mappings.push({ first, last, device });
  }

  find(port: number): PortDevice | undefined {
    return this.mappings.find((m) => port >= m.first && port <= m.last)?.device;
  }

  read(port: number, size: number): number {
    const device = this.find(port);
    if (device) return device.read(port, size);
    this.unclaimed.note(port, false);
    return allOnes(size);
  }

  write(port: number, size: number, value: number): void {
    const device = this.find(port);
    if (device) device.write(port, size, value);
    else this.unclaimed.note(port, true);
  }
}
