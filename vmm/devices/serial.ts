// A 16550A UART (COM1). Transmit: bytes go to `onOutput`. Receive: `receive()` queues bytes the
// guest reads from RBR. Interrupts (received data, transmitter empty) drive `setIrq` when the VM
// has an irqchip (gated by MCR OUT2, as on a PC). The hot paths (THR writes, LSR reads) may be
// answered natively: `fastPorts()` says which. While the guest wants transmit interrupts, THR
// writes come here instead, because each one re-arms the THRE interrupt.
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
const MCR_OUT2 = 0x08;
const MCR_LOOP = 0x10;
const IER_RDI = 0x01;
const IER_THRI = 0x02;
const IIR_THRI = 0x02;
const IIR_RDI = 0x04;
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
  /** The THRE interrupt is pending (set when THR empties or THRI is enabled, cleared by reading it in IIR) */
  private threPending = false;
  private irqLevel = 0;
  /** Called when fastPorts() would give a different answer */
  onFastPortsChanged: () => void = () => {};

  constructor(
    readonly base: number,
    private readonly onOutput: (bytes: Uint8Array) => void,
    /** The interrupt output (IRQ 4 for COM1); absent = not wired */
    private readonly setIrq?: (level: number) => void,
  ) {}

  /** The pending interrupt with the highest priority, as IIR encodes it */
  private pendingInterrupt(): number {
    if (this.ier & IER_RDI && this.rx.length > 0) return IIR_RDI;
    if (this.ier & IER_THRI && this.threPending) return IIR_THRI;
    return IIR_NO_INT;
  }

  private updateIrq(): void {
    const level = this.pendingInterrupt() !== IIR_NO_INT && this.mcr & MCR_OUT2 ? 1 : 0;
    if (level === this.irqLevel) return;
    this.irqLevel = level;
    this.setIrq?.(level);
  }

  /** Bytes typed by the user, for the guest to read. Beyond the FIFO limit input is dropped. */
  receive(bytes: Uint8Array): void {
    const wasEmpty = this.rx.length === 0;
    for (const b of bytes) if (this.rx.length < RX_LIMIT) this.rx.push(b);
    if (wasEmpty && this.rx.length > 0) this.onFastPortsChanged();
    this.updateIrq();
  }

  private lsr(): number {
    return LSR_THRE | LSR_TEMT | (this.rx.length > 0 ? LSR_DR : 0);
  }

  /** Which ports a vCPU thread may answer without asking: THR output (unless transmit interrupts
   *  are on), and LSR reads. */
  fastPorts(): { consoleOut: number; reads: Array<{ port: number; value: number }> } {
    const transmitting = !(this.lcr & LCR_DLAB) && !(this.mcr & MCR_LOOP) && !(this.setIrq && this.ier & IER_THRI);
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
          this.updateIrq();
          return b;
        }
      case IER:
        return this.lcr & LCR_DLAB ? this.dlm : this.ier;
      case IIR: {
        const id = this.pendingInterrupt();
        if (id === IIR_THRI) {
          this.threPending = false;
          this.updateIrq();
        }
        return id | (this.fcr & 1 ? IIR_FIFO : 0);
      }
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
        else {
          if (this.mcr & MCR_LOOP) this.receive(Uint8Array.of(v));
          else this.onOutput(Uint8Array.of(v));
          // The byte leaves at once: the transmitter is empty again.
          this.threPending = true;
          this.updateIrq();
        }
        return;
      case IER:
        if (this.lcr & LCR_DLAB) this.dlm = v;
        else {
          const thriChanged = (this.ier ^ v) & IER_THRI;
          if (v & IER_THRI && thriChanged) this.threPending = true;
          this.ier = v & 0x0f;
          if (thriChanged && this.setIrq) this.onFastPortsChanged();
          this.updateIrq();
        }
        return;
      case IIR:
        this.fcr = v;
        if (v & 0x02) {
          this.rx.length = 0;
          this.onFastPortsChanged();
          this.updateIrq();
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
        this.updateIrq();
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
