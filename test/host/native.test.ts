// The native addon on a real /dev/kvm: hand-assembled real-mode guests (CS base 0, code at
// 0x1000) in RAM that is a guest_memfd (MMAP|INIT_SHARED, KVM_MEM_GUEST_MEMFD, userspace_addr =
// its mapping) where the kernel allows it, else a memfd on a plain slot. No mocks.
//
// Instructions are emulated on our development KVM (~3 M/s), so guests stay small.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as v8 from "node:v8";
import * as vmModule from "node:vm";
import { loadAddon, NativeKvm, NativeMappedFile, NativeSyscallError, NativeVcpu, NativeVm, VcpuEvent } from "../../vmm/native";
import { requireKvm } from "../support/host";

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

/** Events of one vCPU as an awaitable queue. */
class Events {
  private readonly queue: VcpuEvent[] = [];
  private waiter?: (e: VcpuEvent) => void;
  readonly push = (e: VcpuEvent): void => {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w(e);
    } else this.queue.push(e);
  };
  next(ms = 5000): Promise<VcpuEvent> {
    const e = this.queue.shift();
    if (e) return Promise.resolve(e);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`no vCPU event within ${ms} ms`));
      }, ms);
      this.waiter = (ev) => {
        clearTimeout(timer);
        resolve(ev);
      };
    });
  }
  get pending(): number {
    return this.queue.length;
  }
}

interface Guest {
  kvm: NativeKvm;
  vm: NativeVm;
  ram: NativeMappedFile;
  mem: Uint8Array;
  cpu: NativeVcpu;
  run: Run;
  events: Events;
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
  const events = new Events();
  return {
    kvm, vm, ram, mem, cpu, run: new Run(cpu.run), events, console: consoleChunks, backing,
    close() {
      cpu.close();
      vm.close();
      ram.close();
      kvm.close();
    },
  };
}

/** Polls `cond` until it holds or 5 s pass: a loaded machine may take long to schedule a vCPU thread. */
async function eventually(cond: () => boolean, limitMs = 5000): Promise<boolean> {
  const end = Date.now() + limitMs;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
  return true;
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

test("console fast path: 1000 single-byte OUTs arrive natively, exactly and in order; HLT reaches JS", { timeout: 10000 }, async (t) => {
  if (!requireKvm(t)) return;
  // mov cx,1000; mov dx,0x3f8; xor bx,bx; l: mov al,bl; out dx,al; inc bl; loop l; hlt
  const g = makeGuest([...movCx(1000), ...movDx(0x3f8), 0x31, 0xdb, 0x88, 0xd8, ...outDxAl, 0xfe, 0xc3, 0xe2, 0xf9, ...hlt]);
  try {
    g.cpu.start(g.events.push);
    const e = await g.events.next();
    assert.deepEqual(e, { kind: "exit", errno: 0 });
    assert.equal(g.run.exitReason, KVM_EXIT_HLT);
    await new Promise((r) => setImmediate(r)); // let a queued console delivery run
    const bytes = Buffer.concat([...g.console, g.vm.drainConsole()]);
    assert.equal(bytes.length, 1000);
    for (let i = 0; i < 1000; i++) assert.equal(bytes[i], i & 0xff, `byte ${i}`);
    assert.ok(g.console.length >= 1, "delivered through onConsole");
    const stats = g.cpu.stats();
    assert.equal(stats.nativeExits, 1000);
    assert.equal(stats.events, 1);
    assert.equal(stats.runs, 1001);
    t.diagnostic(`RAM backing: ${g.backing}; console delivered in ${g.console.length} batch(es)`);
  } finally {
    g.close();
  }
});

test("fast-port reads are answered natively; a non-fast OUT reaches JS with port and data in run; resume continues", { timeout: 10000 }, async (t) => {
  if (!requireKvm(t)) return;
  // mov dx,0x71; in al,dx; mov dx,0x501; out dx,al; mov al,0x99; out dx,al; hlt
  const code = [...movDx(0x71), ...inAlDx, ...movDx(0x501), ...outDxAl, ...movAl(0x99), ...outDxAl, ...hlt];
  const g = makeGuest(code, 0x3f8, [{ port: 0x71, value: 0x42 }]);
  try {
    g.cpu.start(g.events.push);
    const values: number[] = [];
    for (let i = 0; i < 2; i++) {
      assert.deepEqual(await g.events.next(), { kind: "exit", errno: 0 });
      assert.equal(g.run.exitReason, KVM_EXIT_IO);
      const io = g.run.io;
      assert.equal(io.direction, KVM_EXIT_IO_OUT);
      assert.equal(io.size, 1);
      assert.equal(io.port, 0x501);
      assert.equal(io.count, 1);
      values.push(g.run.byte(io.dataOffset));
      g.cpu.resume();
      if (i === 0) assert.throws(() => g.cpu.resume(), { code: "ERR_TSVMM_VCPU_NOT_PARKED" }, "one resume per event");
    }
    assert.deepEqual(values, [0x42, 0x99]);
    assert.deepEqual(await g.events.next(), { kind: "exit", errno: 0 });
    assert.equal(g.run.exitReason, KVM_EXIT_HLT);
    assert.equal(g.cpu.stats().nativeExits, 1); // the IN
  } finally {
    g.close();
  }
});

test("a non-fast IN is answered by JS writing run's data page before resume", { timeout: 10000 }, async (t) => {
  if (!requireKvm(t)) return;
  // mov dx,0x600; in al,dx; mov dx,0x3f8; out dx,al; hlt
  const g = makeGuest([...movDx(0x600), ...inAlDx, ...movDx(0x3f8), ...outDxAl, ...hlt]);
  try {
    g.cpu.start(g.events.push);
    await g.events.next();
    const io = g.run.io;
    assert.equal(g.run.exitReason, KVM_EXIT_IO);
    assert.equal(io.direction, KVM_EXIT_IO_IN);
    assert.equal(io.port, 0x600);
    g.run.setByte(io.dataOffset, 0x5a);
    g.cpu.resume();
    await g.events.next();
    assert.equal(g.run.exitReason, KVM_EXIT_HLT);
    assert.deepEqual([...g.vm.drainConsole(), ...Buffer.concat(g.console)], [0x5a]);
  } finally {
    g.close();
  }
});

test("kick() brings a spinning guest out of KVM_RUN as 'paused'; kicking a parked vCPU is a no-op", { timeout: 10000 }, async (t) => {
  if (!requireKvm(t)) return;
  const g = makeGuest(jmpSelf);
  try {
    g.cpu.start(g.events.push);
    await new Promise((r) => setTimeout(r, 50)); // well inside the spin
    assert.throws(() => g.cpu.getRegs(), { code: "ERR_TSVMM_VCPU_RUNNING" });
    g.cpu.kick();
    // No speed assertion (the bench measures kicks): only that the kick is honoured.
    assert.deepEqual(await g.events.next(5000), { kind: "paused" });
    // Parked: registers are readable and the guest is where it spun.
    const regs = g.cpu.getRegs();
    assert.equal(regs.readBigUInt64LE(128), BigInt(CODE_GPA));
    g.cpu.kick(); // no-op while parked
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(g.events.pending, 0);
    // Resume, spin again, kick again.
    g.cpu.resume();
    await new Promise((r) => setTimeout(r, 20));
    g.cpu.kick();
    assert.deepEqual(await g.events.next(5000), { kind: "paused" });
    const s = g.cpu.stats();
    assert.equal(s.events, 2);
    assert.equal(s.nativeExits, 0);
  } finally {
    g.close();
  }
});

test("JS setting immediate_exit while parked makes the next entry report 'paused'", { timeout: 10000 }, async (t) => {
  if (!requireKvm(t)) return;
  // out to a non-fast port, then spin
  const g = makeGuest([...movDx(0x502), ...outDxAl, ...jmpSelf]);
  try {
    g.cpu.start(g.events.push);
    assert.deepEqual(await g.events.next(), { kind: "exit", errno: 0 });
    g.run.setByte(1, 1); // kvm_run.immediate_exit: complete the OUT without running the guest
    g.cpu.resume();
    assert.deepEqual(await g.events.next(), { kind: "paused" });
    assert.equal(g.run.byte(1), 0, "cleared by the vCPU thread");
    assert.equal(g.cpu.getRegs().readBigUInt64LE(128), BigInt(CODE_GPA + 4), "the OUT completed, RIP at jmp $");
  } finally {
    g.close();
  }
});

test("stop() ends the thread from every state and events queued after it are dropped", { timeout: 10000 }, async (t) => {
  if (!requireKvm(t)) return;
  // 1. running (spinning in the guest)
  const a = makeGuest(jmpSelf);
  try {
    a.cpu.start(a.events.push);
    await new Promise((r) => setTimeout(r, 20));
    a.cpu.stop();
    a.cpu.stop(); // idempotent
    assert.throws(() => a.cpu.resume(), { code: "ERR_TSVMM_VCPU_NOT_PARKED" });
    assert.ok(a.cpu.getRegs().length === 144, "stopped: ioctls allowed again");
  } finally {
    a.close();
  }
  // 2. parked on an exit that JS has seen
  const b = makeGuest(hlt);
  try {
    b.cpu.start(b.events.push);
    assert.deepEqual(await b.events.next(), { kind: "exit", errno: 0 });
    b.cpu.stop();
  } finally {
    b.close();
  }
  // 3. parked on an exit whose event is still queued: stop() before JS could run it
  const c = makeGuest(hlt);
  try {
    let seen = 0;
    c.cpu.start(() => seen++);
    const deadline = Date.now() + 2000;
    while (c.cpu.stats().events === 0 && Date.now() < deadline) {
      // busy-wait on the JS thread, so the queued event cannot be delivered yet
    }
    assert.equal(c.cpu.stats().events, 1);
    c.cpu.stop();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(seen, 0, "the event queued before stop() was dropped");
  } finally {
    c.close();
  }
  // 4. close() without stop(), and close() twice
  const d = makeGuest(jmpSelf);
  d.cpu.start(d.events.push);
  const run = d.cpu.run;
  d.close();
  d.cpu.close();
  assert.equal(run.byteLength, 0, "run is detached on close");
  assert.equal(d.cpu.run.byteLength, 0);
  assert.equal(d.cpu.fd, -1);
});

test("setFastPorts() replaces the table while the vCPU runs", { timeout: 10000 }, async (t) => {
  if (!requireKvm(t)) return;
  // mov dx,0x3f8; mov al,'x'; l: out dx,al; jmp l
  const g = makeGuest([...movDx(0x3f8), ...movAl(0x78), ...outDxAl, 0xeb, 0xfd]);
  try {
    g.cpu.start(g.events.push);
    assert.ok(await eventually(() => g.cpu.stats().nativeExits > 0), "console bytes handled natively");
    g.vm.setFastPorts({ consoleOut: -1, reads: [] });
    const e = await g.events.next();
    assert.deepEqual(e, { kind: "exit", errno: 0 });
    assert.equal(g.run.io.port, 0x3f8);
    assert.equal(g.run.byte(g.run.io.dataOffset), 0x78);
    g.vm.setFastPorts({ consoleOut: 0x3f8, reads: [] });
    const before = g.cpu.stats().nativeExits;
    g.cpu.resume();
    assert.ok(await eventually(() => g.cpu.stats().nativeExits > before), "fast again after the table came back");
    g.cpu.stop();
    await new Promise((r) => setImmediate(r));
    const bytes = Buffer.concat([...g.console, g.vm.drainConsole()]);
    assert.ok(bytes.length > 0 && bytes.every((b) => b === 0x78));
  } finally {
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
