/* spin: print one line, then loop forever with interrupts off (for --timeout and SIGINT tests). */
#include <tsvmm/tsvmm.h>

TSVMM_GUEST_DESCRIPTION("prints \"spinning\" then loops forever with interrupts off (timeout/SIGINT tests)");

int tsvmm_main(const struct tsvmm_boot_info *boot, uint32_t cpu)
{
	(void)boot;
	if (cpu == 0)
		tsvmm_printf("spinning\n");
	tsvmm_cli();
	for (;;)
		__asm__ volatile("" ::: "memory");
}
