/*
 * exits: the exit-heavy guest of `npm run bench`, run by `tsvmm run build/bench/exits-*.elf`.
 * A guest like those in guest/guests/ (guest runtime, guest.ld, guest/Makefile's flags), built once
 * per (direction, port, count) with -D by test/bench/Makefile. vCPU 0 performs EXITS_N port
 * accesses to EXITS_PORT with the very loop test/bench/exit-loop.c runs in its own bare VM,
 * byte for byte (bench.ts checks the bytes in the built image):
 *
 *     1:  out %al,(%dx)   ee          (EXITS_IN: in (%dx),%al   ec)
 *         sub $1,%ecx     83 e9 01
 *         jnz 1b          75 fa
 *
 * and returns 0 (the VM's exit status). The benchmark times a large-N and a small-N image and
 * divides the difference by the difference in exits, so the boot of tsvmm and the guest cancel.
 */
#include <tsvmm/tsvmm.h>

#ifndef EXITS_N
#error "define EXITS_N"
#endif
#ifndef EXITS_PORT
#error "define EXITS_PORT"
#endif
#ifndef EXITS_IN
#define EXITS_IN 0
#endif

#define STR2(x) #x
#define STR(x) STR2(x)
#if EXITS_IN
#define EXITS_DIRECTION "in"
#else
#define EXITS_DIRECTION "out"
#endif

TSVMM_GUEST_DESCRIPTION("bench: " STR(EXITS_N) " x " EXITS_DIRECTION " on port " STR(EXITS_PORT) " (npm run bench)");

int tsvmm_main(const struct tsvmm_boot_info *boot, uint32_t cpu)
{
	(void)boot;
	if (cpu != 0)
		tsvmm_halt();
	uint32_t n = EXITS_N;
	uint32_t value = '.';
	__asm__ volatile(
#if EXITS_IN
		"1:	in (%%dx), %%al\n"
#else
		"1:	out %%al, (%%dx)\n"
#endif
		"	sub $1, %%ecx\n"
		"	jnz 1b\n"
		: "+c"(n), "+a"(value)
		: "d"(EXITS_PORT)
		: "memory", "cc");
	return 0;
}
