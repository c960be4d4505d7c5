// Large traces for the views' tests, written by the real conversion engine and trace writer over
// the recording backend (pure logic: no KVM). Requests come from a seeded generator, so a trace is
// the same every time; its times are a synthetic clock, its durations the engine's own.
import { ConversionEngine } from "../../vmm/memory/engine";
import { RecordingBackend } from "./fakeKvm";
import { MEMORY_EXIT_FLAG_PRIVATE } from "../../vmm/kvm/uapi";
import { PAGE_SHIFT, PageStateMap } from "../../vmm/memory/pageState";
import { startClock, startFields } from "../../vmm/trace/writer";


export interface GeneratedTrace {
  text: string;
  records: Array<Record<string, unknown>>;
  /** the engine's map at the end: the truth the views must show */
  map: PageStateMap;
}

export async function generateTrace(events: number, opts: { cpus?: number; ramMiB?: number; seed?: number } = {}): Promise<GeneratedTrace> {
  const cpus = opts.cpus ?? 4;
  const ram = BigInt(opts.ramMiB ?? 64) << 20n;
  const sharedLimit = 0x106000n;
  const sharedBit = 40;
  let seed = opts.seed ?? 1;
  const random = () => {
    // mulberry32
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const map = new PageStateMap(0n, ram);
  map.set(map.pageOf(0x200000n), Number((ram - 0x200000n) >> PAGE_SHIFT), "private");
  const backend = new RecordingBackend(ram);
  const records: Array<Record<string, unknown>> = [];
  let seq = 0;
  let clock = 0;
  records.push({
    seq: seq++,
    time: 0,
    vcpu: -1,
    kind: "start",
    ...startFields({ guest: "generated", cpus, ram, backing: "memslots", backend: "memslots", sharedBit, sharedLimit, pages: map.runs() }, startClock()),
  });
  const engine = new ConversionEngine({
    map,
    backend,
    sharedLimit,
    sharedBit,
    quiesce: (work) => work(),
    emit: (e) => records.push({ ...e, kind: "conversion", seq: seq++, conversion: e.seq }),
    now: () => clock,
    testSlot: () => undefined,
    discard: "always",
  });
  const pages = Number(ram >> PAGE_SHIFT);
  const firstConvertible = Number(sharedLimit >> PAGE_SHIFT) + 1;
  for (let i = 0; i < events; i++) {
    clock += 0.002 + random() * 0.02;
    const vcpu = Math.floor(random() * cpus);
    const roll = random();
    if (roll < 0.15) {
      // an implicit conversion: a touch of the view the page is not in
      const page = firstConvertible + Math.floor(random() * (pages - firstConvertible));
      const toShared = map.isPrivatePage(page);
      const gpa = (BigInt(page) << PAGE_SHIFT) | (toShared ? 1n << BigInt(sharedBit) : 0n);
      await engine.fault(vcpu, { gpa, size: 4096n, flags: toShared ? 0n : MEMORY_EXIT_FLAG_PRIVATE }, "EFAULT", "convert");
    } else if (roll < 0.18) {
      // a bad request: unaligned, or reaching outside RAM
      const gpa = random() < 0.5 ? 0x300123n : ram - 0x1000n;
      await engine.request("hypercall", vcpu, { gpa, pages: 4n, attrs: 0x10n });
    } else {
      const count = 1 + Math.floor(random() * 64);
      const first = firstConvertible + Math.floor(random() * (pages - firstConvertible - count));
      await engine.request(random() < 0.8 ? "hypercall" : "doorbell", vcpu, { gpa: BigInt(first) << PAGE_SHIFT, pages: BigInt(count), attrs: random() < 0.5 ? 0x10n : 0n });
    }
  }
  records.push({ seq: seq++, time: +(clock + 0.01).toFixed(3), vcpu: -1, kind: "end", status: 0, reason: "guest exited with status 0" });
  return { text: records.map((r) => JSON.stringify(r)).join("\n") + "\n", records, map };
}
