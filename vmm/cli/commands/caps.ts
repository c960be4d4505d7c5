import type { CommandModule } from "yargs";
import { assessHost, probeHost } from "../../host/caps";
import { EXIT_HYPERCALL_MAP_GPA_RANGE, GuestMemfdFlag, MEMORY_ATTRIBUTE_PRIVATE, VM_TYPE_NAMES } from "../../kvm/uapi";
import { fromSyscall, isSyscallError } from "../../errors";

export interface CapsArgs {
  json: boolean;
  device: string;
}

export const capsCommand: CommandModule<object, CapsArgs> = {
  command: "caps",
  describe: "Report what this host's KVM offers and what tsvmm can do with it",
  builder: (y) =>
    y
      .option("json", { type: "boolean", default: false, describe: "print the probe and the verdict as JSON" })
      .option("device", { type: "string", default: "/dev/kvm", describe: "the KVM device to probe" })
      .example("$0 caps", "vendor module, capabilities, and a verdict")
      .example("$0 lab -- tsvmm caps --json", "the same inside the nested lab's real KVM")
      .strict(),
  handler: (args) => {
    let probe;
    try {
      probe = probeHost(args.device);
    } catch (err) {
      throw isSyscallError(err) ? fromSyscall(err, `cannot probe ${args.device}`) : err;
    }
    const verdict = assessHost(probe);
    if (args.json) {
      process.stdout.write(JSON.stringify({ probe, verdict }, null, 2) + "\n");
      return;
    }
    const s = probe.system;
    const types = VM_TYPE_NAMES.map((n, i) => ((s.vmTypes || 1) & (1 << i) ? `${i} (${n})` : null)).filter(Boolean);
    const flags = (v: number) =>
      [BigInt(v) & GuestMemfdFlag.MMAP && "MMAP", BigInt(v) & GuestMemfdFlag.INIT_SHARED && "INIT_SHARED"].filter(Boolean).join("|") || "none";
    const out = [
      `device            ${probe.device}`,
      `vendor module     ${probe.vendorModule}${probe.tdp === null ? "" : ` (two-dimensional paging: ${probe.tdp ? "on" : "off"})`}`,
      `API version       ${probe.apiVersion}`,
      `execution         ${verdict.execution}: ${verdict.executionBasis}`,
      `VM types          ${types.join(", ")}`,
      `GUEST_MEMFD       ${s.guestMemfd}`,
      `GUEST_MEMFD_FLAGS ${s.guestMemfdFlags} (${flags(s.guestMemfdFlags)})`,
      `MEMORY_ATTRIBUTES ${s.memoryAttributes}${BigInt(s.memoryAttributes) & MEMORY_ATTRIBUTE_PRIVATE ? " (PRIVATE)" : ""}`,
      `USER_MEMORY2      ${s.userMemory2}`,
      `MEMORY_FAULT_INFO ${s.memoryFaultInfo}`,
      `EXIT_HYPERCALL    0x${s.exitHypercall.toString(16)}${BigInt(s.exitHypercall) & EXIT_HYPERCALL_MAP_GPA_RANGE ? " (KVM_HC_MAP_GPA_RANGE)" : ""}`,
      `SYNC_REGS         ${s.syncRegs}`,
      `NR_MEMSLOTS       ${s.nrMemslots}`,
      `IMMEDIATE_EXIT    ${s.immediateExit}`,
      `PRE_FAULT_MEMORY  ${s.preFaultMemory}`,
      `per VM type:`,
      ...Object.entries(probe.vmTypes).map(([name, v]) =>
        "error" in v
          ? `  ${name.padEnd(13)} cannot be created: ${v.error}`
          : `  ${name.padEnd(13)} GUEST_MEMFD=${v.guestMemfd} GUEST_MEMFD_FLAGS=${v.guestMemfdFlags} (${flags(v.guestMemfdFlags)}) MEMORY_ATTRIBUTES=${v.memoryAttributes} EXIT_HYPERCALL=0x${v.exitHypercall.toString(16)}`,
      ),
      ``,
      `RAM backing       ${verdict.ramBackingReason}`,
      `backend attributes: ${verdict.backends.attributes.available ? "yes" : "no"} — ${verdict.backends.attributes.reason}`,
      `backend memslots:   ${verdict.backends.memslots.available ? "yes" : "no"} — ${verdict.backends.memslots.reason}`,
      ``,
      ...verdict.lines,
    ];
    process.stdout.write(out.join("\n") + "\n");
  },
};
