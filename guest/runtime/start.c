/*
 * Guest entry: boot_info.guest_entry (the ELF entry) is tsvmm_entry, which the firmware calls
 * on every vCPU with the SysV ABI: tsvmm_entry(boot, cpu). It records the boot page, runs the
 * guest's tsvmm_main and flushes the console; the firmware writes the result to the exit port.
 */
#include <tsvmm/tsvmm.h>
#include "runtime.h"

const struct tsvmm_boot_info *tsvmm_boot_page;
uint16_t tsvmm_console_port = TSVMM_CONSOLE_PORT;
uint16_t tsvmm_exit_port = TSVMM_EXIT_PORT;

__attribute__((section(".text.entry"), used))
int tsvmm_entry(const struct tsvmm_boot_info *boot, uint32_t cpu)
{
	/* every vCPU stores the same values: no ordering needed */
	__atomic_store_n(&tsvmm_boot_page, boot, __ATOMIC_RELAXED);
	if (boot->console_port)
		__atomic_store_n(&tsvmm_console_port, boot->console_port, __ATOMIC_RELAXED);
	if (boot->exit_port)
		__atomic_store_n(&tsvmm_exit_port, boot->exit_port, __ATOMIC_RELAXED);
	int status = tsvmm_main(boot, cpu);
	tsvmm_flush();
	return status;
}

const struct tsvmm_boot_info *tsvmm_boot(void) { return tsvmm_boot_page; }

void tsvmm_exit(int status)
{
	tsvmm_flush();
	tsvmm_outl(tsvmm_exit_port, (uint32_t)status);
	for (;;) {
		tsvmm_cli();
		tsvmm_hlt();
	}
}

void tsvmm_halt(void)
{
	tsvmm_flush();
	for (;;) {
		tsvmm_cli();
		tsvmm_hlt();
	}
}
