// Port I/O between a vCPU's kvm_run and a PortBus: in its own module so the vCPU threads load
// it without the exit switch and the memory code behind it.
import type { PortBus } from "../devices/bus";
import type { KvmRunView } from "../kvm/kvmRun";
import { IoDirection } from "../kvm/uapi";

/** Port I/O for the devices on `bus` (string I/O included), until `ended` says the run is over.
 *  Used by the exit switch and by the vCPU threads (vcpuThread.ts). */
export function portIo(bus: PortBus, run: KvmRunView, ended: () => boolean): void {
  const io = run.io;
  const data = run.ioData(io.dataOffset, io.size * io.count);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let i = 0; i < io.count && !ended(); i++) {
    const o = i * io.size;
    if (io.direction === IoDirection.IN) {
      const value = bus.read(io.port, io.size);
      if (io.size === 1) view.setUint8(o, value);
      else if (io.size === 2) view.setUint16(o, value, true);
      else view.setUint32(o, value, true);
    } else {
      const value = io.size === 1 ? view.getUint8(o) : io.size === 2 ? view.getUint16(o, true) : view.getUint32(o, true);
      bus.write(io.port, io.size, value);
    }
  }
}
