// How a vCPU thread hands an exit to the machine on the main thread: in shared memory, with no
// message. The thread writes the exit's result into its vCPU's cell and bumps one word that the
// main thread waits on with Atomics.waitAsync; the main thread takes every waiting exit. In the lab
// a round trip this way cost 0.28-0.32 ms against 0.67-0.97 ms with postMessage (docs/exit-path.md).
// Errors, rarer, still come as messages (vcpuThread.ts); both count as in flight.

/** Words: [0] bumped on every exit posted (the main thread waits on it); per vCPU i, from
 *  1 + 3i: messages and exits posted and not yet received, an exit waiting (1), its result. */
const CELL = 3;

/** Atomics.waitAsync (Node 16+; ES2024, beyond this project's ES2022 lib) */
const waitAsync = (Atomics as unknown as {
  waitAsync(a: Int32Array, index: number, value: number): { async: false; value: string } | { async: true; value: Promise<string> };
}).waitAsync;

export class ExitMailbox {
  readonly buffer: SharedArrayBuffer;
  private readonly words: Int32Array;
  private watching = false;

  constructor(cpus: number, buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(4 * (1 + CELL * cpus));
    this.words = new Int32Array(this.buffer);
  }

  /** vCPU thread: a message (an error) is on its way; the machine's receipt undoes it (received) */
  sending(vcpu: number): void {
    Atomics.add(this.words, 1 + CELL * vcpu, 1);
  }

  /** vCPU thread: hand the exit (runUntilExit's result) to the machine; the vCPU is paused */
  post(vcpu: number, result: number): void {
    const at = 1 + CELL * vcpu;
    Atomics.add(this.words, at, 1);
    Atomics.store(this.words, at + 2, result);
    Atomics.store(this.words, at + 1, 1);
    Atomics.add(this.words, 0, 1);
    Atomics.notify(this.words, 0);
  }

  /** Main thread: an exit or message of this vCPU was received */
  received(vcpu: number): void {
    Atomics.sub(this.words, 1 + CELL * vcpu, 1);
  }

  /** Exits and messages of this vCPU posted and not yet received */
  inFlight(vcpu: number): number {
    return Atomics.load(this.words, 1 + CELL * vcpu);
  }

  /** Main thread: call `onExit` for each exit posted, as it comes (from the event loop, never
   *  blocking it), until stop(). */
  watch(cpus: number, onExit: (vcpu: number, result: number) => void): void {
    this.watching = true;
    const check = (): void => {
      while (this.watching) {
        const seen = Atomics.load(this.words, 0);
        for (let vcpu = 0; vcpu < cpus && this.watching; vcpu++) {
          const at = 1 + CELL * vcpu;
          if (Atomics.load(this.words, at + 1) === 0) continue;
          const result = Atomics.load(this.words, at + 2);
          Atomics.store(this.words, at + 1, 0);
          onExit(vcpu, result);
        }
        if (!this.watching) return;
        // Woken by any post after `seen` was read: none is missed between the scan and the wait.
        const wait = waitAsync(this.words, 0, seen);
        if (wait.async) {
          void wait.value.then(check);
          return;
        }
      }
    };
    check();
  }

  /** Stop watching (the run has ended and every thread is done) */
  stop(): void {
    this.watching = false;
    Atomics.add(this.words, 0, 1);
    Atomics.notify(this.words, 0); // lets a pending waitAsync go
  }
}
