// The exit switch: every exit the native run loop does not answer itself lands here, one case per
// exit reason, and each handler says whether the vCPU goes back into KVM_RUN.
import { loadAddon } from "../native";
import { Errno, Exit, exitName, HC_MAP_GPA_RANGE, InternalError, IoDirection, KVM_ENOSYS, SystemEvent } from "../kvm/uapi";
import { ExitStatus } from "../errors";
import { HOST_PORT } from "./abi";
import { answerRequest, RequestExit, requestExit, requestOf } from "./conversionExit";
import type { PortBus, UnclaimedAccesses } from "../devices/bus";
import { portIo } from "./portIo";
import type { ConversionEngine } from "../memory/engine";
import { handleHostRequest, HostRequestContext } from "./hostRequests";
import type { PrivateMemoryOptions } from "../memory/options";
import type { VcpuState } from "./vcpu";

/** After an exit: back into KVM_RUN, or stay out (halted, stopped, or the run has ended). */
export type Outcome = "resume" | "stay";

/** What the handlers may use of the machine */
export interface ExitContext {
  readonly vcpus: readonly VcpuState[];
  readonly bus: PortBus;
  /** PC guests only: MMIO that no device claims reads all-ones and drops writes, as on a PC's
   *  bus, and is counted here by address; absent, such an access stops the VM */
  readonly unclaimedMmio?: UnclaimedAccesses;
  /** Present when the VM has private memory */
  readonly conversions?: {
    engine: ConversionEngine;
    options: PrivateMemoryOptions;
    hostRequests: HostRequestContext;
  };
  /** True once the run has ended */
  readonly ended: boolean;
  /** End the run (first caller wins) */
  finish(status: number, reason: string, report?: string): void;
  trace(vcpu: number, kind: string, fields: Record<string, unknown>): void;
  log(line: string): void;
  /** KVM_EXIT_DEBUG for an attached debugger (vmm/control); undefined when none is attached */
  debugExit(v: VcpuState, info: { exception: number; pc: bigint; dr6: bigint; dr7: bigint }): Outcome | undefined;
  /** --on-fault stop with a monitor or debugger attached: pause there instead of ending (true) */
  pauseInsteadOfEnding(v: VcpuState, why: string): boolean;
}

export function handleExit(m: ExitContext, v: VcpuState, errno: number): Outcome {
  const run = v.kvmRun;
  const reason = run.exitReason;
  const stop = (status: number, what: string): Outcome => {
    m.finish(status, `vCPU ${v.index}: ${what}`, v.registerReport());
    return "stay";
  };
  switch (reason) {
    case Exit.IO: {
      const io = run.io;
      if (m.conversions) {
        if (requestExit(run) === "doorbell") return conversionRequest(m, v, "doorbell");
        if (io.port === HOST_PORT && io.direction === IoDirection.OUT && io.size === 4 && io.count === 1) return hostRequest(m, v);
      }
      portIo(m.bus, run, () => m.ended);
      return m.ended ? "stay" : "resume";
    }
    case Exit.HYPERCALL:
      return conversionRequest(m, v, "hypercall");
    case Exit.HLT:
      v.halted = true;
      m.trace(v.index, "halt", {});
      if (m.vcpus.every((x) => x.halted))
        m.finish(
          ExitStatus.UNHANDLED_EXIT,
          "every vCPU halted without writing the exit port (no interrupts are delivered, so none can continue)",
          v.registerReport(),
        );
      return "stay";
    case Exit.SHUTDOWN:
      return stop(ExitStatus.TRIPLE_FAULT, "triple fault (KVM_EXIT_SHUTDOWN)");
    case Exit.INTERNAL_ERROR: {
      const { suberror, data } = run.internal;
      const what = suberror === InternalError.EMULATION ? "emulation failure" : `internal error, suberror ${suberror}`;
      const extra = data.length ? ` data=[${data.map((d) => "0x" + d.toString(16)).join(", ")}]` : "";
      return stop(ExitStatus.KVM_INTERNAL_ERROR, `KVM ${what} (KVM_EXIT_INTERNAL_ERROR)${extra}`);
    }
    case Exit.FAIL_ENTRY:
      return stop(ExitStatus.KVM_INTERNAL_ERROR, `VM entry failed, hardware reason 0x${run.failEntry.reason.toString(16)}`);
    case Exit.MMIO: {
      const a = run.mmio;
      if (m.unclaimedMmio) {
        m.unclaimedMmio.note(Number(a.physAddr), a.isWrite);
        if (!a.isWrite) a.data.fill(0xff, 0, a.len);
        return "resume";
      }
      return stop(
        ExitStatus.UNHANDLED_EXIT,
        `${a.isWrite ? "wrote" : "read"} ${a.len} bytes at GPA 0x${a.physAddr.toString(16)}, which is neither RAM nor a device (KVM_EXIT_MMIO)`,
      );
    }
    case Exit.SYSTEM_EVENT: {
      const type = run.systemEvent.type;
      if (type === SystemEvent.SHUTDOWN) m.finish(ExitStatus.OK, "guest powered off (KVM_SYSTEM_EVENT_SHUTDOWN)");
      else if (type === SystemEvent.RESET) m.finish(ExitStatus.GUEST_RESET, "guest reset (KVM_SYSTEM_EVENT_RESET)");
      else if (type === SystemEvent.CRASH) return stop(ExitStatus.GUEST_PANIC, "guest crashed (KVM_SYSTEM_EVENT_CRASH)");
      else return stop(ExitStatus.UNHANDLED_EXIT, `KVM_EXIT_SYSTEM_EVENT type ${type}`);
      return "stay";
    }
    case Exit.MEMORY_FAULT:
      return memoryFault(m, v, errno);
    case Exit.DEBUG:
      // single-step or a debug-register breakpoint (KVM_SET_GUEST_DEBUG): the debugger's stop
      return m.debugExit(v, run.debug) ?? stop(ExitStatus.UNHANDLED_EXIT, "KVM_EXIT_DEBUG without a debugger attached");
    default:
      return stop(ExitStatus.UNHANDLED_EXIT, `unhandled ${exitName(reason)} (exit reason ${reason})`);
  }
}

/** KVM_HC_MAP_GPA_RANGE by hypercall (the only one enabled) or by the port doorbell; the answer
 *  (hypercall.ret or RAX) is always set. */
function conversionRequest(m: ExitContext, v: VcpuState, via: RequestExit): Outcome {
  const { nr, request } = requestOf(v.kvmRun, via);
  if (nr !== BigInt(HC_MAP_GPA_RANGE) || !m.conversions) {
    const what =
      via === "hypercall"
        ? `unexpected hypercall nr ${nr} (only KVM_HC_MAP_GPA_RANGE = ${HC_MAP_GPA_RANGE} is enabled)`
        : `doorbell with RAX=${nr} (only KVM_HC_MAP_GPA_RANGE = ${HC_MAP_GPA_RANGE} exists)`;
    answerRequest(v.kvmRun, via, BigInt(via === "hypercall" ? -KVM_ENOSYS : KVM_ENOSYS));
    m.finish(ExitStatus.BAD_HYPERCALL, `vCPU ${v.index}: ${what}`, v.registerReport());
    return "stay";
  }
  const { engine, options } = m.conversions;
  const ret = engine.request(via, v.index, request, options.onHypercall);
  answerRequest(v.kvmRun, via, BigInt(ret));
  return "resume";
}

/** A host request (abi.h): the VMM's side of the conversion tests. */
function hostRequest(m: ExitContext, v: VcpuState): Outcome {
  const io = v.kvmRun.io;
  const gpa = BigInt(new DataView(v.kvmRun.ioData(io.dataOffset, 4).slice().buffer).getUint32(0, true));
  const { engine, hostRequests } = m.conversions!;
  // Serialised with conversions, so a check never sees a half-done one.
  const what = engine.hostOperation(() => handleHostRequest(hostRequests, gpa));
  m.trace(v.index, "host-request", { what });
  return "resume";
}

function memoryFault(m: ExitContext, v: VcpuState, errno: number): Outcome {
  const f = v.kvmRun.memoryFault;
  const index = v.index;
  const name = errno === Errno.EFAULT ? "EFAULT" : loadAddon().errnoName(errno);
  const describe = () => `KVM_EXIT_MEMORY_FAULT gpa=0x${f.gpa.toString(16)} size=0x${f.size.toString(16)} flags=0x${f.flags.toString(16)} (${name})`;
  if (!m.conversions) {
    m.trace(index, "memory-fault", { gpa: "0x" + f.gpa.toString(16), size: Number(f.size), flags: Number(f.flags), errno: name });
    m.finish(ExitStatus.MEMORY_FAULT, `vCPU ${index}: ${describe()}; this VM has no private memory to convert`, v.registerReport());
    return "stay";
  }
  const outcome = m.conversions.engine.fault(index, f, name, m.conversions.options.onFault);
  if (outcome.action === "retry") return "resume";
  if (outcome.action === "deny") {
    // --on-fault deny: this vCPU stops with a report; the others go on.
    m.log(`vCPU ${index} stopped: ${describe()}: ${outcome.reason}\n${v.registerReport()}`);
    v.halted = true;
    if (m.vcpus.every((x) => x.halted)) m.finish(ExitStatus.MEMORY_FAULT, `every vCPU stopped; the last: ${describe()}: ${outcome.reason}`);
    return "stay";
  }
  // With a debugger attached the VM pauses here; continuing re-runs the access (after, say, a
  // `convert` from the monitor).
  if (m.pauseInsteadOfEnding(v, `vCPU ${index}: ${describe()}: ${outcome.reason}`)) return "stay";
  m.finish(ExitStatus.MEMORY_FAULT, `vCPU ${index}: ${describe()}: ${outcome.reason}`, v.registerReport());
  return "stay";
}
