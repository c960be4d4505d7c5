// A 16550A UART (COM1). Transmit: bytes go to `onOutput`. Receive: `receive()` queues bytes the
// guest reads from RBR. No interrupt line is wired (no irqchip yet), so IER is kept but unused.
// The hot paths (THR writes, LSR reads) may be answered natively: `fastPorts()` says which.
import type { PortDevice } from "./bus";

const THR = 0; // also RBR (read), DLL (DLAB)
const IER = 1; // also DLM (DLAB)
const IIR = 2; // FCR on write
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;
const SCR = 7;

const LCR_DLAB = 0x80;
const MCR_LOOP = 0x10;
const LSR_DR = 0x01;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const IIR_NO_INT = 0x01;
const IIR_FIFO = 0xc0;
const RX_LIMIT = 4096;

export class Serial8250 implements PortDevice {
  readonly name = "serial 16550 (COM1)";
  private ier = 0;
  private lcr = 0x03;
  private mcr = 0x08;
  private scr = 0;
  private fcr = 0;
  private dll = 0x0c;
  private dlm = 0;
  private readonly rx: number[] = [];
  /** Called when fastPorts() would give a different answer */
  onFastPortsChanged: () => void = () => {};

  constructor(
    readonly base: number,
    private readonly onOutput: (bytes: Uint8Array) => void,
  ) {}

  /** Bytes typed by the user, for the guest to read. Beyond the FIFO limit input is dropped. */
  receive(bytes: Uint8Array): void {
    const wasEmpty = this.rx.length === 0;
    for (const b of bytes) if (this.rx.length < RX_LIMIT) this.rx.push(b);
    if (wasEmpty && this.rx.length > 0) this.onFastPortsChanged();
  }

  private lsr(): number {
    return LSR_THRE | LSR_TEMT | (this.rx.length > 0 ? LSR_DR : 0);
  }

  /** Which ports a vCPU thread may answer without asking: THR output, and LSR reads. */
  fastPorts(): { consoleOut: number; reads: Array<{ port: number; value: number }> } {
    const transmitting = !(this.lcr & LCR_DLAB) && !(this.mcr & MCR_LOOP);
    return {
      consoleOut: transmitting ? this.base + THR : -1,
      reads: [{ port: this.base + LSR, value: this.lsr() }],
    };
  }

  read(port: number): number {
    switch (port - this.base) {
      case THR:
        if (this.lcr & LCR_DLAB) return this.dll;
        if (this.rx.length === 0) return 0;
        {
          const b = this.rx.shift()!;
          if (this.rx.length === 0) this.onFastPortsChanged();
          return b;
        }
      case IER:
        return this.lcr & LCR_DLAB ? this.dlm : this.ier;
      case IIR:
        return IIR_NO_INT | (this.fcr & 1 ? IIR_FIFO : 0);
      case LCR:
        return this.lcr;
      case MCR:
        return this.mcr;
      case LSR:
        return this.lsr();
      case MSR:
        // CTS, DSR, DCD asserted; in loopback, mirror MCR's outputs.
        return this.mcr & MCR_LOOP ? ((this.mcr & 0x0f) << 4) : 0xb0;
      case SCR:
        return this.scr;
      default:
        return 0xff;
    }
  }

  write(port: number, _size: number, value: number): void {
    const v = value & 0xff;
    switch (port - this.base) {
      case THR:
        if (this.lcr & LCR_DLAB) this.dll = v;
        else if (this.mcr & MCR_LOOP) this.receive(Uint8Array.of(v));
        else this.onOutput(Uint8Array.of(v));
        return;
      case IER:
        if (this.lcr & LCR_DLAB) this.dlm = v;
        else this.ier = v & 0x0f;
        return;
      case IIR:
        this.fcr = v;
        if (v & 0x02) {
          this.rx.length = 0;
          this.onFastPortsChanged();
        }
        return;
      case LCR: {
        const changed = (this.lcr ^ v) & LCR_DLAB;
        this.lcr = v;
        if (changed) this.onFastPortsChanged();
        return;
      }
      case MCR: {
        const changed = (this.mcr ^ v) & MCR_LOOP;
        this.mcr = v & 0x1f;
        if (changed) this.onFastPortsChanged();
        return;
      }
      case SCR:
        this.scr = v;
        return;
      default:
        return; // LSR and MSR are read-only
    }
  }
}
