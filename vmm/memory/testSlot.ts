// The exit scenarios' test slot (abi.h TSVMM_HOST_TEST_SLOT_*): one page outside RAM with its own
// guest_memfd, which the guest then asks to be broken so that its next access is a real
// KVM_EXIT_MEMORY_FAULT — as in the kernel's private_mem_kvm_exits_test.
import { loadAddon, NativeGuestMemfd, NativeMemfd, NativeVm } from "../native";
import { GuestMemfdFlag } from "../kvm/uapi";
import { slotRegion } from "./backend";
import { setPrivate } from "./attributes";
import { PAGE } from "./pageState";

export const Break = { DELETE: 1, NO_GMEM: 2, RELEASE: 3 } as const;
/** Far above the slots the backends use */
const TEST_SLOT_ID = 32000;

export class TestSlot {
  private gmem?: NativeGuestMemfd;
  private shared?: NativeMemfd;
  private timer?: NodeJS.Timeout;
  broken = "";

  constructor(
    private readonly vm: NativeVm,
    /** attributes: a private page in a hybrid slot; memslots: a guest_memfd-only page */
    private readonly backend: "attributes" | "memslots",
    readonly gpa: bigint,
  ) {
    this.make();
  }

  contains(gpa: bigint): boolean {
    return gpa >= this.gpa && gpa < this.gpa + PAGE;
  }

  /** Which breaks apply to this backend (the kernel selftest's scenarios that can happen here) */
  static allowed(backend: "attributes" | "memslots", how: number): boolean {
    return backend === "attributes" ? how === Break.DELETE || how === Break.NO_GMEM : how === Break.RELEASE;
  }

  private make(): void {
    if (this.backend === "attributes") {
      this.gmem = this.vm.createGuestMemfd(PAGE, 0n);
      this.shared ??= new (loadAddon().Memfd)("tsvmm-test-slot", PAGE);
      this.shared.map();
      this.vm.setUserMemoryRegion2(slotRegion(TEST_SLOT_ID, this.gpa, PAGE, this.shared.address, this.gmem, 0n));
      setPrivate(this.vm, this.gpa, PAGE, true);
    } else {
      this.gmem = this.vm.createGuestMemfd(PAGE, GuestMemfdFlag.MMAP | GuestMemfdFlag.INIT_SHARED);
      this.gmem.map();
      this.vm.setUserMemoryRegion2(slotRegion(TEST_SLOT_ID, this.gpa, PAGE, this.gmem.address, this.gmem, 0n));
    }
    this.broken = "";
  }

  private remove(): void {
    this.vm.setUserMemoryRegion2(slotRegion(TEST_SLOT_ID, this.gpa, 0n, 0n, null, 0n));
  }

  /** Break the slot; DELETE happens `delayMs` later, while the guest runs. */
  break(how: number, delayMs = 20): string {
    switch (how) {
      case Break.DELETE:
        this.timer = setTimeout(() => {
          this.remove();
          this.broken = "deleted under the running vCPU";
        }, delayMs);
        return `test slot at 0x${this.gpa.toString(16)}: deleting in ${delayMs} ms`;
      case Break.NO_GMEM:
        this.remove();
        this.vm.setUserMemoryRegion2(slotRegion(TEST_SLOT_ID, this.gpa, PAGE, this.shared!.address, null, 0n));
        this.broken = "re-added without KVM_MEM_GUEST_MEMFD while private";
        return `test slot at 0x${this.gpa.toString(16)}: ${this.broken}`;
      default:
        // Closing the fd and the mapping releases the file; KVM keeps the slot.
        this.gmem!.close();
        this.broken = "its guest_memfd released";
        return `test slot at 0x${this.gpa.toString(16)}: ${this.broken}`;
    }
  }

  /** Re-make the slot with a new guest_memfd (the page reads zero afterwards). */
  repair(): string {
    const what = this.broken || "intact";
    if (this.broken !== "deleted under the running vCPU") this.remove();
    this.gmem?.close();
    this.make();
    return `test slot (${what}) re-made with a new guest_memfd`;
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.gmem?.close();
    this.shared?.close();
  }
}
