/*
 * exits: the exit-heavy guest of `npm run bench`, run by `tsvmm run build/bench/exits-*.elf`.
 * It performs EXITS_N port accesses to EXITS_PORT with the very loop test/bench/exit-loop.c
 * runs in its own bare VM, byte for byte (bench.ts checks the bytes in the built image):
 *
 *     1:  out %al,(%dx)   ee          (EXITS_IN: in (%dx),%al   ec)
 *         sub $1,%ecx     83 e9 01
 *         jnz 1b          75 fa
 *
 * then returns 0, which the firmware writes to the exit port. Built once per (direction, port,
 * count) with -D; the benchmark times a large-N and a small-N image and divides the difference
 * by the difference in exits, so the boot of tsvmm and the guest cancel out.
 */
#include <stdint.h>
#include <tsvmm/abi.h>

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

__attribute__((section(".tsvmm.description"), used))
static const char description[] =
	"bench: " STR(EXITS_N) " x " EXITS_DIRECTION " on port " STR(EXITS_PORT) " (npm run bench)";

int guest_entry(const struct tsvmm_boot_info *boot, uint32_t cpu)
{
	(void)boot;
	if (cpu != 0)
		return 0;
	uint32_t n = EXITS_N;
	uint32_t value = '.';
	__asm__ volatile(
		".globl exits_loop\n"
		"exits_loop:\n"
#if EXITS_IN
		"1:	in (%%dx), %%al\n"
#else
		"1:	out %%al, (%%dx)\n"
#endif
		"	sub $1, %%ecx\n"
		"	jnz 1b\n"
		".globl exits_loop_end\n"
		"exits_loop_end:\n"
		: "+c"(n), "+a"(value)
		: "d"(EXITS_PORT)
		: "memory", "cc");
	return 0;
}
