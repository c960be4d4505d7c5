/* smp: every vCPU reports in; vCPU 0 waits (bounded) for all of them. */
#include <tsvmm/tsvmm.h>

TSVMM_GUEST_DESCRIPTION("every vCPU reports in and bumps an atomic counter; vCPU 0 waits for all");

/* ~10 M pause iterations: far beyond any sane start-up skew under an emulating KVM */
#define WAIT_SPINS 10000000UL

static uint32_t reported;

int tsvmm_main(const struct tsvmm_boot_info *boot, uint32_t cpu)
{
	uint32_t n = boot->cpu_count;
	tsvmm_printf("cpu %u of %u reporting\n", cpu, n);
	__atomic_add_fetch(&reported, 1, __ATOMIC_SEQ_CST);
	if (cpu != 0)
		tsvmm_halt();

	unsigned long spins = 0;
	while (__atomic_load_n(&reported, __ATOMIC_ACQUIRE) < n && spins < WAIT_SPINS) {
		tsvmm_pause();
		spins++;
	}
	uint32_t seen = __atomic_load_n(&reported, __ATOMIC_ACQUIRE);
	if (seen != n) {
		tsvmm_printf("only %u of %u vCPUs reported\n", seen, n);
		return TSVMM_STATUS_FAIL;
	}
	tsvmm_printf("all %u vCPUs reported\n", n);
	return TSVMM_STATUS_PASS;
}
