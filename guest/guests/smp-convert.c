/*
 * smp-convert: every vCPU (boot->cpu_count of them) converts at once, and the VMM's page-state
 * map must end up equal to what the guest computes.
 *
 * Region (2 MiB reservation, private at start): an overlap of 16 pages all vCPUs convert, then
 * one slice of 8 pages per vCPU that only its owner converts. Each round, separated by barriers:
 *   A1  every vCPU converts its slice to a pattern of (vCPU, round) run by run, and converts the
 *       whole overlap plus a window of it, in different splits and orders, all to the same
 *       state T(round): concurrent, overlapping but agreeing requests, so no request may be lost;
 *       vCPU 0 then checks COUNT_PRIVATE of the overlap and of the whole region;
 *   A2  every vCPU converts a window of the overlap to its own state (c + round) & 1:
 *       conflicting, racing requests (no defined result);
 *   B   the round's last writer, vCPU round % cpu_count, alone converts the whole overlap to
 *       S(round) and then 6 pages of it to the opposite state, so the final state is defined
 *       again; vCPU 0 checks every maximal run of the expected map with COUNT_PRIVATE.
 * At the end vCPU 0 checks the overlap page by page; then every vCPU at once writes its slice
 * (private pages through the private view, shared ones through the shared view when there is
 * a shared bit) and asks the host to check it (CHECK_PRIVATE / CHECK_SHARED with FILL), so host
 * requests from all vCPUs overlap too. vCPU 0 prints every TAP line; the others halt when done.
 */
#include <tsvmm/tsvmm.h>

TSVMM_GUEST_DESCRIPTION("all vCPUs convert disjoint and overlapping ranges at once; the VMM's page map must equal the computed one");
TSVMM_GUEST_WANTS_PRIVATE();

#define PAGE     0x1000ULL
#define HUGE     0x200000ULL
#define OVERLAP  16u
#define SLICE    8u
#define ROUNDS   6u
#define RESERVE_PAGES (HUGE / PAGE)
#define WAIT_SPINS 400000000UL

typedef unsigned long long ull;

static uint64_t region, alias;
static uint32_t ncpu;
static uint8_t expect_private[RESERVE_PAGES];

/* per-vCPU results, reported by vCPU 0 */
static struct {
	uint32_t requests, failures;
	char why[160];
} result[TSVMM_MAX_CPUS];

/* vCPU 0's own check failures per TAP step */
static volatile uint32_t setup_done;   /* 1 = go, 2 = give up */

/* ---- barrier (sense by generation), bounded ---- */

static uint32_t bar_count, bar_gen;

static int barrier(void)
{
	uint32_t gen = __atomic_load_n(&bar_gen, __ATOMIC_ACQUIRE);
	if (__atomic_add_fetch(&bar_count, 1, __ATOMIC_ACQ_REL) == ncpu) {
		__atomic_store_n(&bar_count, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&bar_gen, gen + 1, __ATOMIC_RELEASE);
		return 1;
	}
	for (unsigned long spins = 0; __atomic_load_n(&bar_gen, __ATOMIC_ACQUIRE) == gen; spins++) {
		if (spins > WAIT_SPINS)
			return 0;
		tsvmm_pause();
	}
	return 1;
}

/* ---- failures ---- */

TSVMM_PRINTF(2, 3) static void cpu_fail(uint32_t cpu, const char *fmt, ...)
{
	if (!result[cpu].failures++) {
		va_list ap;
		va_start(ap, fmt);
		tsvmm_vsnprintf(result[cpu].why, sizeof(result[cpu].why), fmt, ap);
		va_end(ap);
	}
}

/* ---- layout and requests ---- */

static uint64_t page_gpa(uint32_t page) { return region + page * PAGE; }
static uint32_t slice_first(uint32_t cpu) { return OVERLAP + cpu * SLICE; }
static uint32_t region_pages(void) { return OVERLAP + ncpu * SLICE; }

/* Convert pages [first, first + count) and, if record, note the state the guest now expects. */
static void convert(uint32_t cpu, uint32_t first, uint32_t count, int to_private, int record)
{
	result[cpu].requests++;
	long r = tsvmm_map_gpa_range(page_gpa(first), count, to_private ? TSVMM_MAP_GPA_PRIVATE : TSVMM_MAP_GPA_SHARED);
	if (r) {
		cpu_fail(cpu, "MAP_GPA_RANGE(page %u, %u pages, %s) returned %ld", first, count,
			 to_private ? "private" : "shared", r);
		return;
	}
	if (record)
		for (uint32_t p = first; p < first + count; p++)
			expect_private[p] = (uint8_t)to_private;
}

/* vCPU 0: COUNT_PRIVATE of pages [first, first + count) equals the expected map */
static void check_count(uint32_t first, uint32_t count)
{
	uint64_t want = 0;
	for (uint32_t p = first; p < first + count; p++)
		want += expect_private[p];
	int64_t got = tsvmm_host_count_private(page_gpa(first), count * PAGE);
	if (got != (int64_t)want)
		tap_step_fail("COUNT_PRIVATE pages [%u, %u) = %lld, guest computed %llu", first, first + count, (long long)got,
		     (ull)want);
}

/* vCPU 0: every maximal run of equal expected state, one request each */
static unsigned check_runs(uint32_t first, uint32_t count)
{
	unsigned runs = 0;
	for (uint32_t p = first; p < first + count;) {
		uint32_t q = p + 1;
		while (q < first + count && expect_private[q] == expect_private[p])
			q++;
		check_count(p, q - p);
		runs++;
		p = q;
	}
	return runs;
}

/* ---- the rounds ---- */

static int slice_state(uint32_t cpu, uint32_t round, uint32_t j) { return (j + round + cpu) % 3 == 0; }
static int agreeing_state(uint32_t round) { return round & 1; }             /* round 0: all to shared */
static int last_writer_state(uint32_t round) { return (round >> 1) & 1; }

static void phase_a1(uint32_t cpu, uint32_t round)
{
	/* the slice, run by run, to this round's pattern */
	uint32_t s = slice_first(cpu);
	for (uint32_t j = 0; j < SLICE;) {
		uint32_t k = j + 1;
		while (k < SLICE && slice_state(cpu, round, k) == slice_state(cpu, round, j))
			k++;
		convert(cpu, s + j, k - j, slice_state(cpu, round, j), 1);
		j = k;
	}
	/* the overlap, all to T: whole, or two halves in reverse order, plus a window */
	int t = agreeing_state(round);
	if (cpu & 1) {
		convert(cpu, OVERLAP / 2, OVERLAP / 2, t, 0);
		convert(cpu, 0, OVERLAP / 2, t, 0);
	} else {
		convert(cpu, 0, OVERLAP, t, 0);
	}
	convert(cpu, (cpu * 5) % 12, 4, t, 0);
}

static void phase_a2(uint32_t cpu, uint32_t round)
{
	convert(cpu, (cpu * 3) % 12, 5, (cpu + round) & 1, 0);
}

static void phase_b(uint32_t cpu, uint32_t round)
{
	if (cpu != round % ncpu)
		return;
	int s = last_writer_state(round);
	convert(cpu, 0, OVERLAP, s, 1);
	convert(cpu, round % 8, 6, !s, 1);
}

/* ---- data in the final state: each vCPU its slice, host checks from all vCPUs at once ---- */

static void slice_data(uint32_t cpu)
{
	uint8_t mine = (uint8_t)(0x40 + cpu), shared = (uint8_t)(0x80 + cpu), host = (uint8_t)(0xc0 + cpu);
	for (uint32_t p = slice_first(cpu); p < slice_first(cpu) + SLICE; p++) {
		uint64_t gpa = page_gpa(p), found = 0, value = 0;
		int priv = expect_private[p];
		volatile uint8_t *va = (volatile uint8_t *)(uintptr_t)(priv ? gpa : gpa | alias);
		memset((void *)va, priv ? mine : shared, PAGE);
		int rc = priv ? tsvmm_host_check_private(gpa, PAGE, mine, &found, &value)
			      : tsvmm_host_check_shared(gpa, PAGE, shared, host, &found, &value);
		if (rc)
			cpu_fail(cpu, "%s page %u byte 0x%02x: result %d, host saw 0x%02llx at 0x%llx",
				 priv ? "CHECK_PRIVATE" : "CHECK_SHARED", p, priv ? mine : shared, rc, (ull)value, (ull)found);
		uint8_t want = priv ? mine : host;
		uint64_t off = tsvmm_find_not(va, PAGE, want);
		if (off != PAGE)
			cpu_fail(cpu, "page %u (%s): read 0x%02x at +0x%llx, expected 0x%02x", p, priv ? "private" : "shared",
				 va[off], (ull)off, want);
	}
}

static int setup(const struct tsvmm_boot_info *boot, const char **skip)
{
	const char *problem = tsvmm_boot_check(boot);
	if (problem)
		return *skip = problem, 0;
	if (boot->backend == TSVMM_BACKEND_SHARED)
		return *skip = "the VMM offers no private memory", 0;
	if (boot->convert_method == TSVMM_CONVERT_NONE)
		return *skip = "the boot page names no conversion method", 0;
	if (boot->shared_bit && tsvmm_maxphyaddr() <= boot->shared_bit)
		return *skip = "MAXPHYADDR too small for the shared bit", 0;
	region = tsvmm_reserve_pages(RESERVE_PAGES, HUGE);
	const struct tsvmm_ram_range *range = region ? tsvmm_ram_range_of(region, HUGE) : 0;
	if (!range)
		return *skip = "no 2 MiB-aligned 2 MiB of free RAM (raise --mem)", 0;
	if (boot->shared_bit && !(range->flags & TSVMM_RAM_PRIVATE))
		return *skip = "a shared-bit layout needs free RAM to start private (the default)", 0;
	int start = !!(range->flags & TSVMM_RAM_PRIVATE);
	for (uint32_t p = 0; p < RESERVE_PAGES; p++)
		expect_private[p] = (uint8_t)start;
	if (boot->shared_bit) {
		alias = 1ULL << boot->shared_bit;
		if (tsvmm_map(region | alias, region | alias, HUGE, TSVMM_MAP_2M))
			return *skip = "tsvmm_map of the shared view failed", 0;
	}
	return 1;
}

int tsvmm_main(const struct tsvmm_boot_info *boot, uint32_t cpu)
{
	ncpu = boot->cpu_count;
	if (cpu != 0) {
		/* wait for vCPU 0's setup (it maps the shared view before anyone uses it) */
		while (!__atomic_load_n(&setup_done, __ATOMIC_ACQUIRE))
			tsvmm_pause();
		if (setup_done != 1)
			tsvmm_halt();
	} else {
		const char *skip = 0;
		if (!setup(boot, &skip)) {
			__atomic_store_n(&setup_done, 2, __ATOMIC_RELEASE);
			tap_skip_all("%s (backend %s, %u vCPUs, shared bit %u)", skip, tsvmm_backend_name(boot->backend), ncpu,
				     boot->shared_bit);
			return tap_status();
		}
		tap_plan(1 + 2 * ROUNDS + 1 + ncpu);
		tsvmm_printf("smp-convert: backend %s, %s, %u vCPUs, region [0x%llx, +%u pages): overlap %u pages, slices of %u%s\n",
			     tsvmm_backend_name(boot->backend), tsvmm_convert_method_name(boot->convert_method), ncpu,
			     (ull)region, region_pages(), OVERLAP, SLICE, alias ? ", shared view at gpa | shared bit" : "");
		tap_diag("expected-implicit-conversions 0");
		if (ncpu == 1)
			tap_diag("only one vCPU: nothing runs concurrently (run with --cpus 2 or more)");
		tap_step_begin();
		check_runs(0, RESERVE_PAGES);
		tap_step_end("the VMM's map of the 2 MiB reservation at 0x%llx matches the RAM map (%s)", (ull)region,
		    expect_private[0] ? "private" : "shared");
		__atomic_store_n(&setup_done, 1, __ATOMIC_RELEASE);
	}

	int lost = 0;   /* a barrier timed out */
	for (uint32_t round = 0; round < ROUNDS && !lost; round++) {
		phase_a1(cpu, round);
		lost |= !barrier();
		if (cpu == 0 && !lost) {
			for (uint32_t p = 0; p < OVERLAP; p++)
				expect_private[p] = (uint8_t)agreeing_state(round);
			tap_step_begin();
			check_count(0, OVERLAP);
			check_count(0, region_pages());
			tap_step_end("round %u: %u vCPUs converted the overlap to %s at once (whole, halves, windows), slices to their patterns: counts match",
			    round, ncpu, agreeing_state(round) ? "private" : "shared");
		}
		lost |= !barrier();
		phase_a2(cpu, round);
		lost |= !barrier();
		phase_b(cpu, round);
		lost |= !barrier();
		if (cpu == 0 && !lost) {
			tap_step_begin();
			unsigned runs = check_runs(0, region_pages());
			tap_step_end("round %u: after racing conflicting windows, last writer vCPU %u set the overlap: all %u runs match",
			    round, round % ncpu, runs);
		}
		lost |= !barrier();
	}

	if (!lost) {
		if (cpu == 0) {
			tap_step_begin();
			for (uint32_t p = 0; p < OVERLAP; p++)
				check_count(p, 1);
			check_runs(OVERLAP, ncpu * SLICE);
			check_count(0, RESERVE_PAGES);
			tap_step_end("final map: the overlap page by page and every slice run equal the computed state");
		}
		lost |= !barrier();
		slice_data(cpu);
		lost |= !barrier();
	}
	if (cpu != 0)
		tsvmm_halt();

	if (lost) {
		tap_diag("a barrier timed out: not every vCPU arrived (%u expected)", ncpu);
		return TSVMM_STATUS_FAIL;
	}
	for (uint32_t c = 0; c < ncpu; c++) {
		tap_ok(!result[c].failures, "vCPU %u: %u conversion requests all returned 0; its slice data and host checks agree",
		       c, result[c].requests);
		if (result[c].failures)
			tap_diag("  %u failure(s), first: %s", result[c].failures, result[c].why);
	}
	return tap_status();
}
