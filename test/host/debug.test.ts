// The debugger's front ends on real guests on /dev/kvm: the monitor (script, stdin, a terminal),
// Debian's gdb in batch mode, and a raw protocol client for malformed packets.
import { test, TestContext } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { tsvmm, TSVMM, CliResult } from "../support/cli";
import { requireKvm } from "../support/host";
import { GUEST_DIR } from "../../vmm/guests";
import { parseElf } from "../../vmm/machine/elf";
import { SymbolTable } from "../../vmm/debug/symbols";
import { encodePacket } from "../../vmm/debug/gdbPacket";
import { Vm } from "../../vmm/api";
import { Exit } from "../../vmm/kvm/uapi";
import { ROOT } from "../support/cli";
import { assessHost, probeHost } from "../../vmm/host/caps";

const T = { timeout: 60000 };
const HELLO = path.join(GUEST_DIR, "hello.elf");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "tsvmm-debug-"));

function script(name: string, lines: string[]): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, lines.join("\n") + "\n");
  return file;
}

/** Start tsvmm in the background; resolves once its stderr matches `ready` */
function background(args: string[], ready: RegExp): Promise<{ done: Promise<CliResult>; kill: () => void }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TSVMM, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    const limit = setTimeout(() => child.kill("SIGKILL"), 50000);
    const done = new Promise<CliResult>((r) =>
      child.on("close", (status, signal) => {
        clearTimeout(limit);
        r({ status, signal, stdout, stderr });
      }),
    );
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => {
      stderr += d;
      if (ready.test(stderr)) resolve({ done, kill: () => child.kill("SIGKILL") });
    });
    child.on("error", reject);
    void done.then((r) => reject(new Error(`tsvmm ended before it was ready: ${r.stderr}`)));
  });
}

let nextPort = 24000 + (process.pid % 2000) * 4;
const freePort = () => nextPort++;

function requireGdb(t: TestContext): boolean {
  if (spawnSync("gdb", ["--version"]).status === 0) return true;
  if (process.env.CI === "true") throw new Error("gdb is not installed, and CI=true forbids skipping (apt-get install gdb)");
  t.skip("gdb is not installed (apt-get install gdb)");
  return false;
}

/** Debian's gdb in batch mode on hello against the stub at port: each command one -ex; its output */
function gdbBatch(port: number, commands: string[]): string {
  const args = ["-batch", "-nx", "-ex", `target remote :${port}`, ...commands.flatMap((c) => ["-ex", c]), HELLO];
  const gdb = spawnSync("gdb", args, { encoding: "utf8", timeout: 40000 });
  return gdb.stdout + gdb.stderr;
}

const tsvmmMain = () => SymbolTable.fromElf(fs.readFileSync(HELLO)).lookup("tsvmm_main")!.addr;
/** hello's TAP counter (guest/runtime/tap.c), written once per test line with lock xadd */
const countAddr = () => SymbolTable.fromElf(fs.readFileSync(HELLO)).lookup("count")!.addr;
/** Why this host's KVM refuses data watchpoints (`tsvmm caps`), or undefined where they fire */
const watchRefusal = () => assessHost(probeHost()).debugging.watchRefusal;

test("monitor script: stop at a symbol, step, read memory and page states, refuse bad input, run to the end", T, async (t) => {
  if (!requireKvm(t)) return;
  const file = script("hello.mon", [
    "# comments and blank lines are skipped",
    "",
    "why",
    "break addr=tsvmm_main",
    "info break",
    "continue",
    "step 3",
    "x/8xb tsvmm_main",
    "pages",
    "frobnicate",
    "pages 4M-2M",
    "x/4zz 0x1000",
    "regs 7",
    "vcpus",
    "delete 1",
    "continue",
  ]);
  const r = await tsvmm(["run", "hello", "--monitor-script", file]);
  assert.equal(r.status, 0, r.stderr);
  const out = r.stdout;
  assert.match(out, /\(tsvmm\) why\nstarted paused at _start\+0x[0-9a-f]+ \(firmware\/entry\.S:\d+\) \(after the first instruction of vCPU 0\)/);
  // file:line from the guest's .debug_line (built with -g), as addr2line gives it
  const mainLine = path.relative(ROOT, execFileSync("addr2line", ["-e", HELLO, "0x" + tsvmmMain().toString(16)], { encoding: "utf8" }).trim());
  assert.match(mainLine, /^guest\/guests\/hello\.c:\d+$/);
  assert.ok(out.includes(`breakpoint 1: addr=tsvmm_main at 0x${tsvmmMain().toString(16)}: tsvmm_main (${mainLine})\n`), out);
  assert.ok(out.includes(`stopped: vCPU 0: breakpoint 1 (addr=tsvmm_main) at tsvmm_main (${mainLine})\n`), out);
  assert.ok(out.includes(`    rip is tsvmm_main (${mainLine})\n`), out);
  assert.match(out, /64-bit long mode/);
  assert.match(out, /rip=0*([0-9a-f]+) /);
  assert.match(out, /stepped 3 instructions on vCPU 0, now at tsvmm_main\+0x[1-9a-f]/);
  // the bytes the monitor shows are the ELF's bytes at that address
  const main = tsvmmMain();
  const seg = parseElf("hello", fs.readFileSync(HELLO)).segments.find((s) => main >= s.gpa && main < s.gpa + BigInt(s.data.length))!;
  const bytes = [...seg.data.subarray(Number(main - seg.gpa), Number(main - seg.gpa) + 8)].map((b) => "0x" + b.toString(16).padStart(2, "0")).join(" ");
  assert.ok(out.includes(`0x${main.toString(16)} <tsvmm_main (${mainLine})>:\t${bytes}`), out);
  assert.match(out, /0x0-0x4000000 shared {2}16384 pages/);
  assert.match(out, /\(tsvmm\) frobnicate\nerror: unknown command "frobnicate"; `help` lists them\n/);
  assert.match(out, /\(tsvmm\) pages 4M-2M\nerror: pages: range 4M-2M is empty\n/);
  assert.match(out, /\(tsvmm\) x\/4zz 0x1000\nerror: x\/4zz: bad format/);
  assert.match(out, /\(tsvmm\) regs 7\nerror: no vCPU 7 \(this VM has 1: 0 to 0\)/);
  assert.match(out, /vCPU 0: paused at tsvmm_main\+0x/);
  assert.match(out, /ok 3 - guest entry and free_base/); // the guest ran to its end
  assert.match(out, /the VM ended: guest exited with status 0/);
});

test("monitor on stdin: an exit breakpoint names the exit and the vCPU, events lists it, quit ends with 130", T, async (t) => {
  if (!requireKvm(t)) return;
  // echo on 2 vCPUs: vCPU 1 halts at once (KVM_EXIT_HLT reaches TypeScript), vCPU 0 waits for input
  const r = await tsvmm(["run", "echo", "--cpus", "2", "--monitor"], { input: "break exit=HLT\ncontinue\nwhy\nevents 3\nvcpus\nquit\nregs\n" });
  assert.equal(r.status, 130, r.stderr);
  assert.match(r.stdout, /stopped: breakpoint 1 \(exit=HLT\): vCPU 1: KVM_EXIT_HLT\n {2}vCPU 1 registers/);
  assert.match(r.stdout, /rip is tsvmm_halt\+0x/);
  assert.match(r.stdout, /\(tsvmm\) why\nbreakpoint 1 \(exit=HLT\): vCPU 1: KVM_EXIT_HLT/);
  assert.match(r.stdout, /\(tsvmm\) events 3\n +[\d.]+ ms {2}vCPU 1: KVM_EXIT_HLT/);
  assert.match(r.stdout, /vCPU 0: paused at [^\n]+\n {2}vCPU 1: halted at tsvmm_halt\+0x[0-9a-f]+ \(\S*arch\.h:\d+\)/);
  assert.doesNotMatch(r.stdout, /\(tsvmm\) regs/); // nothing runs after quit
  assert.match(r.stderr, /ended from the monitor \(quit\)/);
});

test("monitor on a terminal: prompt, completion, Ctrl-C pauses, quit", T, async (t) => {
  if (!requireKvm(t)) return;
  // `script` gives tsvmm a pseudo-terminal; what we write to script's stdin is typed there.
  const child = spawn("script", ["-qfec", `${process.execPath} ${TSVMM} run spin --monitor --quiet`, "/dev/null"], { stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  const done = new Promise<number | null>((resolve) => child.on("close", resolve));
  const kill = setTimeout(() => child.kill("SIGKILL"), 40000);
  const waitFor = (re: RegExp, from = 0) =>
    new Promise<void>((resolve, reject) => {
      const deadline = Date.now() + 20000;
      const check = () => (re.test(out.slice(from)) ? resolve() : Date.now() > deadline ? reject(new Error(`no ${re} in:\n${out}`)) : setTimeout(check, 50));
      check();
    });
  await waitFor(/\(tsvmm\) /);
  let mark = out.length;
  child.stdin.write("vcp\t"); // tab completes to vcpus
  await waitFor(/vcpus/, mark);
  child.stdin.write("\r");
  await waitFor(/vCPU 0: paused at/, mark);
  mark = out.length;
  child.stdin.write("continue\r");
  await new Promise((r) => setTimeout(r, 500)); // the spin guest is running now
  child.stdin.write("\x03"); // Ctrl-C
  await waitFor(/stopped: interrupted from the monitor \(Ctrl-C\)/, mark);
  mark = out.length;
  child.stdin.write("why\r");
  await waitFor(/interrupted from the monitor/, mark);
  child.stdin.write("quit\r");
  const status = await done;
  clearTimeout(kill);
  assert.equal(status, 130, out);
});

test("--break without a monitor or debugger prints each stop and goes on", T, async (t) => {
  if (!requireKvm(t)) return;
  const r = await tsvmm(["run", "hello", "--break", "addr=tsvmm_main"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /tsvmm: stopped: vCPU 0: breakpoint 1 \(addr=tsvmm_main\) at tsvmm_main/);
  assert.match(r.stdout, /ok 3 - /);
});

test("bad --break, --gdb and --monitor-script values are usage errors (64)", T, async (t) => {
  if (!requireKvm(t)) return;
  const cases: Array<[string[], RegExp]> = [
    [["--break", "conversions"], /--break "conversions": unknown breakpoint kind/],
    [["--break", "addr=no_such_symbol"], /--break addr=no_such_symbol: no_such_symbol: no such symbol/],
    [["--gdb", "tcp:99999"], /--gdb tcp:99999: port 99999 is out of range/],
    [["--gdb", "somewhere"], /--gdb "somewhere" is not an address/],
    [["--monitor-script", path.join(tmp, "absent")], /--monitor-script .*absent: cannot be read \(ENOENT\)/],
  ];
  for (const [args, pattern] of cases) {
    const r = await tsvmm(["run", "hello", ...args]);
    assert.equal(r.status, 64, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, pattern);
  }
});

test("gdb: break at a symbol, threads, registers, stepi, monitor commands, continue to the end", T, async (t) => {
  if (!requireKvm(t) || !requireGdb(t)) return;
  const port = freePort();
  const vm = await background(["run", "hello", "--gdb", `tcp:${port}`, "--gdb-wait"], /gdb: listening/);
  const out = gdbBatch(port, [
    "info threads",
    "break tsvmm_main",
    "continue",
    "bt 1",
    "info registers rip",
    "stepi",
    "print $pc",
    "x/2xb tsvmm_main",
    "monitor why",
    "monitor pages 0x100000+64K",
    "monitor bogus",
    "delete",
    "continue",
  ]);
  const r = await vm.done;
  const main = "0x" + tsvmmMain().toString(16);
  assert.match(out, /\* 1 +Thread 1 \(vCPU 0 paused\)/);
  assert.match(out, new RegExp(`Breakpoint 1 at ${main}`));
  // the guests carry DWARF (-g): gdb shows the arguments and the source line
  assert.match(out, /Breakpoint 1, tsvmm_main \(boot=0x[0-9a-f]+, cpu=0\) at \S*guest\/guests\/hello\.c:\d+/);
  assert.match(out, /#0 +tsvmm_main \(boot=0x[0-9a-f]+, cpu=0\) at \S*hello\.c:\d+/);
  assert.match(out, new RegExp(`rip +${main} +${main} <tsvmm_main>`));
  assert.match(out, /\$1 = \(void \(\*\)\(\)\) 0x[0-9a-f]+ <tsvmm_main\+[1-9]\d*>/);
  assert.match(out, /stepped 1 instruction on vCPU 0, now at tsvmm_main\+0x/);
  assert.match(out, /0x100000-0x110000 shared {2}16 pages/);
  assert.match(out, /error: unknown command "bogus"/);
  assert.match(out, /\[Inferior 1 \(Remote target\) exited normally\]/);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /ok 3 - /);
});

/** A raw protocol client: send bytes, collect what comes back */
function rawClient(port: number | string) {
  const socket = typeof port === "string" ? net.connect(port) : net.connect(port, "127.0.0.1");
  let got = "";
  socket.on("data", (d) => (got += d.toString("latin1")));
  return {
    connected: new Promise<void>((r) => socket.once("connect", () => r())),
    send: (bytes: string | Buffer) => socket.write(bytes),
    /** wait until the received text matches, then return and clear it */
    expect: (re: RegExp) =>
      new Promise<string>((resolve, reject) => {
        const deadline = Date.now() + 10000;
        const check = () => {
          if (re.test(got)) {
            const all = got;
            got = "";
            resolve(all);
          } else if (Date.now() > deadline) reject(new Error(`no ${re} in ${JSON.stringify(got)}`));
          else setTimeout(check, 20);
        };
        check();
      }),
    close: () => socket.destroy(),
  };
}

test("gdb stub: NAK on a bad checksum, empty reply for unknown packets, E for malformed ones; a disconnect lets the VM run on", T, async (t) => {
  if (!requireKvm(t)) return;
  const port = freePort();
  const vm = await background(["run", "hello", "--gdb", `tcp:${port}`, "--gdb-wait"], /gdb: listening/);
  const c = rawClient(port);
  await c.connected;
  c.send("$qSupported#00");
  assert.equal(await c.expect(/-/), "-");
  c.send(encodePacket("qSupported:swbreak+"));
  assert.match(await c.expect(/#[0-9a-f]{2}$/), /^\+\$PacketSize=4000;qXfer:features:read\+/);
  c.send(encodePacket("qTfV"));
  assert.equal(await c.expect(/#00$/), "+$#00");
  c.send(encodePacket("m100000"));
  assert.match(await c.expect(/#[0-9a-f]{2}$/), /^\+\$E01#/);
  c.send(encodePacket("?"));
  assert.match(await c.expect(/#[0-9a-f]{2}$/), /^\+\$T05thread:1;#/);
  c.send(encodePacket("m0,4")); // page 0 is shared RAM: readable
  assert.match(await c.expect(/#[0-9a-f]{2}$/), /^\+\$[0-9a-f]{8}#/);
  c.send(encodePacket("m4000000,4")); // past the end of RAM
  assert.match(await c.expect(/#[0-9a-f]{2}$/), /^\+\$E14#/);
  // watchpoints: 1, 2, 4 or 8 bytes at an aligned address; errors otherwise (the reason in the log)
  const count = countAddr().toString(16);
  for (const bad of [`Z2,${count},3`, `Z2,${count},10`, `Z4,${(countAddr() + 1n).toString(16)},2`]) {
    c.send(encodePacket(bad));
    assert.match(await c.expect(/#[0-9a-f]{2}$/), /^\+\$E01#/, bad);
  }
  c.send(encodePacket(`Z2,${count},4`));
  assert.match(await c.expect(/#[0-9a-f]{2}$/), watchRefusal() ? /^\+\$E01#/ : /^\+\$OK#/);
  c.close(); // no detach, no kill: the VM must run on to its end
  const r = await vm.done;
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /gdb: debugger disconnected; the VM runs on/);
  assert.match(r.stderr, /gdb: watch 0x[0-9a-f]+\+3: a debug register watches 1, 2, 4 or 8 bytes, not 3/);
  assert.match(r.stderr, /gdb: watch 0x[0-9a-f]+\+16: a debug register watches 1, 2, 4 or 8 bytes, not 16/);
  assert.match(r.stderr, /gdb: watch 0x[0-9a-f]+\+2: 0x[0-9a-f]+ is not aligned to 2 bytes/);
  if (watchRefusal()) assert.match(r.stderr, /gdb: watch=0x[0-9a-f]+\+4,access=w is refused: /);
  assert.match(r.stdout, /ok 3 - /);
});

test("a gdb port already in use is a usage error naming it", T, async (t) => {
  if (!requireKvm(t)) return;
  const port = freePort();
  const holder = net.createServer();
  await new Promise<void>((r) => holder.listen(port, "127.0.0.1", () => r()));
  try {
    const r = await tsvmm(["run", "hello", "--gdb", `tcp:${port}`]);
    assert.equal(r.status, 64, r.stderr);
    assert.match(r.stderr, new RegExp(`--gdb: 127.0.0.1:${port} is already in use \\(EADDRINUSE\\)`));
  } finally {
    holder.close();
  }
});

test("gdb stub on a Unix socket: a file in the way is refused, detach lets the VM run on", T, async (t) => {
  if (!requireKvm(t)) return;
  const sock = path.join(tmp, "gdb.sock");
  fs.writeFileSync(sock, ""); // not a socket: must be refused, not deleted
  const refused = await tsvmm(["run", "hello", "--gdb", `unix:${sock}`]);
  assert.equal(refused.status, 64, refused.stderr);
  assert.match(refused.stderr, /--gdb: .*gdb.sock already exists and is not a socket \(EADDRINUSE\)/);
  fs.rmSync(sock);
  const vm = await background(["run", "hello", "--gdb", `unix:${sock}`, "--gdb-wait"], /gdb: listening/);
  const c = rawClient(sock);
  await c.connected;
  c.send(encodePacket("?"));
  assert.match(await c.expect(/#[0-9a-f]{2}$/), /^\+\$T05thread:1;#/);
  c.send(encodePacket("D"));
  assert.match(await c.expect(/#[0-9a-f]{2}$/), /^\+\$OK#/);
  const r = await vm.done;
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /gdb: debugger detached; the VM runs on/);
});

test("API: until an exit stops there on the right vCPU; registers and memory; finish", T, async (t) => {
  if (!requireKvm(t)) return;
  const vm = await Vm.boot({ guest: "echo", cpus: 2, timeout: 30 });
  assert.match(vm.why(), /started paused/);
  const e = await vm.until("exit", (x) => x.reason === Exit.HLT);
  assert.ok(e);
  assert.equal(e.vcpu, 1);
  assert.match(vm.symbolize(vm.registers(1).regs.rip), /^tsvmm_halt\+0x/);
  assert.equal(vm.read(0x100000n, 4).length, 4);
  assert.deepEqual(vm.pages(), [{ start: 0n, end: 64n << 20n, state: "shared", pages: 16384 }]);
  await assert.rejects(vm.convert({ start: 0x200000n, end: 0x201000n }, "private"), /no private memory/);
  const r = await vm.kill();
  assert.equal(r.status, 130);
});

test("the stop-at-main example runs to its end", T, (t) => {
  if (!requireKvm(t)) return;
  const r = spawnSync(process.execPath, [path.join(ROOT, "dist", "examples", "stop-at-main.js")], { encoding: "utf8", timeout: 30000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /stopped: vCPU 0: breakpoint 1 \(addr=tsvmm_main\) at tsvmm_main/);
  assert.match(r.stdout, /stepped 2 instructions on vCPU 0, now at tsvmm_main\+0x/);
  assert.match(r.stdout, /exit status 0/);
});

test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test("monitor watch: bad lengths, alignment and access are refused; a watchpoint stops after the write, or is refused where it cannot fire", T, async (t) => {
  if (!requireKvm(t)) return;
  const misaligned = "0x" + (countAddr() + 2n).toString(16);
  const file = script("watch.mon", ["watch count+3", `watch ${misaligned}+4`, "watch count r", "watch count+16", "watch count", "info break", "continue", "x/1dw count", "info break", "continue"]);
  const r = await tsvmm(["run", "hello", "--monitor-script", file]);
  assert.equal(r.status, 0, r.stderr);
  const out = r.stdout;
  assert.match(out, /\(tsvmm\) watch count\+3\nerror: watch count\+3: a debug register watches 1, 2, 4 or 8 bytes, not 3\n/);
  assert.ok(out.includes(`(tsvmm) watch ${misaligned}+4\nerror: watch ${misaligned}+4: ${misaligned} is not aligned to 4 bytes`), out);
  assert.match(out, /\(tsvmm\) watch count r\nerror: watch: "r" is not w or rw \(x86 cannot watch reads alone\)/);
  assert.match(out, /\(tsvmm\) watch count\+16\nerror: watch count\+16: a debug register watches 1, 2, 4 or 8 bytes, not 16\n/);
  const refusal = watchRefusal();
  if (refusal) {
    assert.ok(out.includes(`(tsvmm) watch count\nerror: watch=count,access=w is refused: ${refusal} (see \`tsvmm caps\`)`), out);
    assert.match(out, /\(tsvmm\) info break\n {2}no breakpoints\n/);
  } else {
    const count = countAddr().toString(16);
    assert.ok(out.includes(`(tsvmm) watch count\nwatchpoint 1: 4 bytes at 0x${count} (count), writes (DR0)\n`), out);
    assert.match(out, /stopped: vCPU 0: watchpoint 1 \(watch=count,access=w\): 4 bytes at 0x[0-9a-f]+ \(count\) was written by the instruction before result\+0x[0-9a-f]+ \(guest\/runtime\/tap\.c:\d+\)/);
    assert.match(out, /\(tsvmm\) x\/1dw count\n0x[0-9a-f]+ <count>:\t1\n/);
    assert.match(out, /1 {2}watch=count,access=w +hits 1 {2}4 bytes at 0x[0-9a-f]+ \(count\) \(DR0\)/);
  }
  assert.match(out, /ok 3 - /);
});

test("--break watch= is a usage error where watchpoints cannot fire, and stops where they can", T, async (t) => {
  if (!requireKvm(t)) return;
  const r = await tsvmm(["run", "hello", "--break", "watch=count"]);
  const refusal = watchRefusal();
  if (refusal) {
    assert.equal(r.status, 64, r.stderr);
    assert.ok(r.stderr.includes(`--break watch=count: watch=count,access=w is refused: ${refusal}`), r.stderr);
  } else {
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /tsvmm: stopped: vCPU 0: watchpoint 1 \(watch=count,access=w\)/);
  }
});

test("gdb: watch on a guest variable shows the old and new value (hardware where the debug registers fire, gdb's software watchpoint everywhere)", T, async (t) => {
  if (!requireKvm(t) || !requireGdb(t)) return;
  const port = freePort();
  const vm = await background(["run", "hello", "--gdb", `tcp:${port}`, "--gdb-wait"], /gdb: listening/);
  // where the hardware watchpoint is refused, gdb aborts that continue and goes on with the next -ex
  const out = gdbBatch(port, [
    "break tap_ok",
    "continue",
    "delete 1",
    "watch count",
    "continue",
    "delete",
    "set can-use-hw-watchpoints 0",
    "watch count",
    "continue",
    "delete",
    "continue",
  ]);
  const r = await vm.done;
  assert.match(out, /Hardware watchpoint 2: count/);
  const refusal = watchRefusal();
  let before = 0;
  if (refusal) {
    assert.match(out, /Could not insert hardware watchpoint 2/);
    assert.match(r.stderr, new RegExp(`gdb: watch=0x[0-9a-f]+\\+4,access=w is refused: data watchpoints never fire`));
  } else {
    assert.match(out, /Hardware watchpoint 2: count\n\nOld value = 0\nNew value = 1\n/);
    before = 1;
  }
  // the software watchpoint single-steps (vCont;s) and compares: the next write of count
  const soft = /\nWatchpoint 3: count\n\nOld value = (\d+)\nNew value = (\d+)\n[^\n]*in result \(/.exec(out);
  assert.ok(soft, out);
  assert.equal(Number(soft[1]), before);
  assert.equal(Number(soft[2]), before + 1);
  assert.match(out, /\[Inferior 1 \(Remote target\) exited normally\]/);
  assert.equal(r.status, 0, r.stderr);
});
