// The MC146818 CMOS RTC at 0x70 (index, bit 7 = NMI mask) and 0x71 (data), minimally: the clock
// in BCD 24-hour mode from `now`, status registers saying "valid, no update in progress", and
// 128 bytes of CMOS memory that keep what the guest writes. No alarms, no periodic interrupt.
import type { PortDevice } from "../../../devices/bus";

export const CMOS_PORT = 0x70;
const SECONDS = 0x00, MINUTES = 0x02, HOURS = 0x04, WEEKDAY = 0x06, DAY = 0x07, MONTH = 0x08, YEAR = 0x09;
const STATUS_A = 0x0a, STATUS_B = 0x0b, STATUS_C = 0x0c, STATUS_D = 0x0d, CENTURY = 0x32;
const STATUS_B_24H = 0x02;
const STATUS_D_VALID = 0x80;

const bcd = (v: number) => ((Math.floor(v / 10) % 10) << 4) | v % 10;

export class Cmos implements PortDevice {
  readonly name = "CMOS/RTC";
  private index = 0;
  private readonly memory = new Uint8Array(128);

  constructor(private readonly now: () => Date = () => new Date()) {
    this.memory[STATUS_A] = 0x26; // 32.768 kHz time base, 1024 Hz rate; UIP clear
    this.memory[STATUS_B] = STATUS_B_24H;
  }

  read(port: number): number {
    if (port === CMOS_PORT) return 0xff;
    const t = this.now();
    switch (this.index) {
      case SECONDS: return bcd(t.getUTCSeconds());
      case MINUTES: return bcd(t.getUTCMinutes());
      case HOURS: return bcd(t.getUTCHours());
      case WEEKDAY: return t.getUTCDay() + 1;
      case DAY: return bcd(t.getUTCDate());
      case MONTH: return bcd(t.getUTCMonth() + 1);
      case YEAR: return bcd(t.getUTCFullYear() % 100);
      case CENTURY: return bcd(Math.floor(t.getUTCFullYear() / 100));
      case STATUS_C: return 0;
      case STATUS_D: return STATUS_D_VALID;
      default: return this.memory[this.index];
    }
  }

  write(port: number, _size: number, value: number): void {
    if (port === CMOS_PORT) this.index = value & 0x7f;
    else if (this.index !== STATUS_C && this.index !== STATUS_D) this.memory[this.index] = value & 0xff;
  }
}
