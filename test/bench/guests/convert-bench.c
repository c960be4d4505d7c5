/*
 * convert-bench: the conversion guest of `npm run bench` (test/bench/convert-lab.ts runs it in the
 * nested lab; built by test/bench/Makefile like guests/exits.c, with the guest runtime).
 *
 *   mode=convert size=4k|2m|4k,2m n=N [warm=W]
 *       per size: W untimed, then N timed round trips private -> shared -> private of one range
 *       through tsvmm_map_gpa_range (KVM_HC_MAP_GPA_RANGE; the 2 MiB range with the 2M page-size
 *       hint). The range is never touched: this is the cost of the conversion itself.
 *       touch=1: after every conversion the guest stores 8 bytes to each page of the range, so
 *       every conversion discards populated (and mapped) memory.
 *   mode=first-touch size=4k|2m n=N [warm=W]
 *       per round: the range to shared, back to private (timed: the conversion), then one 8-byte
 *       store to each page (timed: the first touch of freshly private pages). With the VMM's
 *       --prefault the conversion maps the range and the touches do not fault.
 *   mode=smp n=N [warm=W]   (the VMM's --cpus 2 or more)
 *       every vCPU at once (after a barrier): W + N round trips private -> shared -> private of
 *       its own 4 KiB page (the range + 2 pages x its index), as mode=convert does for one.
 *   mode=implicit n=N [warm=W]   (needs --shared-bit N, memslots backend)
 *       W + N distinct pages, one after the other, each touched once (an 8-byte store) through
 *       the shared view while private: each is a KVM_EXIT_MEMORY_FAULT, a conversion to shared
 *       and a retry of the store.
 *
 *   mode=alternate n=N
 *       every other page of a range of 2N pages to shared, one request each, until N are done or
 *       the VMM refuses one (the memslots backend runs out of memslots): how many succeeded, the
 *       errno of the refusal, and the median cost of the first and of the last 100 conversions.
 *
 * The range lies in the middle of the private RAM: the guest reserves 2 MiB it never uses, then
 * the range (2 MiB aligned), so the pages on both sides of it are private.
 *
 * Output (one line each, parseable; `key=value` words):
 *   convert-bench: setup mode=... backend=... free_base=0x... ram_end=0x... gpa=0x... shared_bit=N
 *   convert-bench: result mode=convert size=4096 n=N warm=W conversions=2N ticks_total=T ticks_min=T ticks_median=T
 *   convert-bench: result mode=first-touch size=S n=N warm=W conversions=2N convert_ticks_median=T touch_ticks_median=T
 *   convert-bench: result mode=smp size=4096 n=N warm=W vcpus=V conversions=2NV failures=F ticks_total=T
 *   convert-bench: result mode=implicit size=4096 n=N warm=W conversions=N ticks_total=T ticks_min=T ticks_median=T
 *   convert-bench: skip <reason>          (status 0: nothing to measure here)
 *   convert-bench: error <what>           (status 1)
 * Ticks are the guest's rdtsc per round trip (convert) or per touch (implicit), for smp the longest
 * vCPU's span of its timed round trips (they all convert at once); the bench
 * converts them with a rate it calibrates against the VMM's own event times.
 */
#include <tsvmm/tsvmm.h>

TSVMM_GUEST_DESCRIPTION("bench: conversion round trips (mode=convert size=4k|2m n=N [touch=1]), first touches after a conversion (mode=first-touch) or implicit conversions (mode=implicit n=N) (npm run bench)");
TSVMM_GUEST_WANTS_PRIVATE();

#define PAGE   0x1000ULL
#define HUGE   0x200000ULL
#define MAX_N  8192

typedef unsigned long long ull;

static uint64_t ticks[MAX_N];

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
	return ((uint64_t)hi << 32) | lo;
}

/* shell sort: the guest runs under nested TCG, an O(n^2) sort of 8192 values would show */
static void sort(uint64_t *v, unsigned n)
{
	static const unsigned gaps[] = { 1750, 701, 301, 132, 57, 23, 10, 4, 1 };
	for (unsigned g = 0; g < sizeof(gaps) / sizeof(gaps[0]); g++) {
		unsigned gap = gaps[g];
		for (unsigned i = gap; i < n; i++) {
			uint64_t x = v[i];
			unsigned j = i;
			for (; j >= gap && v[j - gap] > x; j -= gap)
				v[j] = v[j - gap];
			v[j] = x;
		}
	}
}

static void report(const char *mode, uint64_t size, unsigned n, unsigned warm, unsigned conversions)
{
	uint64_t total = 0;
	for (unsigned i = 0; i < n; i++)
		total += ticks[i];
	sort(ticks, n);
	tsvmm_printf("convert-bench: result mode=%s size=%llu n=%u warm=%u conversions=%u ticks_total=%llu ticks_min=%llu ticks_median=%llu\n",
		     mode, (ull)size, n, warm, conversions, (ull)total, (ull)ticks[0], (ull)ticks[n / 2]);
}

static int error(const char *what, ull a, ull b)
{
	tsvmm_printf("convert-bench: error %s (0x%llx, %lld)\n", what, a, (long long)b);
	return 1;
}

/* one 8-byte store to each page of [gpa, gpa + pages * PAGE) */
static void touch(uint64_t gpa, uint64_t pages, unsigned value)
{
	for (uint64_t p = 0; p < pages; p++)
		*(volatile uint64_t *)(uintptr_t)(gpa + p * PAGE) = value;
}

static int convert_round_trips(uint64_t gpa, uint64_t size, unsigned n, unsigned warm, int touched)
{
	uint64_t pages = size / PAGE;
	uint64_t hint = size == HUGE ? TSVMM_MAP_GPA_PAGE_SZ_2M : TSVMM_MAP_GPA_PAGE_SZ_4K;
	for (unsigned i = 0; i < warm + n; i++) {
		uint64_t t0 = rdtsc();
		long r1 = tsvmm_map_gpa_range(gpa, pages, TSVMM_MAP_GPA_SHARED | hint);
		if (touched)
			touch(gpa, pages, i);
		long r2 = tsvmm_map_gpa_range(gpa, pages, TSVMM_MAP_GPA_PRIVATE | hint);
		if (touched)
			touch(gpa, pages, i);
		uint64_t t1 = rdtsc();
		if (r1 || r2)
			return error("tsvmm_map_gpa_range failed (gpa, ret)", gpa, r1 ? r1 : r2);
		if (i >= warm)
			ticks[i - warm] = t1 - t0;
	}
	report(touched ? "convert-touched" : "convert", size, n, warm, 2 * n);
	return 0;
}

static uint64_t touch_ticks[MAX_N];

static int first_touch(uint64_t gpa, uint64_t size, unsigned n, unsigned warm)
{
	uint64_t pages = size / PAGE;
	uint64_t hint = size == HUGE ? TSVMM_MAP_GPA_PAGE_SZ_2M : TSVMM_MAP_GPA_PAGE_SZ_4K;
	for (unsigned i = 0; i < warm + n; i++) {
		long r1 = tsvmm_map_gpa_range(gpa, pages, TSVMM_MAP_GPA_SHARED | hint);
		uint64_t t0 = rdtsc();
		long r2 = tsvmm_map_gpa_range(gpa, pages, TSVMM_MAP_GPA_PRIVATE | hint);
		uint64_t t1 = rdtsc();
		touch(gpa, pages, i);
		uint64_t t2 = rdtsc();
		if (r1 || r2)
			return error("tsvmm_map_gpa_range failed (gpa, ret)", gpa, r1 ? r1 : r2);
		if (i >= warm) {
			ticks[i - warm] = t1 - t0;
			touch_ticks[i - warm] = t2 - t1;
		}
	}
	sort(ticks, n);
	sort(touch_ticks, n);
	tsvmm_printf("convert-bench: result mode=first-touch size=%llu n=%u warm=%u conversions=%u convert_ticks_median=%llu touch_ticks_median=%llu\n",
		     (ull)size, n, warm, 2 * n, (ull)ticks[n / 2], (ull)touch_ticks[n / 2]);
	return 0;
}

static int implicit_touches(uint64_t gpa, uint64_t alias, unsigned n, unsigned warm)
{
	for (unsigned i = 0; i < warm + n; i++) {
		volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)((gpa + i * PAGE) | alias);
		uint64_t t0 = rdtsc();
		*p = i;
		uint64_t t1 = rdtsc();
		if (i >= warm)
			ticks[i - warm] = t1 - t0;
	}
	report("implicit", PAGE, n, warm, n);
	tap_diag("expected-implicit-conversions %u", warm + n);
	return 0;
}

static int alternate(uint64_t gpa, unsigned n)
{
	static uint64_t last[100];
	unsigned done = 0;
	long ret = 0;
	for (; done < n; done++) {
		uint64_t t0 = rdtsc();
		ret = tsvmm_map_gpa_range(gpa + 2ULL * done * PAGE, 1, TSVMM_MAP_GPA_SHARED);
		uint64_t t1 = rdtsc();
		if (ret)
			break;
		if (done < 100)
			ticks[done] = t1 - t0;
		last[done % 100] = t1 - t0;
	}
	unsigned first_n = done < 100 ? done : 100;
	sort(ticks, first_n);
	sort(last, first_n);
	tsvmm_printf("convert-bench: result mode=alternate n=%u conversions=%u refused_with=%ld ticks_median_first100=%llu ticks_median_last100=%llu\n",
		     n, done, ret, (ull)(first_n ? ticks[first_n / 2] : 0), (ull)(first_n ? last[first_n / 2] : 0));
	return 0;
}

#define SMP_MAX_CPUS 64
static uint32_t smp_arrived, smp_finished, smp_failures;
static uint64_t smp_gpa;
static uint64_t smp_ticks[SMP_MAX_CPUS];

/* every vCPU: its own page, round trips as fast as the VMM answers; vCPU 0 reports */
static int smp_round_trips(uint32_t cpu, uint32_t ncpu, unsigned n, unsigned warm)
{
	__atomic_add_fetch(&smp_arrived, 1, __ATOMIC_ACQ_REL);
	while (__atomic_load_n(&smp_arrived, __ATOMIC_ACQUIRE) < ncpu)
		tsvmm_pause();
	uint64_t mine = smp_gpa + 2 * PAGE * cpu;
	uint64_t t0 = 0;
	for (unsigned i = 0; i < warm + n; i++) {
		if (i == warm)
			t0 = rdtsc();
		long r1 = tsvmm_map_gpa_range(mine, 1, TSVMM_MAP_GPA_SHARED);
		long r2 = tsvmm_map_gpa_range(mine, 1, TSVMM_MAP_GPA_PRIVATE);
		if (r1 || r2)
			__atomic_add_fetch(&smp_failures, 1, __ATOMIC_RELAXED);
	}
	if (cpu < SMP_MAX_CPUS)
		smp_ticks[cpu] = rdtsc() - t0;
	__atomic_add_fetch(&smp_finished, 1, __ATOMIC_ACQ_REL);
	if (cpu != 0)
		tsvmm_halt();
	while (__atomic_load_n(&smp_finished, __ATOMIC_ACQUIRE) < ncpu)
		tsvmm_pause();
	if (smp_failures)
		return error("smp: conversions failed (failures, vcpus)", smp_failures, ncpu);
	uint64_t longest = 0;
	for (uint32_t c = 0; c < ncpu && c < SMP_MAX_CPUS; c++)
		longest = smp_ticks[c] > longest ? smp_ticks[c] : longest;
	tsvmm_printf("convert-bench: result mode=smp size=4096 n=%u warm=%u vcpus=%u conversions=%u failures=0 ticks_total=%llu\n", n, warm, ncpu,
		     2 * n * ncpu, (ull)longest);
	return 0;
}

int tsvmm_main(const struct tsvmm_boot_info *boot, uint32_t cpu)
{
	char mode[16] = "";
	tsvmm_cmdline_get("mode", mode, sizeof(mode));
	if (!strcmp(mode, "smp") && cpu != 0) {
		/* vCPU 0 sets the range up and opens the barrier */
		while (!__atomic_load_n(&smp_gpa, __ATOMIC_ACQUIRE))
			tsvmm_pause();
		return smp_round_trips(cpu, boot->cpu_count, (unsigned)tsvmm_cmdline_uint("n", 100), (unsigned)tsvmm_cmdline_uint("warm", 10));
	}
	if (cpu != 0)
		tsvmm_halt();

	char sizes[32] = "4k";
	tsvmm_cmdline_get("size", sizes, sizeof(sizes));
	unsigned n = (unsigned)tsvmm_cmdline_uint("n", 100);
	unsigned warm = (unsigned)tsvmm_cmdline_uint("warm", 10);
	int implicit = !strcmp(mode, "implicit"), alternating = !strcmp(mode, "alternate");
	int first = !strcmp(mode, "first-touch"), touched = (int)tsvmm_cmdline_uint("touch", 0), smp = !strcmp(mode, "smp");
	if (!implicit && !alternating && !first && !smp && strcmp(mode, "convert"))
		return error("mode= must be convert, first-touch, smp, implicit or alternate", 0, 0);
	if (n < 2 || n > (alternating ? 4 * MAX_N : MAX_N))
		return error("n= out of range [2, MAX_N]", n, MAX_N);

	const char *problem = tsvmm_boot_check(boot);
	unsigned maxphy = tsvmm_maxphyaddr();
	const char *skip = problem ? problem
			   : boot->backend == TSVMM_BACKEND_SHARED ? "the VMM offers no private memory"
			   : implicit && !boot->shared_bit ? "mode=implicit needs a shared-bit layout (--shared-bit N)"
			   : implicit && maxphy <= boot->shared_bit ? "MAXPHYADDR too small for the shared bit"
			   : !implicit && boot->convert_method == TSVMM_CONVERT_NONE ? "no conversion method"
										: 0;
	/* 2 MiB of private pages left alone before the range, then the range (rounded up to 2 MiB) */
	uint64_t span = implicit ? ((warm + n) * PAGE + HUGE - 1) & ~(HUGE - 1) : alternating ? (2ULL * n * PAGE + HUGE - 1) & ~(HUGE - 1) : HUGE;
	uint64_t base = 0, gpa = 0;
	if (!skip) {
		base = tsvmm_reserve_pages((HUGE + span) / PAGE, HUGE);
		const struct tsvmm_ram_range *range = base ? tsvmm_ram_range_of(base, HUGE + span) : 0;
		if (!range)
			skip = "not enough free 2 MiB-aligned RAM (raise --mem or lower n=)";
		else if (!(range->flags & TSVMM_RAM_PRIVATE))
			skip = "needs free RAM to start private (the default)";
		else if (range->base + range->size <= base + HUGE + span)
			skip = "the range would touch the end of the private RAM (raise --mem)";
		gpa = base + HUGE;
	}
	if (skip) {
		tsvmm_printf("convert-bench: skip %s (backend %s, shared bit %u, MAXPHYADDR %u)\n", skip,
			     tsvmm_backend_name(boot->backend), boot->shared_bit, maxphy);
		return 0;
	}
	const struct tsvmm_ram_range *ram = tsvmm_ram_range_of(gpa, PAGE);
	tsvmm_printf("convert-bench: setup mode=%s backend=%s method=%s free_base=0x%llx ram_end=0x%llx gpa=0x%llx shared_bit=%u\n",
		     mode, tsvmm_backend_name(boot->backend), tsvmm_convert_method_name(boot->convert_method),
		     (ull)boot->free_base, (ull)(ram->base + ram->size), (ull)gpa, boot->shared_bit);

	if (implicit) {
		uint64_t alias = 1ULL << boot->shared_bit;
		int rc = tsvmm_map(gpa | alias, gpa | alias, span, TSVMM_MAP_2M);
		if (rc)
			return error("tsvmm_map of the shared view failed", gpa | alias, rc);
		return implicit_touches(gpa, alias, n, warm);
	}
	if (alternating)
		return alternate(gpa, n);
	if (smp) {
		if (boot->cpu_count < 2)
			return error("mode=smp needs --cpus 2 or more (cpus, 0)", boot->cpu_count, 0);
		__atomic_store_n(&smp_gpa, gpa, __ATOMIC_RELEASE);
		return smp_round_trips(0, boot->cpu_count, n, warm);
	}
	/* "4k", "2m" or "4k,2m": in that order */
	for (const char *s = sizes; *s;) {
		uint64_t size = !strncmp(s, "4k", 2) ? PAGE : !strncmp(s, "2m", 2) ? HUGE : 0;
		if (!size)
			return error("size= must be 4k, 2m or 4k,2m", 0, 0);
		int rc = first ? first_touch(gpa, size, n, warm) : convert_round_trips(gpa, size, n, warm, touched);
		if (rc)
			return rc;
		s += 2;
		if (*s == ',')
			s++;
	}
	return 0;
}
