// A 16550A UART (COM1). Transmit: bytes go to `onOutput`. Receive: `receive()` queues bytes the
// guest reads from RBR. Interrupts (received data, transmitter empty) drive `setIrq` when the VM
// has an irqchip (gated by MCR OUT2, as on a PC). The hot paths (THR writes, LSR reads) may be
// answered natively: `fastPorts()` says which. While the guest wants transmit interrupts, THR
// writes come here instead, because each one re-arms the THRE interrupt.
// Its registers, receive FIFO and interrupt state live in a SharedArrayBuffer (`state`): every
// vCPU thread has its own Serial8250 over the same state, and the main thread one to feed input;
// a lock word keeps each access whole, including the IRQ line change it causes (so the last level
// set is the level of the last state).
import type { PortDevice } from "./bus";
import type { FastPorts } from "../native";

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

// state: Int32 words, then the register bytes, then the FIFO ring
const LOCK = 0;
const RX_HEAD = 1;
const RX_COUNT = 2;
/** the THRE interrupt is pending (set when THR empties or THRI is enabled, cleared by reading it in IIR) */
const THRE_PENDING = 3;
/** the level last given to setIrq */
const IRQ_LEVEL = 4;
const WORDS = 8;
const REG_IER = 0;
const REG_LCR = 1;
const REG_MCR = 2;
const REG_SCR = 3;
const REG_FCR = 4;
const REG_DLL = 5;
const REG_DLM = 6;
const REGS = 8;
const STATE_BYTES = WORDS * 4 + REGS + RX_LIMIT;

export class Serial8250 implements PortDevice {
  readonly name = "serial 16550 (COM1)";
  /** Pass to another thread's Serial8250 to share this UART */
  readonly state: SharedArrayBuffer;
  private readonly words: Int32Array;
  private readonly regs: Uint8Array;
  private readonly rx: Uint8Array;
  /** Called when fastPorts() would give a different answer */
  onFastPortsChanged: () => void = () => {};

  constructor(
    readonly base: number,
    private readonly onOutput: (bytes: Uint8Array) => void,
    /** The interrupt output (IRQ 4 for COM1); absent = not wired. Every Serial8250 over one
     *  state must agree on it. Called with the state's lock held. */
    private readonly setIrq?: (level: number) => void,
    state?: SharedArrayBuffer,
  ) {
    this.state = state ?? new SharedArrayBuffer(STATE_BYTES);
    this.words = new Int32Array(this.state, 0, WORDS);
    this.regs = new Uint8Array(this.state, WORDS * 4, REGS);
    this.rx = new Uint8Array(this.state, WORDS * 4 + REGS, RX_LIMIT);
    if (!state) {
      this.regs[REG_LCR] = 0x03;
      this.regs[REG_MCR] = 0x08;
      this.regs[REG_DLL] = 0x0c;
    }
  }

  /** Run `access` holding the state's lock (held for a few register operations: spin). */
  private locked<T>(access: () => T): T {
    while (Atomics.compareExchange(this.words, LOCK, 0, 1) !== 0);
    try {
      return access();
    } finally {
      Atomics.store(this.words, LOCK, 0);
    }
  }

  /** The pending interrupt with the highest priority, as IIR encodes it (lock held) */
  private pendingInterrupt(): number {
    if (this.regs[REG_IER] & IER_RDI && this.words[RX_COUNT] > 0) return IIR_RDI;
    if (this.regs[REG_IER] & IER_THRI && this.words[THRE_PENDING]) return IIR_THRI;
    return IIR_NO_INT;
  }

  /** Set the IRQ line to what the state says (lock held) */
  private updateIrq(): void {
    const level = this.pendingInterrupt() !== IIR_NO_INT && this.regs[REG_MCR] & MCR_OUT2 ? 1 : 0;
    if (level === this.words[IRQ_LEVEL]) return;
    this.words[IRQ_LEVEL] = level;
    this.setIrq?.(level);
  }

  /** Bytes typed by the user, for the guest to read. Beyond the FIFO limit input is dropped. */
  receive(bytes: Uint8Array): void {
    const wasEmpty = this.locked(() => {
      const count = this.words[RX_COUNT];
      let n = count;
      for (const b of bytes) if (n < RX_LIMIT) this.rx[(this.words[RX_HEAD] + n++) % RX_LIMIT] = b;
      this.words[RX_COUNT] = n;
      this.updateIrq();
      return count === 0 && n > 0;
    });
    if (wasEmpty) this.onFastPortsChanged();
  }

  private lsr(): number {
    return LSR_THRE | LSR_TEMT | (this.words[RX_COUNT] > 0 ? LSR_DR : 0);
  }

  /** Which ports a vCPU thread may answer without asking: THR output (unless transmit interrupts
   *  are on), and LSR reads. */
  fastPorts(): FastPorts {
    return this.locked(() => this.fastPortsNow());
  }

  /**
   * Hand fastPorts() to `store` with the state's lock held: two threads that change the state
   * (typed input on the main thread, the guest reading it on a vCPU thread) then publish in the
   * order of their changes. Computed and stored outside the lock, a stale answer (LSR with data
   * ready after the guest had read it all) could land last, and the guest read the empty
   * receiver forever.
   */
  publishFastPorts(store: (ports: FastPorts) => void): void {
    this.locked(() => store(this.fastPortsNow()));
  }

  private fastPortsNow(): FastPorts {
    const r = this.regs;
    const transmitting = !(r[REG_LCR] & LCR_DLAB) && !(r[REG_MCR] & MCR_LOOP) && !(this.setIrq && r[REG_IER] & IER_THRI);
    return {
      consoleOut: transmitting ? this.base + THR : -1,
      reads: [{ port: this.base + LSR, value: this.lsr() }],
    };
  }

  read(port: number): number {
    let changed = false;
    const value = this.locked(() => {
      const r = this.regs;
      switch (port - this.base) {
        case THR: {
          if (r[REG_LCR] & LCR_DLAB) return r[REG_DLL];
          const count = this.words[RX_COUNT];
          if (count === 0) return 0;
          const head = this.words[RX_HEAD];
          this.words[RX_HEAD] = (head + 1) % RX_LIMIT;
          this.words[RX_COUNT] = count - 1;
          changed = count === 1;
          this.updateIrq();
          return this.rx[head];
        }
        case IER:
          return r[REG_LCR] & LCR_DLAB ? r[REG_DLM] : r[REG_IER];
        case IIR: {
          const id = this.pendingInterrupt();
          if (id === IIR_THRI) {
            this.words[THRE_PENDING] = 0;
            this.updateIrq();
          }
          return id | (r[REG_FCR] & 1 ? IIR_FIFO : 0);
        }
        case LCR:
          return r[REG_LCR];
        case MCR:
          return r[REG_MCR];
        case LSR:
          return this.lsr();
        case MSR:
          // CTS, DSR, DCD asserted; in loopback, mirror MCR's outputs.
          return r[REG_MCR] & MCR_LOOP ? (r[REG_MCR] & 0x0f) << 4 : 0xb0;
        case SCR:
          return r[REG_SCR];
        default:
          return 0xff;
      }
    });
    if (changed) this.onFastPortsChanged();
    return value;
  }

  write(port: number, _size: number, value: number): void {
    const v = value & 0xff;
    const r = this.regs;
    let changed = false;
    let output: "send" | "loop" | undefined;
    this.locked(() => {
      switch (port - this.base) {
        case THR:
          if (r[REG_LCR] & LCR_DLAB) r[REG_DLL] = v;
          else {
            output = r[REG_MCR] & MCR_LOOP ? "loop" : "send";
            // The byte leaves at once: the transmitter is empty again.
            this.words[THRE_PENDING] = 1;
            this.updateIrq();
          }
          return;
        case IER:
          if (r[REG_LCR] & LCR_DLAB) r[REG_DLM] = v;
          else {
            const thriChanged = (r[REG_IER] ^ v) & IER_THRI;
            if (v & IER_THRI && thriChanged) this.words[THRE_PENDING] = 1;
            r[REG_IER] = v & 0x0f;
            changed = thriChanged !== 0 && this.setIrq !== undefined;
            this.updateIrq();
          }
          return;
        case IIR:
          r[REG_FCR] = v;
          if (v & 0x02) {
            this.words[RX_COUNT] = 0;
            changed = true;
            this.updateIrq();
          }
          return;
        case LCR:
          changed = ((r[REG_LCR] ^ v) & LCR_DLAB) !== 0;
          r[REG_LCR] = v;
          return;
        case MCR:
          changed = ((r[REG_MCR] ^ v) & MCR_LOOP) !== 0;
          r[REG_MCR] = v & 0x1f;
          this.updateIrq();
          return;
        case SCR:
          r[REG_SCR] = v;
          return;
        default:
          return; // LSR and MSR are read-only
      }
    });
    if (output === "loop") this.receive(Uint8Array.of(v));
    else if (output === "send") this.onOutput(Uint8Array.of(v));
    if (changed) this.onFastPortsChanged();
  }
}
