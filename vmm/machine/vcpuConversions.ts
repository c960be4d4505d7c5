// Conversions answered on the vCPU's own thread, with no crossing to the main thread: on the
// attributes backend (KVM_SET_MEMORY_ATTRIBUTES needs no quiesce) and only while the machine allows
// it (nobody listens for conversion events, the hypercall policy converts, no --prefault). A plain
// accepted request is answered inside the native run loop (NativeVcpu.answerConversions) with no
// return to JavaScript; the rest (a refusal, a failed ioctl, the map's lock still held at a pause
// or after 20 ms) comes here and is checked and converted by the same code as the engine's (convertNow.ts). Both
// use the same page-state map (shared memory, one lock) and count in this thread's row of the
// shared tally. Anything else, including a failure here, goes to the machine as before. See
// docs/exit-path.md.
import type { NativeVcpu } from "../native";
import type { KvmRunView } from "../kvm/kvmRun";
import { HC_MAP_GPA_RANGE } from "../kvm/uapi";
import { PageStateMap } from "../memory/pageState";
import { ConversionCounters, CounterRow } from "../memory/counters";
import { answerRequest as convert, Converter } from "../memory/convertNow";
import { applyAttributes } from "../memory/attributes";
import { answerRequestWord, requestExit, requestWord } from "./conversionExit";
import { CONVERT_PORT } from "./abi";

/** What a vCPU thread needs to convert (VcpuThreadData.conversions) */
export interface VcpuConversionsData {
  /** PageStateMap.buffer, and the RAM it covers */
  map: SharedArrayBuffer;
  base: bigint;
  size: bigint;
  /** RAM below it is always shared */
  sharedLimit: bigint;
  /** --discard always */
  discard: boolean;
  /** ConversionCounters.buffer (this thread writes row index + 1) */
  counters: SharedArrayBuffer;
  /** Int32[0]: 1 while the machine lets the vCPU threads answer conversions (Machine.allowThreadConversions) */
  allowed: SharedArrayBuffer;
}

export class VcpuConversions {
  private readonly converter: Converter;
  private readonly row: CounterRow;
  private readonly allowed: Int32Array;

  constructor(data: VcpuConversionsData, vcpu: NativeVcpu) {
    this.allowed = new Int32Array(data.allowed);
    this.row = new ConversionCounters(data.counters).row(vcpu.index + 1);
    const base = Number(data.base);
    const sharedLimitNumber = Number(data.sharedLimit);
    this.converter = {
      map: new PageStateMap(data.base, data.size, "shared", data.map),
      sharedLimitNumber,
      // The vCPU reaches the VM fd and the two files through the addon (NativeVm.shareMemoryFiles).
      apply: (changes) => applyAttributes(vcpu, base, data.discard, changes),
      counters: this.row,
    };
    const { tally, cells } = this.row.nativeCells();
    vcpu.answerConversions({ map: new Uint8Array(data.map), allowed: this.allowed, tally, cells, base, sharedLimit: sharedLimitNumber, doorbellPort: CONVERT_PORT, discard: data.discard });
  }

  /** runUntilExit() returned VcpuRunEnd.ANSWERED_WAKE */
  wakeMapWaiter(): void {
    this.converter.map.wakeWaiter();
  }

  /** Answer this exit here if it is a conversion request and the machine allows it; false: the
   *  machine answers it (a bad hypercall number, an ioctl failure: reported there). Numbers only,
   *  nothing allocated but the changed runs. */
  answer(run: KvmRunView): boolean {
    if (Atomics.load(this.allowed, 0) === 0) return false;
    const via = requestExit(run);
    if (via === undefined || requestWord(run, via, 0) !== HC_MAP_GPA_RANGE) return false;
    // The run loop passed this request on: if it failed there, it may have released the map's
    // lock with a waiter asleep (it cannot wake one itself), so wake one now.
    this.converter.map.wakeWaiter();
    let value: number;
    try {
      value = convert(this.converter, via, requestWord(run, via, 1), requestWord(run, via, 2), requestWord(run, via, 3));
    } catch {
      // The map is restored; the engine does the same conversion again and reports its failure.
      return false;
    }
    answerRequestWord(run, via, value);
    this.row.answeredOnVcpuThread();
    return true;
  }
}
