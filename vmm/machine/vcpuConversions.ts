// Conversions answered on the vCPU's own thread, with no crossing to the main thread: on the
// attributes backend (KVM_SET_MEMORY_ATTRIBUTES needs no quiesce) and only while the machine allows
// it (nobody listens for conversion events, the hypercall policy converts, no --prefault). The
// request is checked and converted by the same code as the engine's (convertNow.ts), on the same
// page-state map (shared memory, one lock), counted in this thread's row of the shared tally.
// Anything else, including a failure here, goes to the machine as before. See docs/exit-path.md.
import type { NativeVcpu } from "../native";
import type { KvmRunView } from "../kvm/kvmRun";
import { HC_MAP_GPA_RANGE } from "../kvm/uapi";
import { PageStateMap } from "../memory/pageState";
import { ConversionCounters, CounterRow } from "../memory/counters";
import { answerRequest as convert, Converter } from "../memory/convertNow";
import { applyAttributes } from "../memory/attributes";
import { answerRequestWord, requestExit, requestWord } from "./conversionExit";

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
    this.converter = {
      map: new PageStateMap(data.base, data.size, "shared", data.map),
      sharedLimitNumber: Number(data.sharedLimit),
      // The vCPU reaches the VM fd and the two files through the addon (NativeVm.shareMemoryFiles).
      apply: (changes) => applyAttributes(vcpu, base, data.discard, changes),
      counters: this.row,
    };
  }

  /** Answer this exit here if it is a conversion request and the machine allows it; false: the
   *  machine answers it (a bad hypercall number, an ioctl failure: reported there). Numbers only,
   *  nothing allocated but the changed runs. */
  answer(run: KvmRunView): boolean {
    if (Atomics.load(this.allowed, 0) === 0) return false;
    const via = requestExit(run);
    if (via === undefined || requestWord(run, via, 0) !== HC_MAP_GPA_RANGE) return false;
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
