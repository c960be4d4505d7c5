// The conversion tally in shared memory: one row per writer (row 0 the main thread's engine, row
// i + 1 vCPU i's thread, which answers conversions itself on the attributes backend), so no two
// threads ever write the same cell and no write needs an atomic; readers add the rows up.

/** Where a conversion request came from (cli: Machine.convert() from code; monitor and api: the debugger front ends) */
const SOURCES = ["hypercall", "doorbell", "fault", "cli", "monitor", "api"] as const;
export type Source = (typeof SOURCES)[number];
const OUTCOMES = ["to-private", "to-shared", "refused", "denied"] as const;

/** Every key the tally can have, in the order the summary lists them */
export const TALLY_KEYS: readonly string[] = [
  ...SOURCES.flatMap((s) => OUTCOMES.map((o) => `${s}-${o}`)),
  "fault-stopped",
  "fault-repaired",
  "fault-race",
  "prefault-failed",
];
const KEY_INDEX = new Map(TALLY_KEYS.map((k, i) => [k, i]));
const DISCARDED = TALLY_KEYS.length;
const BUSY_NS = DISCARDED + 1;
/** conversions that changed the map */
const CONVERSIONS = BUSY_NS + 1;
/** conversions answered on a vCPU thread */
const ON_VCPU_THREAD = CONVERSIONS + 1;
/** outcomes counted with their time (BUSY_NS is theirs) */
const TIMED = ON_VCPU_THREAD + 1;
const ROW = TIMED + 1;

/** One writer's row: only its own thread writes it */
export class CounterRow {
  constructor(private readonly cells: Float64Array) {}

  /** Count one outcome (a TALLY_KEYS key) that took `ns`, or that was not timed (no `ns`) */
  count(key: string, ns?: number): void {
    const i = KEY_INDEX.get(key);
    if (i === undefined) throw new RangeError(`${key} is not a conversion tally key`);
    this.cells[i]++;
    if (ns === undefined) return;
    this.cells[BUSY_NS] += ns;
    this.cells[TIMED]++;
  }

  /** A conversion that changed pages and discarded `bytes` */
  converted(bytes: number): void {
    this.cells[CONVERSIONS]++;
    this.cells[DISCARDED] += bytes;
  }

  answeredOnVcpuThread(): void {
    this.cells[ON_VCPU_THREAD]++;
  }

  /** This row, and the cells a conversion answered in the run loop counts (NativeConversionPlan) */
  nativeCells(): { tally: Float64Array; cells: Int32Array } {
    const keys = ["hypercall-to-private", "hypercall-to-shared", "doorbell-to-private", "doorbell-to-shared"].map((k) => KEY_INDEX.get(k)!);
    return { tally: this.cells, cells: Int32Array.from([...keys, CONVERSIONS, DISCARDED, ON_VCPU_THREAD]) };
  }
}

export class ConversionCounters {
  readonly buffer: SharedArrayBuffer;
  private readonly cells: Float64Array;
  private readonly rows: number;

  /** New counters for `writers` rows, or another thread's view of `buffer` */
  constructor(writers: number | SharedArrayBuffer) {
    this.buffer = typeof writers === "number" ? new SharedArrayBuffer(writers * ROW * 8) : writers;
    this.cells = new Float64Array(this.buffer);
    this.rows = this.cells.length / ROW;
  }

  /** Row 0: the main thread; row i + 1: vCPU i */
  row(writer: number): CounterRow {
    if (!Number.isInteger(writer) || writer < 0 || writer >= this.rows) throw new RangeError(`no counter row ${writer} (there are ${this.rows})`);
    return new CounterRow(this.cells.subarray(writer * ROW, (writer + 1) * ROW));
  }

  private sum(cell: number): number {
    let n = 0;
    for (let r = 0; r < this.rows; r++) n += this.cells[r * ROW + cell];
    return n;
  }

  /** Counts by source and outcome, e.g. {"hypercall-to-private": 3, "fault-race": 1}; only keys counted */
  tally(): Record<string, number> {
    const out: Record<string, number> = {};
    TALLY_KEYS.forEach((key, i) => {
      const n = this.sum(i);
      if (n) out[key] = n;
    });
    return out;
  }

  get discardedBytes(): number {
    return this.sum(DISCARDED);
  }

  /** The time of the outcomes counted with one (see timed) */
  get busyMs(): number {
    return this.sum(BUSY_NS) / 1e6;
  }

  /** Outcomes counted with their time; the others (answered with nobody listening) were not timed */
  get timed(): number {
    return this.sum(TIMED);
  }

  /** Every outcome counted */
  get outcomes(): number {
    let n = 0;
    for (let i = 0; i < TALLY_KEYS.length; i++) n += this.sum(i);
    return n;
  }

  get conversions(): number {
    return this.sum(CONVERSIONS);
  }

  get onVcpuThreads(): number {
    return this.sum(ON_VCPU_THREAD);
  }
}
