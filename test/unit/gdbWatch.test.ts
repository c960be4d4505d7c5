// The hardware watchpoint path of the GDB stub and the control core, with a fake Machine: no KVM
// we have fires data watchpoints (kvm_pvm emulates every instruction, the nested lab's debug
// registers never fire: see `tsvmm caps`), so here a recorded KVM_SET_GUEST_DEBUG and a
// KVM_EXIT_DEBUG with DR6 bits, as KVM reports a data breakpoint, stand in for the CPU.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import type { Machine, MachineObserver } from "../../vmm/machine/machine";
import { Control } from "../../vmm/control/control";
import { Commands } from "../../vmm/control/commands";
import { SymbolTable } from "../../vmm/debug/symbols";
import { GdbStub } from "../../vmm/debug/gdbStub";
import { encodePacket } from "../../vmm/debug/gdbPacket";
import { GuestDebug } from "../../vmm/kvm/uapi";

/** The parts of Machine the control core uses, recording KVM_SET_GUEST_DEBUG */
class FakeMachine {
  observer?: MachineObserver;
  paused = false;
  ended = undefined;
  readonly cpuCount = 1;
  readonly sharedBit = 0;
  readonly memoryView = { ramSize: 64n << 20n, shared: Buffer.alloc(0), map: undefined };
  readonly guestDebug: Array<{ control: number; regs: readonly bigint[] }> = [];
  rip = 0x100000n;
  async pauseAll(): Promise<void> {
    this.paused = true;
  }
  resumeAll(): void {
    this.paused = false;
  }
  vcpuState(): string {
    return this.paused ? "paused" : "running";
  }
  registers(): { regs: { rip: bigint } } {
    return { regs: { rip: this.rip } };
  }
  setGuestDebug(_vcpu: number, control: number, regs: readonly bigint[]): void {
    this.guestDebug.push({ control, regs: [...regs] });
  }
  /** KVM_EXIT_DEBUG for a data breakpoint: a trap, pc after the instruction, DR6 names the slot */
  dataBreakpoint(slot: number, pc: bigint): void {
    this.rip = pc;
    this.observer!.debugExit(0, { exception: 1, pc, dr6: 0xffff0ff0n | (1n << BigInt(slot)), dr7: 0n });
  }
}

function client(port: number) {
  const socket = net.connect(port, "127.0.0.1");
  let got = "";
  socket.on("data", (d) => (got += d.toString("latin1")));
  const reply = () =>
    new Promise<string>((resolve, reject) => {
      const deadline = Date.now() + 5000;
      const check = () => {
        const m = /\$([^#]*)#[0-9a-f]{2}/.exec(got);
        if (m) {
          got = got.slice(m.index + m[0].length);
          resolve(m[1]);
        } else if (Date.now() > deadline) reject(new Error(`no reply in ${JSON.stringify(got)}`));
        else setTimeout(check, 5);
      };
      check();
    });
  return {
    connected: new Promise<void>((r) => socket.once("connect", () => r())),
    ask: async (packet: string) => {
      socket.write(encodePacket(packet));
      return reply();
    },
    send: (packet: string) => socket.write(encodePacket(packet)),
    reply,
    close: () => socket.destroy(),
  };
}

test("gdb Z2/Z3/Z4: DR0-DR3 and DR7 as KVM_SET_GUEST_DEBUG gets them, watch:/rwatch:/awatch: stop replies, z frees the slot", async (t) => {
  const machine = new FakeMachine();
  const symbols = new SymbolTable([{ name: "count", addr: 0x1050ccn, size: 4n }, { name: "result", addr: 0x101440n, size: 0x60n }]);
  const control = new Control(machine as unknown as Machine, symbols);
  const log: string[] = [];
  const stub = new GdbStub(control, new Commands(control), (line) => log.push(line));
  await stub.listen({ tcp: { host: "127.0.0.1", port: 0 } });
  const c = client(stub.port!);
  t.after(() => {
    c.close();
    stub.close();
  });
  await c.connected;
  assert.equal(await c.ask("?"), "T02thread:1;", "attaching pauses the running VM (SIGINT)");
  assert.equal(machine.paused, true);

  assert.equal(await c.ask("Z2,1050cc,4"), "OK");
  assert.equal(await c.ask("Z3,1050d0,4"), "OK");
  assert.equal(await c.ask("Z4,1050c8,8"), "OK");
  assert.equal(await c.ask("Z1,101440,1"), "OK");
  let last = machine.guestDebug.at(-1)!;
  assert.equal(last.control, GuestDebug.ENABLE | GuestDebug.USE_HW_BP);
  assert.deepEqual(last.regs.slice(0, 4), [0x1050ccn, 0x1050d0n, 0x1050c8n, 0x101440n]);
  // L0-L3; slot 0 RW=01 LEN=11 (write, 4); slot 1 RW=11 LEN=11 (read: x86 watches reads and
  // writes); slot 2 RW=11 LEN=10 (access, 8); slot 3 RW=00 LEN=00 (execute)
  assert.equal(last.regs[7], 0x55n | (0b1101n << 16n) | (0b1111n << 20n) | (0b1011n << 24n));
  assert.equal(await c.ask("Z2,105000,4"), "E01", "a fifth debug register");
  assert.match(log.join("\n"), /all 4 debug registers are in use \(instruction breakpoints and watchpoints share them\)/);
  assert.equal(await c.ask("Z2,1050cd,4"), "E01", "misaligned");
  assert.equal(await c.ask("Z2,1050cc,3"), "E01", "a length a debug register cannot watch");

  const hits: Array<[number, string]> = [
    [0, "watch:1050cc"],
    [1, "rwatch:1050d0"],
    [2, "awatch:1050c8"],
    [3, "hwbreak:"],
  ];
  for (const [slot, reason] of hits) {
    c.send("vCont;c");
    await new Promise((r) => setImmediate(r));
    assert.equal(machine.paused, false);
    machine.rip = 0x101462n;
    machine.dataBreakpoint(slot, 0x101462n);
    assert.equal(await c.reply(), `T05thread:1;${reason};`);
  }
  const why = Buffer.from(await c.ask("qRcmd," + Buffer.from("why").toString("hex")), "hex").toString();
  assert.equal(why, "vCPU 0: breakpoint 4 (addr=0x101440) at result+0x22\n");

  assert.equal(await c.ask("z2,1050cc,4"), "OK");
  assert.equal(await c.ask("Z2,105000,4"), "OK", "the freed slot is used again");
  last = machine.guestDebug.at(-1)!;
  assert.equal(last.regs[0], 0x105000n);
  const [w] = control.list().filter((b) => b.watch?.addr === 0x105000n);
  assert.equal(w.slot, 0);
  assert.match(control.list().map((b) => `${b.id}:${b.hits}`).join(" "), /^2:1 3:1 4:1 5:0$/, "refused inserts take no number");
});

test("the monitor's watch and a watch hit's stop text", async () => {
  const machine = new FakeMachine();
  const symbols = new SymbolTable([{ name: "count", addr: 0x1050ccn, size: 4n }, { name: "result", addr: 0x101440n, size: 0x60n }]);
  const control = new Control(machine as unknown as Machine, symbols);
  const commands = new Commands(control);
  await control.pause();
  assert.equal(await commands.execute("watch count"), "watchpoint 1: 4 bytes at 0x1050cc (count), writes (DR0)");
  assert.equal(await commands.execute("watch count+2 rw"), "watchpoint 2: 2 bytes at 0x1050cc (count), reads and writes (DR1)");
  assert.match(await commands.execute("info break"), /1 {2}watch=count,access=w +hits 0 {2}4 bytes at 0x1050cc \(count\) \(DR0\)/);
  const stopped = control.nextStop();
  await control.resume();
  machine.dataBreakpoint(1, 0x101462n);
  const stop = await stopped;
  assert.equal(stop?.text, "vCPU 0: watchpoint 2 (watch=count+2,access=rw): 2 bytes at 0x1050cc (count) was accessed by the instruction before result+0x22");
  assert.equal(await commands.execute("delete 1"), "deleted breakpoint 1");
  assert.deepEqual(machine.guestDebug.at(-1)!.regs.slice(0, 2), [0n, 0x1050ccn]);
});

test("watchpoints are refused where they cannot fire, by the same check as addr=, before anything is programmed", async () => {
  const machine = new FakeMachine();
  const symbols = new SymbolTable([{ name: "count", addr: 0x1050ccn, size: 4n }]);
  const control = new Control(machine as unknown as Machine, symbols, undefined, "data watchpoints never fire here");
  const commands = new Commands(control);
  await control.pause();
  assert.equal(await commands.execute("watch count"), "error: watch=count,access=w is refused: data watchpoints never fire here (see `tsvmm caps`); event breakpoints and pause work");
  assert.equal(await commands.execute("watch count+3"), "error: watch count+3: a debug register watches 1, 2, 4 or 8 bytes, not 3");
  assert.match(await commands.execute("break addr=0x100000"), /^breakpoint 1: addr=0x100000/, "instruction breakpoints still work");
  assert.deepEqual(control.list().map((b) => b.spec.kind), ["addr"]);
});
