// The body of a vCPU's worker thread: it runs KVM_RUN itself (NativeVcpu.runUntilExit() blocks here, never
// on the main thread) and answers the exits it can alone, with no thread crossing: the fast ports
// natively, the UART's other registers here (its state is shared memory), and on the attributes
// backend the guest's conversion requests (vcpuConversions.ts). Every other exit goes
// to the machine on the main thread, and the vCPU stays paused until the machine answers it
// (Machine.onThreadExit, onThreadError). Once the vCPU is stopped and closed, the thread says so
// (VcpuThreadReleased) and waits for its next vCPU: threads.ts lends it to the next machine.
// See docs/exit-path.md.
import { parentPort } from "node:worker_threads";
import { loadAddon, NativeStateErrorCode, NativeVcpu, VcpuRunEnd } from "../native";
import { KvmRunView } from "../kvm/kvmRun";
import { Exit } from "../kvm/uapi";
import { PortBus } from "../devices/bus";
import { Serial8250 } from "../devices/serial";
import { CONSOLE_PORT } from "./abi";
import { portIo } from "./portIo";
import { VcpuConversions, VcpuConversionsData } from "./vcpuConversions";
import { ExitMailbox } from "./exitMailbox";

export interface VcpuThreadData {
  /** NativeVcpu.handle */
  handle: number;
  /** Serial8250.state of the machine's UART; absent: no device is answered on this thread */
  serial?: SharedArrayBuffer;
  /** The UART's IRQ when the VM has an irqchip (PC guests), raised from this thread too */
  serialIrq?: number;
  /** The machine's ExitMailbox: exits go there (errors come as messages, counted there too) */
  exits: SharedArrayBuffer;
  /** The attributes backend's conversions, answered on this thread while the machine allows it */
  conversions?: VcpuConversionsData;
}

/** What a vCPU thread tells the machine: KVM_RUN failed, and the vCPU is paused (exits go
 *  through the ExitMailbox) */
export type VcpuThreadMessage = { error: string };

/** Posted after the last VcpuThreadMessage of a vCPU, once main() has closed it: the thread now
 *  waits for its next VcpuThreadData. Only threads.ts sees it. */
export interface VcpuThreadReleased {
  released: true;
}

function main(data: VcpuThreadData): void {
  const exits = new ExitMailbox(0, data.exits);
  const post = (message: VcpuThreadMessage) => {
    exits.sending(vcpu.index);
    parentPort!.postMessage(message);
  };
  let vcpu: NativeVcpu;
  try {
    vcpu = loadAddon().openVcpu(data.handle);
  } catch (err) {
    // The machine was closed before this thread came up (a usage error found after create()).
    if ((err as { code?: NativeStateErrorCode }).code === "ERR_TSVMM_CLOSED") return;
    throw err;
  }
  const run = new KvmRunView(vcpu.run);
  const bus = new PortBus();
  if (data.serial) {
    const irq = data.serialIrq;
    const setIrq = irq === undefined ? undefined : (level: number) => vcpu.irqLine(irq, level);
    // Output joins the fast path's bytes in one native buffer: with several vCPUs transmitting in
    // turn (the guest orders them), one posted message per thread would arrive interleaved.
    const output = (bytes: Uint8Array) => vcpu.console(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    const serial = new Serial8250(CONSOLE_PORT, output, setIrq, data.serial);
    serial.onFastPortsChanged = () => serial.publishFastPorts((ports) => vcpu.setFastPorts(ports));
    bus.register(CONSOLE_PORT, 8, serial);
  }
  const conversions = data.conversions && new VcpuConversions(data.conversions, vcpu);
  try {
    for (;;) {
      let result: number;
      try {
        result = vcpu.runUntilExit();
      } catch (err) {
        vcpu.pause();
        post({ error: (err as Error).message });
        continue; // runUntilExit() waits until the machine stops the vCPU
      }
      if (result === VcpuRunEnd.STOPPED) return;
      if (result === VcpuRunEnd.ANSWERED_WAKE) {
        conversions!.wakeMapWaiter();
        continue;
      }
      if (result === 0 && run.exitReason === Exit.IO && bus.find(run.ioPort)) {
        portIo(bus, run, () => false);
        continue;
      }
      if (result === 0 && conversions?.answer(run)) continue;
      vcpu.pause(); // out of KVM_RUN until the machine has answered (it unpauses)
      exits.post(vcpu.index, result);
    }
  } finally {
    vcpu.close();
  }
}

// Started ahead of need and kept between machines (threads.ts): each vCPU comes in a message. A
// main() that throws ends the thread (an uncaught error), so a thread in doubt is never reused.
function serve(data: VcpuThreadData): void {
  main(data);
  const released: VcpuThreadReleased = { released: true };
  parentPort!.postMessage(released);
  parentPort!.once("message", serve);
}
parentPort!.once("message", serve);
