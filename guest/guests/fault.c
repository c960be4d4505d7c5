/*
 * fault: take an exception on purpose (cmdline fault=ud|de|gp|pf|bp|triple, default ud).
 * The firmware's IDT reports it and exits with status 71; `triple` first loads an empty IDT,
 * so the fault escalates to a triple fault (KVM_EXIT_SHUTDOWN).
 * Note: on a KVM that emulates every instruction (kvm_pvm) `int3` cannot be emulated in long
 * mode (KVM's emulator handles INT n only in real mode): fault=bp ends in an emulation failure
 * there instead of #BP.
 */
#include <tsvmm/tsvmm.h>

TSVMM_GUEST_DESCRIPTION("takes an exception on purpose: fault=ud|de|gp|pf|bp|triple (default ud)");

int tsvmm_main(const struct tsvmm_boot_info *boot, uint32_t cpu)
{
	(void)boot;
	if (cpu != 0)
		tsvmm_halt();

	char kind[16];
	int len = tsvmm_cmdline_get("fault", kind, sizeof(kind));
	if (len <= 0)
		memcpy(kind, "ud", 3);
	if (len >= (int)sizeof(kind)) {
		tsvmm_printf("fault: unknown fault=%s (use ud, de, gp, pf, bp or triple)\n", kind);
		return TSVMM_STATUS_FAIL;
	}

	if (!strcmp(kind, "ud")) {
		tsvmm_printf("fault: provoking #UD with ud2\n");
		tsvmm_flush();
		__asm__ volatile("ud2");
	} else if (!strcmp(kind, "de")) {
		tsvmm_printf("fault: provoking #DE by dividing by zero\n");
		tsvmm_flush();
		__asm__ volatile("xorl %%ecx, %%ecx; movl $1, %%eax; xorl %%edx, %%edx; divl %%ecx"
				 ::: "eax", "ecx", "edx");
	} else if (!strcmp(kind, "gp")) {
		tsvmm_printf("fault: provoking #GP with a non-canonical load\n");
		tsvmm_flush();
		__asm__ volatile("movq (%0), %%rax" : : "r"(0x8000000000000000ULL) : "rax", "memory");
	} else if (!strcmp(kind, "pf")) {
		tsvmm_printf("fault: provoking #PF above the 4 GiB identity map\n");
		tsvmm_flush();
		__asm__ volatile("movq (%0), %%rax" : : "r"(0x100000000ULL) : "rax", "memory");
	} else if (!strcmp(kind, "bp")) {
		tsvmm_printf("fault: provoking #BP with int3\n");
		tsvmm_flush();
		__asm__ volatile("int3");
	} else if (!strcmp(kind, "triple")) {
		tsvmm_printf("fault: loading an empty IDT, then ud2 (expect a triple fault)\n");
		tsvmm_flush();
		struct __attribute__((packed)) { uint16_t limit; uint64_t base; } empty = { 0, 0 };
		__asm__ volatile("lidt %0; ud2" : : "m"(empty) : "memory");
	} else {
		tsvmm_printf("fault: unknown fault=%s (use ud, de, gp, pf, bp or triple)\n", kind);
		return TSVMM_STATUS_FAIL;
	}
	tsvmm_printf("fault: still running after fault=%s: the exception was not delivered\n", kind);
	return TSVMM_STATUS_FAIL;
}
