// The native addon on a real /dev/kvm: hand-assembled real-mode guests (CS base 0, code at
// 0x1000) in RAM that is a guest_memfd (MMAP|INIT_SHARED, KVM_MEM_GUEST_MEMFD, userspace_addr =
// its mapping) where the kernel allows it, else a memfd on a plain slot. No mocks.
//
// Instructions are emulated on our development KVM (~3 M/s), so guests stay small.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as v8 from "node:v8";
import * as vmModule from "node:vm";
import * as path from "node:path";
import * as fs from "node:fs";
import { Worker } from "node:worker_threads";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { loadAddon, NativeKvm, NativeMappedFile, NativeSyscallError, NativeVcpu, NativeVm, VcpuRunEnd } from "../../vmm/native";
import { requireKvm } from "../support/host";
import { PageStateMap } from "../../vmm/memory/pageState";
import { ConversionCounters } from "../../vmm/memory/counters";

const KVM_CAP_GUEST_MEMFD_FLAGS = 244;
const GUEST_MEMFD_FLAG_MMAP = 1n;
const GUEST_MEMFD_FLAG_INIT_SHARED = 2n;
const KVM_MEM_GUEST_MEMFD = 4;
const KVM_EXIT_IO = 2;
const KVM_EXIT_HLT = 5;
const KVM_EXIT_IO_IN = 0;
const KVM_EXIT_IO_OUT = 1;
const RAM_SIZE = 0x100000n; // 1 MiB
const CODE_GPA = 0x1000;

/** kvm_run fields the tests read (offsets of <linux/kvm.h>, x86). */
class Run {
  private readonly view: DataView;
  constructor(buffer: ArrayBuffer) {
    this.view = new DataView(buffer);
  }
  get exitReason(): number {
    return this.view.getUint32(8, true);
  }
  get io(): { direction: number; size: number; port: number; count: number; dataOffset: number } {
    return {
      direction: this.view.getUint8(32),
      size: this.view.getUint8(33),
      port: this.view.getUint16(34, true),
      count: this.view.getUint32(36, true),
      dataOffset: Number(this.view.getBigUint64(40, true)),
    };
  }
  byte(offset: number): number {
    return this.view.getUint8(offset);
  }
  setByte(offset: number, value: number): void {
    this.view.setUint8(offset, value);
  }
}

/**
 * A worker thread that runs a vCPU the way tsvmm's vCPU threads do (openVcpu + runUntilExit).
 * Each run() asks it for one runUntilExit() and resolves to what that returned.
 */
class Runner {
  private readonly worker: Worker;
  private readonly results: Array<number | string> = [];
  private waiter?: () => void;
  readonly exited: Promise<number>;
  /** The worker has opened the vCPU */
  readonly ready: Promise<void>;

  constructor(handle: number) {
    const code = `
      const { parentPort, workerData } = require("node:worker_threads");
      const cpu = require(workerData.native).loadAddon().openVcpu(workerData.handle);
      parentPort.postMessage({ ready: true });
      parentPort.on("message", (m) => {
        if (m === "close") return parentPort.close();
        try { parentPort.postMessage(cpu.runUntilExit()); } catch (e) { parentPort.postMessage(String(e.message)); }
      });`;
    this.worker = new Worker(code, { eval: true, workerData: { handle, native: path.join(__dirname, "..", "..", "vmm", "native.js") } });
    this.ready = new Promise((resolve) => {
      this.worker.on("message", (r: number | string | { ready: true }) => {
        if (typeof r === "object") return resolve();
        this.results.push(r);
        this.waiter?.();
      });
    });
    this.exited = new Promise((resolve) => this.worker.on("exit", resolve));
  }

  /** Start one runUntilExit() in the worker, and give it time to enter KVM_RUN */
  async start(): Promise<void> {
    await this.ready;
    this.worker.postMessage("run");
    await new Promise((r) => setTimeout(r, 50));
  }

  /** What the last started runUntilExit() returned */
  async result(ms = 5000): Promise<number | string> {
    const deadline = Date.now() + ms;
    while (this.results.length === 0) {
      if (Date.now() > deadline) throw new Error(`runUntilExit() did not return within ${ms} ms`);
      await new Promise<void>((r) => {
        this.waiter = r;
        setTimeout(r, 20);
      });
    }
    return this.results.shift()!;
  }

  async run(ms?: number): Promise<number | string> {
    await this.start();
    return this.result(ms);
  }

  /** End the worker; stop() its vCPU first if it may be inside runUntilExit() */
  async close(): Promise<void> {
    this.worker.postMessage("close");
    await this.exited;
  }
}

interface Guest {
  kvm: NativeKvm;
  vm: NativeVm;
  ram: NativeMappedFile;
  mem: Uint8Array;
  cpu: NativeVcpu;
  run: Run;
  console: Buffer[];
  backing: "guest_memfd" | "memfd";
  close(): void;
}

/** A VM with 1 MiB of RAM, `code` at 0x1000 and one vCPU in real mode about to execute it. */
function makeGuest(code: number[], consoleOut = 0x3f8, reads: Array<{ port: number; value: number }> = []): Guest {
  const addon = loadAddon();
  const kvm = new addon.Kvm("/dev/kvm");
  const vm = kvm.createVm(0);
  const gmemFlags = BigInt(vm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS));
  const wanted = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
  let ram: NativeMappedFile;
  let backing: Guest["backing"];
  if ((gmemFlags & wanted) === wanted) {
    const gm = vm.createGuestMemfd(RAM_SIZE, wanted);
    gm.map();
    vm.setUserMemoryRegion2({
      slot: 0,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: 0n,
      memorySize: RAM_SIZE,
      userspaceAddr: gm.address,
      guestMemfd: gm.fd,
      guestMemfdOffset: 0n,
    });
    ram = gm;
    backing = "guest_memfd";
  } else {
    ram = new addon.Memfd("tsvmm-test-ram", RAM_SIZE);
    ram.map();
    vm.setUserMemoryRegion({
      slot: 0, flags: 0, guestPhysAddr: 0n, memorySize: RAM_SIZE, userspaceAddr: ram.address, guestMemfd: -1, guestMemfdOffset: 0n,
    });
    backing = "memfd";
  }
  const mem = new Uint8Array(ram.map());
  mem.set(code, CODE_GPA);
  try {
    vm.setTssAddr(0xfffbd000);
  } catch {
    // only VMX needs it
  }
  const cpu = vm.createVcpu(0);
  // Real mode with CS base 0: the reset state but CS = 0 instead of 0xf000/0xffff0000.
  const sregs = cpu.getSregs();
  sregs.writeBigUInt64LE(0n, 0); // cs.base
  sregs.writeUInt16LE(0, 12); // cs.selector
  cpu.setSregs(sregs);
  const regs = Buffer.alloc(144);
  regs.writeBigUInt64LE(BigInt(CODE_GPA), 128); // rip
  regs.writeBigUInt64LE(2n, 136); // rflags
  cpu.setRegs(regs);
  vm.setFastPorts({ consoleOut, reads });
  const consoleChunks: Buffer[] = [];
  vm.onConsole((bytes) => consoleChunks.push(bytes));
  return {
    kvm, vm, ram, mem, cpu, run: new Run(cpu.run), console: consoleChunks, backing,
    close() {
      cpu.close();
      vm.close();
      ram.close();
      kvm.close();
    },
  };
}

function isSyscallError(e: unknown): e is NativeSyscallError {
  return e instanceof Error && typeof (e as NativeSyscallError).operation === "string";
}

// ---- hand-assembled 16-bit code ----------------------------------------------------------------
const movCx = (v: number) => [0xb9, v & 0xff, v >> 8];
const movDx = (v: number) => [0xba, v & 0xff, v >> 8];
const movAl = (v: number) => [0xb0, v];
const outDxAl = [0xee];
const inAlDx = [0xec];
const hlt = [0xf4];
const jmpSelf = [0xeb, 0xfe];

test("console fast path: 1000 single-byte OUTs are answered natively, exactly and in order; HLT is returned", { timeout: 10000 }, async (t) => {
  if (!requireKvm(t)) return;
  // mov cx,1000; mov dx,0x3f8; xor bx,bx; l: mov al,bl; out dx,al; inc bl; loop l; hlt
  const g = makeGuest([...movCx(1000), ...movDx(0x3f8), 0x31, 0xdb, 0x88, 0xd8, ...outDxAl, 0xfe, 0xc3, 0xe2, 0xf9, ...hlt]);
  try {
    // A guest that ends at once may run on the test's own thread (runUntilExit blocks it).
    assert.equal(g.cpu.runUntilExit(), 0);
    assert.equal(g.run.exitReason, KVM_EXIT_HLT);
    await new Promise((r) => setImmediate(r)); // let a queued console delivery run
    const bytes = Buffer.concat([...g.console, g.vm.drainConsole()]);
    assert.equal(bytes.length, 1000);
    for (let i = 0; i < 1000; i++) assert.equal(bytes[i], i & 0xff, `byte ${i}`);
    assert.ok(g.console.length >= 1, "delivered through onConsole");
    assert.deepEqual(g.cpu.stats(), { runs: 1001, nativeExits: 1000, exits: 1, conversions: 0 });
    t.diagnostic(`RAM backing: ${g.backing}; console delivered in ${g.console.length} batch(es)`);
  } finally {
    g.close();
  }
});

test("fast-port reads are answered natively; a non-fast OUT is returned with port and data in run", { timeout: 10000 }, async (t) => {
  if (!requireKvm(t)) return;
  // mov dx,0x71; in al,dx; mov dx,0x501; out dx,al; mov al,0x99; out dx,al; hlt
  const code = [...movDx(0x71), ...inAlDx, ...movDx(0x501), ...outDxAl, ...movAl(0x99), ...outDxAl, ...hlt];
  const g = makeGuest(code, 0x3f8, [{ port: 0x71, value: 0x42 }]);
  try {
    const values: number[] = [];
    for (let i = 0; i < 2; i++) {
      assert.equal(g.cpu.runUntilExit(), 0);
      assert.equal(g.run.exitReason, KVM_EXIT_IO);
      const io = g.run.io;
      assert.equal(io.direction, KVM_EXIT_IO_OUT);
      assert.equal(io.size, 1);
      assert.equal(io.port, 0x501);
      assert.equal(io.count, 1);
      values.push(g.run.byte(io.dataOffset));
    }
    assert.deepEqual(values, [0x42, 0x99]);
    assert.equal(g.cpu.runUntilExit(), 0);
    assert.equal(g.run.exitReason, KVM_EXIT_HLT);
    assert.equal(g.cpu.stats().nativeExits, 1); // the IN
  } finally {
    g.close();
  }
});

test("a non-fast IN is answered by JS writing run's data page before the next entry", { timeout: 10000 }, async (t) => {
  if (!requireKvm(t)) return;
  // mov dx,0x600; in al,dx; mov dx,0x3f8; out dx,al; hlt
  const g = makeGuest([...movDx(0x600), ...inAlDx, ...movDx(0x3f8), ...outDxAl, ...hlt]);
  try {
    g.cpu.runUntilExit();
    const io = g.run.io;
    assert.equal(g.run.exitReason, KVM_EXIT_IO);
    assert.equal(io.direction, KVM_EXIT_IO_IN);
    assert.equal(io.port, 0x600);
    g.run.setByte(io.dataOffset, 0x5a);
    g.cpu.runUntilExit();
    assert.equal(g.run.exitReason, KVM_EXIT_HLT);
    assert.deepEqual([...g.vm.drainConsole(), ...Buffer.concat(g.console)], [0x5a]);
  } finally {
    g.close();
  }
});

// The conversion doorbell (vmm/machine/abi.ts CONVERT_PORT): a 32-bit OUT with KVM_HC_MAP_GPA_RANGE's
// request in EAX (12), EBX (gpa), ECX (pages), EDX (attributes; 0x10 = to private).
const le32 = (v: number) => [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >>> 24];
const doorbell = (gpa: number) => [0x66, 0xb8, ...le32(12), 0x66, 0xbb, ...le32(gpa), 0x66, 0xb9, ...le32(1), 0x66, 0xba, ...le32(0x10), 0x66, 0xe7, 0xf8];

test("answerConversions: a request the run loop does not answer comes back as the exit, with the map and its lock untouched", { timeout: 10000 }, (t) => {
  if (!requireKvm(t)) return;
  const g = makeGuest([...doorbell(0x10000), ...doorbell(0x10000), ...doorbell(Number(RAM_SIZE)), ...hlt]);
  try {
    const map = new PageStateMap(0n, RAM_SIZE);
    const row = new ConversionCounters(2).row(1);
    const allowed = new Int32Array(new SharedArrayBuffer(4));
    const plan = { map: new Uint8Array(map.buffer), allowed, ...row.nativeCells(), base: 0, sharedLimit: 0x2000, doorbellPort: 0xf8, discard: false };
    for (const [key, bad] of [["map", new Uint8Array(4)], ["allowed", [1]], ["cells", new Int32Array(3)]] as const)
      assert.throws(() => g.cpu.answerConversions({ ...plan, [key]: bad } as never), new RegExp(`answerConversions: plan\\.${key}`));
    g.cpu.answerConversions(plan);
    g.cpu.setSyncRegs(1); // KVM_SYNC_X86_REGS: the doorbell's request is read from kvm_run
    const privateBefore = map.privatePages;
    const cameBack = (why: string) => {
      assert.equal(g.cpu.runUntilExit(), 0, why);
      assert.equal(g.run.exitReason, KVM_EXIT_IO, why);
      assert.equal(g.run.io.port, 0xf8, why);
      assert.equal(map.privatePages, privateBefore, `${why}: the map is unchanged`);
      assert.equal(Atomics.load(new Int32Array(map.buffer, 0, 1), 0), 0, `${why}: the map's lock is free`);
    };
    cameBack("allowed[0] is 0 (someone listens)");
    Atomics.store(allowed, 0, 1);
    // A default VM has no private memory (KVM_SET_MEMORY_ATTRIBUTES fails): the loop gives the exit back.
    cameBack("the attribute ioctl failed");
    cameBack("a request outside RAM");
    assert.equal(g.cpu.runUntilExit(), 0);
    assert.equal(g.run.exitReason, KVM_EXIT_HLT);
    assert.equal(g.cpu.stats().conversions, 0);
    g.cpu.answerConversions(null);
  } finally {
    g.close();
  }
});

test("pause() from another thread brings a spinning guest out of KVM_RUN and keeps it out until unpause()", { timeout: 10000 }, async (t) => {
  if (!requireKvm(t)) return;
  const g = makeGuest(jmpSelf);
  const runner = new Runner(g.cpu.handle);
  try {
    await runner.start(); // well inside the spin
    assert.throws(() => g.cpu.getRegs(), { code: "ERR_TSVMM_VCPU_RUNNING" });
    const t0 = performance.now();
    assert.equal(g.cpu.pause(), true);
    const ms = performance.now() - t0;
    // Paused: registers are readable and the guest is where it spun; runUntilExit() has not returned.
    assert.equal(g.cpu.getRegs().readBigUInt64LE(128), BigInt(CODE_GPA));
    const runs = g.cpu.stats().runs;
    assert.equal(g.cpu.pause(), true, "pauses nest");
    g.cpu.unpause();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(g.cpu.stats().runs, runs, "still paused: one unpause() per pause()");
    g.cpu.unpause();
    // A loaded machine may take long to schedule the vCPU thread back into KVM_RUN: retry the
    // pause until it finds the thread re-entered (runs counts KVM_RUN returns), for up to 5 s.
    let reentered = false;
    for (let i = 0; i < 100 && !reentered; i++) {
      await new Promise((r) => setTimeout(r, 50));
      assert.throws(() => g.cpu.getRegs(), { code: "ERR_TSVMM_VCPU_RUNNING" }, "spinning again");
      assert.equal(g.cpu.pause(), true);
      reentered = g.cpu.stats().runs > runs;
      if (!reentered) g.cpu.unpause();
    }
    assert.ok(reentered, "re-entered after the last unpause()");
    g.cpu.unpause();
    assert.equal(g.cpu.stop(), true);
    assert.equal(await runner.result(), VcpuRunEnd.STOPPED);
    assert.deepEqual({ ...g.cpu.stats(), runs: 0 }, { runs: 0, nativeExits: 0, exits: 0, conversions: 0 }, "kicks are no exits");
    t.diagnostic(`first pause() returned after ${ms.toFixed(3)} ms`);
  } finally {
    g.cpu.stop();
    await runner.close();
    g.close();
  }
});

test("pausing two vCPUs that spin on two threads brings both out (what a quiesce or a debugger stop does)", { timeout: 10000 }, async (t) => {
  if (!requireKvm(t)) return;
  const g = makeGuest(jmpSelf);
  const second = g.vm.createVcpu(1);
  second.setSregs(g.cpu.getSregs());
  second.setRegs(g.cpu.getRegs());
  const cpus = [g.cpu, second];
  const runners = cpus.map((c) => new Runner(c.handle));
  try {
    await Promise.all(runners.map((r) => r.start()));
    for (const c of cpus) assert.throws(() => c.getRegs(), { code: "ERR_TSVMM_VCPU_RUNNING" });
    for (const c of cpus) assert.equal(c.pause(), true);
    for (const c of cpus) assert.equal(c.getRegs().readBigUInt64LE(128), BigInt(CODE_GPA));
    for (const c of cpus) c.unpause();
    await new Promise((r) => setTimeout(r, 50));
    for (const c of cpus) assert.throws(() => c.getRegs(), { code: "ERR_TSVMM_VCPU_RUNNING" }, "both run again");
    for (const c of cpus) assert.equal(c.stop(), true);
    for (const r of runners) assert.equal(await r.result(), VcpuRunEnd.STOPPED);
  } finally {
    for (const c of cpus) c.stop();
    await Promise.all(runners.map((r) => r.close()));
    second.close();
    g.close();
  }
});

test("process.exit() while a vCPU spins on a worker thread exits (the addon stops every vCPU first)", { timeout: 20000 }, async (t) => {
  if (!requireKvm(t)) return;
  const native = JSON.stringify(path.join(__dirname, "..", "..", "vmm", "native.js"));
  // A real-mode `jmp $` at 0x1000 on its own worker thread; the main thread exits 3 meanwhile.
  const script = `
    const { Worker } = require("node:worker_threads");
    const addon = require(${native}).loadAddon();
    const vm = new addon.Kvm("/dev/kvm").createVm(0);
    const ram = new addon.Memfd("tsvmm-exit-test", 0x100000n);
    new Uint8Array(ram.map()).set([0xeb, 0xfe], 0x1000);
    vm.setUserMemoryRegion({ slot: 0, flags: 0, guestPhysAddr: 0n, memorySize: 0x100000n, userspaceAddr: ram.address, guestMemfd: -1, guestMemfdOffset: 0n });
    const cpu = vm.createVcpu(0);
    const s = cpu.getSregs(); s.writeBigUInt64LE(0n, 0); s.writeUInt16LE(0, 12); cpu.setSregs(s);
    const r = Buffer.alloc(144); r.writeBigUInt64LE(0x1000n, 128); r.writeBigUInt64LE(2n, 136); cpu.setRegs(r);
    const body = "const { workerData: d } = require('node:worker_threads'); require(d.native).loadAddon().openVcpu(d.handle).runUntilExit()";
    new Worker(body, { eval: true, workerData: { native: ${native}, handle: cpu.handle } });
    setTimeout(() => process.exit(3), 300);`;
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (b) => (stderr += b));
  const timer = setTimeout(() => child.kill("SIGKILL"), 10000);
  const [code, signal] = (await once(child, "exit")) as [number | null, string | null];
  clearTimeout(timer);
  assert.equal(signal, null, "killed after 10 s: the process hung in its exit");
  assert.equal(code, 3, stderr);
});

test("JS setting immediate_exit makes the next entry complete the exit without running: INTERRUPTED", { timeout: 10000 }, async (t) => {
  if (!requireKvm(t)) return;
  // out to a non-fast port, then spin
  const g = makeGuest([...movDx(0x502), ...outDxAl, ...jmpSelf]);
  try {
    assert.equal(g.cpu.runUntilExit(), 0);
    g.run.setByte(1, 1); // kvm_run.immediate_exit: complete the OUT without running the guest
    assert.equal(g.cpu.runUntilExit(), VcpuRunEnd.INTERRUPTED);
    assert.equal(g.run.byte(1), 1, "left for JS to clear");
    assert.equal(g.cpu.getRegs().readBigUInt64LE(128), BigInt(CODE_GPA + 4), "the OUT completed, RIP at jmp $");
  } finally {
    g.close();
  }
});

test("stop() ends runUntilExit() from every state, for good", { timeout: 10000 }, async (t) => {
  if (!requireKvm(t)) return;
  // 1. running (spinning in the guest) in another thread
  const a = makeGuest(jmpSelf);
  const runner = new Runner(a.cpu.handle);
  try {
    await runner.start();
    assert.equal(a.cpu.stop(), true);
    assert.equal(a.cpu.stop(), true, "idempotent");
    assert.equal(await runner.result(), VcpuRunEnd.STOPPED);
    assert.equal(await runner.run(), VcpuRunEnd.STOPPED, "and ever after");
    assert.equal(a.cpu.getRegs().length, 144, "stopped: ioctls allowed again");
  } finally {
    await runner.close();
    a.close();
  }
  // 2. waiting out a pause
  const b = makeGuest(jmpSelf);
  const waiting = new Runner(b.cpu.handle);
  try {
    b.cpu.pause();
    await waiting.start();
    assert.equal(b.cpu.stats().runs, 0, "paused before it could enter");
    b.cpu.stop();
    assert.equal(await waiting.result(), VcpuRunEnd.STOPPED);
  } finally {
    await waiting.close();
    b.close();
  }
  // 3. before any run, and on the runner's own thread
  const c = makeGuest(hlt);
  try {
    c.cpu.stop();
    assert.equal(c.cpu.runUntilExit(), VcpuRunEnd.STOPPED);
    assert.equal(c.cpu.stats().runs, 0);
  } finally {
    c.close();
  }
  // 4. close() without stop(), and close() twice
  const d = makeGuest(jmpSelf);
  const run = d.cpu.run;
  const handle = d.cpu.handle;
  d.close();
  d.cpu.close();
  assert.equal(run.byteLength, 0, "run is detached on close");
  assert.equal(d.cpu.run.byteLength, 0);
  assert.equal(d.cpu.fd, -1);
  assert.throws(() => d.cpu.runUntilExit(), { code: "ERR_TSVMM_CLOSED" });
  assert.throws(() => loadAddon().openVcpu(handle), { code: "ERR_TSVMM_CLOSED" }, "the last object is gone: so is the handle");
});

test("openVcpu(handle) shares the vCPU; setFastPorts() from either thread replaces the table while it runs", { timeout: 10000 }, async (t) => {
  if (!requireKvm(t)) return;
  // mov dx,0x3f8; mov al,'x'; l: out dx,al; jmp l
  const g = makeGuest([...movDx(0x3f8), ...movAl(0x78), ...outDxAl, 0xeb, 0xfd]);
  const other = loadAddon().openVcpu(g.cpu.handle);
  assert.equal(other.index, 0);
  assert.equal(other.handle, g.cpu.handle);
  const runner = new Runner(g.cpu.handle);
  try {
    await runner.start();
    assert.ok(g.cpu.stats().nativeExits > 0, "console bytes handled natively");
    g.vm.setFastPorts({ consoleOut: -1, reads: [] });
    assert.equal(await runner.result(), 0);
    assert.equal(g.run.io.port, 0x3f8);
    assert.equal(g.run.byte(g.run.io.dataOffset), 0x78);
    other.setFastPorts({ consoleOut: 0x3f8, reads: [] }); // the same VM's table, through the vCPU
    const before = g.cpu.stats().nativeExits;
    await runner.start();
    assert.ok(g.cpu.stats().nativeExits > before, "fast again after the table came back");
    g.cpu.stop();
    assert.equal(await runner.result(), VcpuRunEnd.STOPPED);
    await new Promise((r) => setImmediate(r));
    const bytes = Buffer.concat([...g.console, g.vm.drainConsole()]);
    assert.ok(bytes.length > 0 && bytes.every((b) => b === 0x78));
  } finally {
    g.cpu.stop();
    await runner.close();
    other.close();
    g.close();
  }
});

test("syscall failures carry syscall, operation, errno, code, args and a readable message", { timeout: 10000 }, (t) => {
  if (!requireKvm(t)) return;
  const addon = loadAddon();
  assert.equal(addon.errnoName(22), "EINVAL");
  assert.equal(addon.errnoName(2), "ENOENT");

  assert.throws(() => new addon.Kvm("/dev/no-such-kvm"), (e: unknown) => {
    assert.ok(isSyscallError(e));
    assert.equal(e.syscall, "open");
    assert.equal(e.operation, "open /dev/no-such-kvm");
    assert.equal(e.errno, 2);
    assert.equal(e.code, "ENOENT");
    assert.equal(e.args.path, "/dev/no-such-kvm");
    assert.match(e.message, /^open \/dev\/no-such-kvm failed: ENOENT \(No such file or directory\)$/);
    return true;
  });

  const kvm = new addon.Kvm("/dev/kvm");
  const vm = kvm.createVm(0);
  try {
    assert.throws(() => vm.createGuestMemfd(4095n, 0n), (e: unknown) => {
      assert.ok(isSyscallError(e));
      assert.equal(e.syscall, "ioctl");
      assert.equal(e.operation, "KVM_CREATE_GUEST_MEMFD");
      assert.equal(e.errno, 22);
      assert.equal(e.code, "EINVAL");
      assert.deepEqual(e.args, { size: 4095n, flags: 0n });
      assert.equal(e.message, "KVM_CREATE_GUEST_MEMFD(size=0xfff, flags=0x0) failed: EINVAL (Invalid argument)");
      return true;
    });
    assert.throws(
      () =>
        vm.setUserMemoryRegion2({
          slot: 0, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 0x123n, memorySize: 0x1000n, userspaceAddr: 0n, guestMemfd: -1, guestMemfdOffset: 0n,
        }),
      (e: unknown) => {
        assert.ok(isSyscallError(e));
        assert.equal(e.operation, "KVM_SET_USER_MEMORY_REGION2");
        assert.equal(e.code, "EINVAL");
        assert.deepEqual(e.args, {
          slot: 0, flags: 4, guestPhysAddr: 0x123n, memorySize: 0x1000n, userspaceAddr: 0n, guestMemfd: -1, guestMemfdOffset: 0n,
        });
        assert.match(e.message, /^KVM_SET_USER_MEMORY_REGION2\(slot=0, flags=0x4, gpa=0x123, size=0x1000, .*guest_memfd=-1.*\) failed: EINVAL/);
        return true;
      },
    );
    assert.throws(() => kvm.createVm(0x7fff), { operation: "KVM_CREATE_VM", code: "EINVAL", args: { type: 0x7fff } });
  } finally {
    vm.close();
    kvm.close();
  }
  assert.throws(() => kvm.apiVersion(), { code: "ERR_TSVMM_CLOSED" });
});

test("setUserMemoryRegions2: several regions in one call, in order; it stops at the first failure; a released guest_memfd is closed", { timeout: 10000 }, (t) => {
  if (!requireKvm(t)) return;
  const addon = loadAddon();
  const kvm = new addon.Kvm("/dev/kvm");
  const vm = kvm.createVm(0);
  const memfd = new addon.Memfd("tsvmm-test", 0x20000n);
  memfd.map();
  const uaddr = Number(memfd.address);
  const fds = () => fs.readdirSync("/proc/self/fd").length;
  try {
    assert.throws(() => vm.setUserMemoryRegions2([0] as unknown as Float64Array), { name: "TypeError", message: /Float64Array/ });
    assert.throws(() => vm.setUserMemoryRegions2(new Float64Array(6)), { name: "RangeError", message: /multiple of 7/ });
    assert.throws(() => vm.setUserMemoryRegions2(Float64Array.of(0, 0.5, 0x1000, uaddr, -1, 0, 0)), { name: "RangeError", message: /record 0: guestPhysAddr/ });
    // slot 0 is added, then slot 1 fails (a GPA that is not page-aligned): slot 0 stays
    const add0 = [0, 0, 0x10000, uaddr, -1, 0, 0];
    assert.throws(() => vm.setUserMemoryRegions2(Float64Array.from([...add0, 1, 0x10123, 0x1000, uaddr, -1, 0, 0])), (e: unknown) => {
      assert.ok(isSyscallError(e));
      assert.equal(e.operation, "KVM_SET_USER_MEMORY_REGION2");
      assert.equal(e.code, "EINVAL");
      assert.deepEqual(e.args, { slot: 1, flags: 0, guestPhysAddr: 0x10123n, memorySize: 0x1000n, userspaceAddr: BigInt(uaddr), guestMemfd: -1, guestMemfdOffset: 0n });
      return true;
    });
    vm.setUserMemoryRegions2(Float64Array.of(0, 0, 0, 0, -1, 0, 0)); // deleting slot 0 works: it was there
    assert.throws(() => vm.setUserMemoryRegions2(Float64Array.of(0, 0, 0, 0, -1, 0, 0)), { code: "EINVAL" }, "and now it is gone");
    const gmemFlags = BigInt(vm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS));
    if ((gmemFlags & GUEST_MEMFD_FLAG_MMAP) === 0n) return t.diagnostic("this KVM cannot mmap guest_memfd: the released guest_memfd is not checked");
    const before = fds();
    vm.setUserMemoryRegions2(Float64Array.of(2, 0x20000, 0x10000, uaddr + 0x10000, -2, 0, Number(GUEST_MEMFD_FLAG_MMAP)));
    assert.equal(fds(), before, "the released guest_memfd is closed");
    vm.setUserMemoryRegions2(Float64Array.of(2, 0x20000, 0, 0, -1, 0, 0));
  } finally {
    memfd.close();
    vm.close();
    kvm.close();
  }
});

test("guest_memfd and memfd: map, address, fallocate, allocatedBytes, unmap detaches, close is idempotent", { timeout: 10000 }, (t) => {
  if (!requireKvm(t)) return;
  const addon = loadAddon();
  const kvm = new addon.Kvm("/dev/kvm");
  const vm = kvm.createVm(0);
  const files: NativeMappedFile[] = [new addon.Memfd("tsvmm-test", 0x10000n)];
  const flags = BigInt(vm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS));
  const wanted = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
  if ((flags & wanted) === wanted) {
    const gm = vm.createGuestMemfd(0x10000n, wanted);
    assert.equal(gm.flags, wanted);
    files.push(gm);
  } else t.diagnostic("this KVM cannot mmap guest_memfd; only the memfd is checked");
  try {
    for (const f of files) {
      assert.ok(f.fd >= 0);
      assert.equal(f.size, 0x10000n);
      assert.equal(f.address, 0n);
      const ab = f.map();
      assert.equal(f.map(), ab, "the same mapping on repeat");
      assert.ok(f.address > 0n && f.address % 4096n === 0n);
      assert.equal(ab.byteLength, 0x10000);
      // While mapped: pages in use (mincore of the page cache), for guest_memfd too, which keeps
      // no st_blocks. fallocate'd pages are not in use until first touched (not yet zeroed).
      const allocated = (pages: bigint) => {
        const got = f.allocatedBytes();
        assert.equal(typeof got, "bigint");
        assert.equal(got, pages * 4096n, `${"flags" in f ? "guest_memfd" : "memfd"}: ${got} bytes in use`);
      };
      allocated(0n);
      const bytes = new Uint8Array(ab);
      bytes[0x3000] = 0xab;
      allocated(1n);
      f.fallocate("allocate", 0n, 0x2000n);
      allocated(1n);
      bytes[0x0000] = 1;
      allocated(2n);
      f.fallocate("punch", 0x3000n, 0x1000n);
      allocated(1n);
      assert.equal(bytes[0x3000], 0, "a punched page reads as zero");
      assert.throws(() => f.fallocate("punch", 0n, 0n), { syscall: "fallocate", code: "EINVAL", args: { fd: f.fd, mode: "punch", flags: "PUNCH_HOLE|KEEP_SIZE", offset: 0n, length: 0n } });
      f.unmap();
      assert.equal(ab.byteLength, 0, "detached by unmap()");
      assert.equal(f.address, 0n);
      const again = new Uint8Array(f.map());
      assert.equal(again[0x1000], 0);
      f.close();
      assert.equal(again.byteLength, 0, "detached by close()");
      assert.equal(f.fd, -1);
      f.close();
      assert.throws(() => f.map(), { code: "ERR_TSVMM_CLOSED" });
    }
  } finally {
    for (const f of files) f.close();
    vm.close();
    kvm.close();
  }
});

test("a mapping whose owner is garbage-collected is detached before it is unmapped", { timeout: 10000 }, async (t) => {
  if (!requireKvm(t)) return;
  v8.setFlagsFromString("--expose-gc");
  const gc = vmModule.runInNewContext("gc") as () => void;
  const addon = loadAddon();
  let kept: ArrayBuffer | undefined;
  (() => {
    const f = new addon.Memfd("tsvmm-gc", 0x1000n);
    kept = f.map();
    new Uint8Array(kept)[0] = 1;
  })();
  for (let i = 0; i < 10 && kept!.byteLength !== 0; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(kept!.byteLength, 0);
});
