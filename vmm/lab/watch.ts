// Watching a running lab from the host: the console (init's markers, panics), the command's
// stdout and stderr (copied to ours as they grow), and the boot and command time limits.
// Markers written by vmm/lab/init.sh on ttyS0: TSVMM-LAB-STAGE init|modules|command [uptime],
// TSVMM-LAB-FAIL <reason>, TSVMM-LAB-EXIT <status> [uptime].
import * as fs from "node:fs";
import * as path from "node:path";
import { Progress, seconds } from "./proc";

/** A file another process appends to, read from where the last read stopped. */
class Follower {
  private pos = 0;
  private fd: number | undefined;
  constructor(private readonly file: string) {}

  /** New bytes since the last call. */
  read(): Buffer {
    if (this.fd === undefined) {
      try {
        this.fd = fs.openSync(this.file, "r");
      } catch {
        return Buffer.alloc(0);
      }
    }
    const size = fs.fstatSync(this.fd).size;
    if (size < this.pos) this.pos = 0; // truncated by the lab's `>` redirect
    if (size === this.pos) return Buffer.alloc(0);
    const buf = Buffer.alloc(size - this.pos);
    const n = fs.readSync(this.fd, buf, 0, buf.length, this.pos);
    this.pos += n;
    return buf.subarray(0, n);
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}


export type KillReason = "boot" | "timeout" | "interrupt" | "linger" | "frozen";

export interface WatchSpec {
  consoleLog: string;
  labio: string;
  argv: string[];
  bootTimeoutMs: number;
  timeoutMs: number;
  progress: Progress;
  verbose: boolean;
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
}

/** How long the lab may take after its command ended before QEMU is killed. */
const LINGER_MS = 30_000;
/** The lab's clock (init.sh writes its uptime to labio/clock every 5 s while the command runs)
 *  standing still this long means the lab froze: its kernel no longer runs its own timers. Seen
 *  in one-CPU labs under TCG, both with QEMU idle for good and with QEMU busy at 100% (its vCPU
 *  spinning with interrupts off while the lab kernel's timer interrupt stays pending). */
export const FROZEN_MS = 60_000;
/** While booting, say how long it has taken so far this often. */
const BOOT_TICK_MS = 10_000;

export class LabWatcher {
  readonly started = Date.now();
  /** the last 200 console lines */
  readonly consoleLines: string[] = [];
  commandAt = 0;
  endAt = 0;
  exitMarker: number | undefined;
  failReason: string | undefined;
  panic = false;
  private partial = "";
  private nextBootTick = this.started + BOOT_TICK_MS;
  private labClock = "";
  private labClockChangedAt = this.started;
  private readonly console: Follower;
  private readonly stdout: Follower;
  private readonly stderr: Follower;

  constructor(private readonly spec: WatchSpec) {
    this.console = new Follower(spec.consoleLog);
    this.stdout = new Follower(path.join(spec.labio, "stdout"));
    this.stderr = new Follower(path.join(spec.labio, "stderr"));
  }

  /** Read what is new; returns why QEMU must be killed now, if it must. */
  poll(now = Date.now()): KillReason | undefined {
    const c = this.console.read();
    if (c.length) {
      const lines = (this.partial + c.toString("utf8")).split(/\r?\n/);
      this.partial = lines.pop() ?? "";
      for (const raw of lines) this.line(raw.replace(/\r/g, ""));
    }
    const o = this.stdout.read();
    if (o.length) this.spec.out.write(o);
    const e = this.stderr.read();
    if (e.length) this.spec.err.write(e);

    if (!this.commandAt && this.exitMarker === undefined) {
      if (now - this.started > this.spec.bootTimeoutMs) return "boot";
      if (now >= this.nextBootTick) {
        this.nextBootTick += BOOT_TICK_MS;
        const last = this.consoleLines.filter((l) => l.trim()).slice(-1)[0];
        this.spec.progress.say(`  still booting: ${seconds(now - this.started)} so far${last ? ` (console: ${last.trim().slice(0, 100)})` : ""}`);
      }
    }
    if (this.commandAt && this.exitMarker === undefined && now - this.commandAt > this.spec.timeoutMs) return "timeout";
    if (this.commandAt && this.exitMarker === undefined) {
      this.noteLabClock(now);
      if (now - Math.max(this.labClockChangedAt, this.commandAt) > FROZEN_MS) return "frozen";
    }
    if (this.exitMarker !== undefined && now - this.endAt > LINGER_MS) return "linger";
    return undefined;
  }

  /** The last uptime the lab wrote to labio/clock (a missing file reads as no tick yet). */
  private noteLabClock(now: number): void {
    let clock: string;
    try {
      clock = fs.readFileSync(path.join(this.spec.labio, "clock"), "utf8");
    } catch {
      return;
    }
    if (clock === this.labClock) return;
    this.labClock = clock;
    this.labClockChangedAt = now;
  }

  /** The last read, once QEMU has ended. */
  finish(): void {
    this.poll();
    if (this.partial) this.consoleLines.push(this.partial);
    this.console.close();
    this.stdout.close();
    this.stderr.close();
  }

  private line(line: string): void {
    this.consoleLines.push(line);
    if (this.consoleLines.length > 200) this.consoleLines.shift();
    if (this.spec.verbose) this.spec.err.write(`lab| ${line}\n`);
    const since = () => seconds(Date.now() - this.started);
    let m: RegExpExecArray | null;
    if ((m = /TSVMM-LAB-STAGE (\w+)(?: ([\d.]+))?/.exec(line))) {
      const labClock = m[2] ? ` (lab clock ${m[2]} s)` : "";
      if (m[1] === "init") this.spec.progress.say(`lab kernel up, init running: ${since()}${labClock}`);
      else if (m[1] === "modules") this.spec.progress.say(`modules loaded: ${since()}${labClock}`);
      else if (m[1] === "command") {
        this.commandAt = Date.now();
        this.spec.progress.say(`lab ready in ${since()}${labClock}; running: ${this.spec.argv.join(" ")}`);
      }
    } else if ((m = /TSVMM-LAB-EXIT (\d+)/.exec(line))) {
      this.exitMarker = Number(m[1]);
      this.endAt = Date.now();
    } else if ((m = /TSVMM-LAB-FAIL (.*)$/.exec(line))) {
      this.failReason = m[1];
    } else if (/Kernel panic|end Kernel panic/.test(line)) {
      this.panic = true;
    }
  }

  /** The last n non-empty console lines, indented. */
  tail(n: number): string {
    return this.consoleLines
      .filter((l) => l.trim())
      .slice(-n)
      .map((l) => "    " + l)
      .join("\n");
  }
}
