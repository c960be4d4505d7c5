// KVM's own trace events during a run (`tsvmm run --kernel-events`): a private tracefs instance
// with the trace clock set to CLOCK_MONOTONIC, read back after the run and turned into trace
// records on the trace's time base (the start record's clock.monotonicNs is time 0).
import * as fs from "node:fs";
import * as path from "node:path";
import { ExitStatus, TsvmmError } from "../errors";

export const DEFAULT_KERNEL_EVENTS = ["kvm:kvm_exit", "kvm:kvm_hypercall", "kvm:kvm_page_fault"];
const TRACEFS = "/sys/kernel/tracing";

/** The vcpu of a kernel event no vCPU could be assigned to (its thread never named one) */
export const KERNEL_LANE = -2;

export interface KernelRecord {
  kind: "kernel";
  time: number;
  vcpu: number;
  /** the event's name, e.g. kvm_exit */
  event: string;
  /** host CPU, task name and thread id that hit it */
  cpu: number;
  task: string;
  tid: number;
  /** the event's own text, as tracefs prints it */
  text: string;
}

export interface KernelTracing {
  /** the events that were enabled (a wildcard system counts once) */
  readonly events: string[];
  /** Stop, read what was recorded since `monotonicStartNs`, remove the instance. */
  stop(monotonicStartNs: bigint): KernelRecord[];
}

const unsupported = (what: string) =>
  new TsvmmError(
    `--kernel-events: ${what}`,
    ExitStatus.HOST_UNSUPPORTED,
    "it needs root and a kernel with tracefs and KVM's trace events (CONFIG_FTRACE); `tsvmm lab --kernel stock -- tsvmm run ... --kernel-events` has them",
  );

function tracefsRoot(): string {
  if (fs.existsSync(path.join(TRACEFS, "instances"))) return TRACEFS;
  // Not mounted yet (the lab's init does not mount it): try, as root may.
  // required here: node:child_process takes ~5 ms to load, and only this needs it
  const { spawnSync } = require("node:child_process") as typeof import("node:child_process");
  spawnSync("mount", ["-t", "tracefs", "nodev", TRACEFS], { stdio: "ignore", timeout: 5000 });
  if (fs.existsSync(path.join(TRACEFS, "instances"))) return TRACEFS;
  throw unsupported(`there is no tracefs at ${TRACEFS} (and mounting it failed)`);
}

function write(file: string, value: string): void {
  try {
    fs.writeFileSync(file, value);
  } catch (err) {
    throw unsupported(`cannot write ${value.trim()} to ${file} (${(err as NodeJS.ErrnoException).code})`);
  }
}

/** "kvm:kvm_exit" or "kvm:*" or "kvmmmu" → the enable file in the instance */
function enableFile(instance: string, spec: string): string {
  const [system, name] = spec.includes(":") ? spec.split(":", 2) : [spec, "*"];
  const dir = path.join(instance, "events", system);
  if (!fs.existsSync(dir)) {
    const systems = fs.readdirSync(path.join(instance, "events")).filter((s) => s.startsWith("kvm"));
    throw unsupported(`this kernel has no ${system} trace events (it has: ${systems.join(", ") || "no KVM events"})`);
  }
  if (name === "*") return path.join(dir, "enable");
  if (!fs.existsSync(path.join(dir, name))) throw unsupported(`this kernel has no trace event ${system}:${name}`);
  return path.join(dir, name, "enable");
}

export function startKernelEvents(specs: string[]): KernelTracing {
  const root = tracefsRoot();
  const instance = path.join(root, "instances", `tsvmm-${process.pid}`);
  try {
    fs.mkdirSync(instance);
  } catch (err) {
    throw unsupported(`cannot create the tracefs instance ${instance} (${(err as NodeJS.ErrnoException).code})`);
  }
  const remove = () => {
    try {
      fs.rmdirSync(instance);
    } catch {
      // already gone, or busy: the next run's mkdir tells
    }
  };
  try {
    write(path.join(instance, "tracing_on"), "0");
    write(path.join(instance, "trace_clock"), "mono");
    // this process, its threads (vCPU threads may be started already: `run` starts one first
    // thing) and the threads it starts later only: other VMs on the host stay out
    write(path.join(instance, "options", "event-fork"), "1");
    write(path.join(instance, "set_event_pid"), fs.readdirSync("/proc/self/task").join(" "));
    write(path.join(instance, "buffer_size_kb"), "16384");
    for (const spec of specs) write(enableFile(instance, spec), "1");
    write(path.join(instance, "tracing_on"), "1");
  } catch (err) {
    remove();
    throw err;
  }
  return {
    events: specs,
    stop(monotonicStartNs) {
      write(path.join(instance, "tracing_on"), "0");
      const text = fs.readFileSync(path.join(instance, "trace"), "utf8");
      const lost = fs.readFileSync(path.join(instance, "per_cpu", "cpu0", "stats"), "utf8").match(/overrun: (\d+)/)?.[1];
      remove();
      const records = parseTracefs(text, monotonicStartNs);
      if (lost && Number(lost) > 0) records.push({ kind: "kernel", time: records[records.length - 1]?.time ?? 0, vcpu: KERNEL_LANE, event: "lost", cpu: 0, task: "", tid: 0, text: `${lost} events lost on CPU 0 (buffer full)` });
      return records;
    },
  };
}

// "  node-1234    [001] .....  123.456789: kvm_exit: vcpu 0 reason ..." (with or without the flags column)
const LINE = /^\s*(.+?)-(\d+)\s+\[(\d+)\]\s+(?:\S+\s+)?(\d+)\.(\d+):\s+([\w:]+):\s?(.*)$/;

/** tracefs's text output → records on the trace's time base (ms since monotonicStartNs); events
 *  before it are dropped. A thread's vCPU is the one its events name ("vcpu N"). */
export function parseTracefs(text: string, monotonicStartNs: bigint): KernelRecord[] {
  const records: KernelRecord[] = [];
  const vcpuOfTid = new Map<number, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const [, task, tid, cpu, sec, frac, event, rest] = m;
    const ns = BigInt(sec) * 1_000_000_000n + BigInt(frac.padEnd(9, "0").slice(0, 9));
    if (ns < monotonicStartNs) continue;
    const named = /\bvcpu (\d+)/.exec(rest);
    if (named) vcpuOfTid.set(Number(tid), Number(named[1]));
    records.push({ kind: "kernel", time: Number(ns - monotonicStartNs) / 1e6, vcpu: KERNEL_LANE, event, cpu: Number(cpu), task, tid: Number(tid), text: rest });
  }
  for (const r of records) r.vcpu = vcpuOfTid.get(r.tid) ?? KERNEL_LANE;
  return records;
}
