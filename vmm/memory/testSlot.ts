// The exit scenarios' test slot (abi.h TSVMM_HOST_TEST_SLOT_*): one page outside RAM with its own
// guest_memfd, which the guest then asks to be broken so that its next access is a real
// KVM_EXIT_MEMORY_FAULT — as in the kernel's private_mem_kvm_exits_test.
import { loadAddon, NativeGuestMemfd, NativeMemfd, NativeVm } from "../native";
import { GuestMemfdFlag } from "../kvm/uapi";
import { slotRegion } from "./backend";
import { setPrivate } from "./attributes";
import { PAGE } from "./pageState";

/** How the slot is broken: deleted under the running vCPU, re-added without KVM_MEM_GUEST_MEMFD, or its guest_memfd released */
export type SlotBreak = "delete" | "no-gmem" | "release";

export enum SlotState {
  Intact,
  /** deleted under the running vCPU */
  Deleted,
  /** re-added without KVM_MEM_GUEST_MEMFD while private */
  NoGmem,
  /** its guest_memfd released (KVM keeps the slot) */
  Released,
}

const STATE_TEXT: Record<SlotState, string> = {
  [SlotState.Intact]: "intact",
  [SlotState.Deleted]: "deleted under the running vCPU",
  [SlotState.NoGmem]: "re-added without KVM_MEM_GUEST_MEMFD while private",
  [SlotState.Released]: "its guest_memfd released",
};

/** Far above the slots the backends use */
const TEST_SLOT_ID = 32000;

export class TestSlot {
  private gmem?: NativeGuestMemfd;
  private shared?: NativeMemfd;
  private timer?: NodeJS.Timeout;
  state = SlotState.Intact;

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

  /** The state in words, for the run log */
  get stateText(): string {
    return STATE_TEXT[this.state];
  }

  /** Which breaks apply to this backend (the kernel selftest's scenarios that can happen here) */
  static allowed(backend: "attributes" | "memslots", how: SlotBreak): boolean {
    return backend === "attributes" ? how === "delete" || how === "no-gmem" : how === "release";
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
    this.state = SlotState.Intact;
  }

  private remove(): void {
    this.vm.setUserMemoryRegion2(slotRegion(TEST_SLOT_ID, this.gpa, 0n, 0n, null, 0n));
  }

  /** Break the slot; "delete" happens `delayMs` later, while the guest runs. */
  break(how: SlotBreak, delayMs = 20): string {
    const where = `test slot at 0x${this.gpa.toString(16)}`;
    switch (how) {
      case "delete":
        this.timer = setTimeout(() => {
          this.remove();
          this.state = SlotState.Deleted;
        }, delayMs);
        return `${where}: deleting in ${delayMs} ms`;
      case "no-gmem":
        this.remove();
        this.vm.setUserMemoryRegion2(slotRegion(TEST_SLOT_ID, this.gpa, PAGE, this.shared!.address, null, 0n));
        this.state = SlotState.NoGmem;
        return `${where}: ${this.stateText}`;
      case "release":
        // Closing the fd and the mapping releases the file; KVM keeps the slot.
        this.gmem!.close();
        this.state = SlotState.Released;
        return `${where}: ${this.stateText}`;
    }
  }

  /** Re-make the slot with a new guest_memfd (the page reads zero afterwards). */
  repair(): string {
    const what = this.stateText;
    if (this.state !== SlotState.Deleted) this.remove();
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
