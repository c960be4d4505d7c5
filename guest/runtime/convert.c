/*
 * KVM_HC_MAP_GPA_RANGE via the method the boot page names. See convert.h: never on a host
 * where hypercalls do not reach userspace (PVM spins forever on vmcall/vmmcall).
 */
#include <tsvmm/tsvmm.h>
#include "runtime.h"

long tsvmm_map_gpa_range(uint64_t gpa, uint64_t pages, uint64_t attrs)
{
	const struct tsvmm_boot_info *b = tsvmm_boot_page;
	unsigned long ret;
	if (!b)
		return TSVMM_ENOSYS;
	switch (b->convert_method) {
	case TSVMM_CONVERT_VMCALL:
		__asm__ volatile("vmcall"
				 : "=a"(ret)
				 : "a"((unsigned long)TSVMM_HC_MAP_GPA_RANGE), "b"(gpa), "c"(pages), "d"(attrs)
				 : "memory");
		return (long)ret;
	case TSVMM_CONVERT_VMMCALL:
		__asm__ volatile("vmmcall"
				 : "=a"(ret)
				 : "a"((unsigned long)TSVMM_HC_MAP_GPA_RANGE), "b"(gpa), "c"(pages), "d"(attrs)
				 : "memory");
		return (long)ret;
	case TSVMM_CONVERT_DOORBELL:
		/* RDX carries attrs, so the port must be an immediate: the ABI's fixed doorbell */
		if (b->convert_port != TSVMM_CONVERT_PORT)
			return TSVMM_ENOSYS;
		__asm__ volatile("outl %%eax, %[port]"
				 : "=a"(ret)
				 : "a"((unsigned long)TSVMM_HC_MAP_GPA_RANGE), "b"(gpa), "c"(pages), "d"(attrs),
				   [port] "i"(TSVMM_CONVERT_PORT)
				 : "memory");
		return (long)ret;
	default:
		return TSVMM_ENOSYS;
	}
}
