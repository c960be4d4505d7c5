// Pause at the first conversion to private, show the pages around it and that the host cannot
// read them, convert one page back from the host, and let the guest finish.
//   node dist/examples/watch-conversions.js            (needs private memory: `tsvmm lab -- node ...`)
import { Vm } from "../vmm/api";

async function main(): Promise<void> {
  const vm = await Vm.boot({ guest: "convert", timeout: 240 });
  const e = await vm.until("conversion", (c) => c.to === "private");
  if (!e) throw new Error("the guest ended without converting anything to private");
  console.log(`paused at: ${vm.why()}`);
  const around = { start: e.gpa, end: e.gpa + e.size };
  for (const run of vm.pages(around)) console.log(`  0x${run.start.toString(16)}-0x${run.end.toString(16)} ${run.state} (${run.pages} pages)`);
  try {
    vm.read(e.gpa, 16);
    console.log("unexpected: the host read a private page");
    process.exitCode = 1;
  } catch (err) {
    console.log(`host read refused: ${(err as Error).message}`);
  }
  console.log(`vCPU ${e.vcpu} at ${vm.symbolize(vm.registers(Math.max(e.vcpu, 0)).regs.rip)}`);
  const result = await vm.finish();
  console.log(`exit status ${result.status}: ${result.reason}`);
  process.exitCode ||= result.status;
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
