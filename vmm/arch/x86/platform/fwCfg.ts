// QEMU's firmware configuration device, legacy port interface: a 16-bit write of a key to the
// selector (0x510) selects an item and rewinds it; byte reads of the data port (0x511) walk it.
// Only what multiboot test kernels read: the signature, the interface id, RAM size and CPU
// count. Unknown keys and reads past an item's end return 0, as QEMU does. No DMA interface.
import type { PortDevice } from "../../../devices/bus";

export const FW_CFG_PORT = 0x510;
export const FwCfgKey = { SIGNATURE: 0x00, ID: 0x01, RAM_SIZE: 0x03, NB_CPUS: 0x05, MAX_CPUS: 0x0f, FILE_DIR: 0x19 } as const;
/** FW_CFG_ID bit 0: the traditional (port) interface */
const ID_TRADITIONAL = 1;

export class FwCfg implements PortDevice {
  readonly name = "fw_cfg";
  private readonly items = new Map<number, Buffer>();
  private selected: Buffer = Buffer.alloc(0);
  private offset = 0;

  constructor(config: { cpus: number; ramSize: bigint }) {
    const u16 = (v: number) => Buffer.from([v & 0xff, v >> 8]);
    const u32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };
    const u64 = (v: bigint) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(v); return b; };
    this.items.set(FwCfgKey.SIGNATURE, Buffer.from("QEMU", "latin1"));
    this.items.set(FwCfgKey.ID, u32(ID_TRADITIONAL));
    this.items.set(FwCfgKey.RAM_SIZE, u64(config.ramSize));
    this.items.set(FwCfgKey.NB_CPUS, u16(config.cpus));
    this.items.set(FwCfgKey.MAX_CPUS, u16(config.cpus));
    this.items.set(FwCfgKey.FILE_DIR, Buffer.alloc(4)); // no files (big-endian count 0)
  }

  read(port: number, size: number): number {
    if (port !== FW_CFG_PORT + 1) return 0;
    let value = 0;
    for (let i = 0; i < size; i++) value |= (this.selected[this.offset++] ?? 0) << (8 * i);
    return value >>> 0;
  }

  write(port: number, _size: number, value: number): void {
    if (port !== FW_CFG_PORT) return; // writes to items are not supported (QEMU ignores them too)
    this.selected = this.items.get(value & 0x3fff) ?? Buffer.alloc(0);
    this.offset = 0;
  }
}
