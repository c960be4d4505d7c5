// Stop a guest at its main function, look at it, single-step, and let it finish.
//   npm run build:ts && node dist/examples/stop-at-main.js [GUEST]
// Works on any KVM (shared memory only).
import { Vm } from "../vmm/api";

async function main(): Promise<void> {
  const vm = await Vm.boot({ guest: process.argv[2] ?? "hello" });
  console.log(`booted: ${vm.why()}`);
  vm.break("addr=tsvmm_main");
  await vm.resume();
  const stop = await vm.stopped();
  console.log(`stopped: ${stop?.text}`);
  const { regs } = vm.registers(0);
  console.log(`rip ${vm.symbolize(regs.rip)}, rsp 0x${regs.rsp.toString(16)}`);
  console.log(`first bytes of tsvmm_main: ${vm.read(regs.rip, 8).toString("hex")}`);
  const stepped = await vm.step(0, 2);
  console.log(stepped.text);
  const result = await vm.finish();
  console.log(`exit status ${result.status}: ${result.reason}`);
  process.exitCode = result.status;
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
