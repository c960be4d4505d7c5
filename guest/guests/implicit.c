/*
 * implicit: implicit conversions in the shared-bit layout (`tsvmm run implicit --shared-bit N`).
 * Every convertible page is private at its GPA and shared at GPA | 1 << N; touching the view a
 * page is not in makes KVM exit with KVM_EXIT_MEMORY_FAULT, the VMM converts the page and the
 * access is retried. The guest touches 8 pages through the wrong view (reads, single stores,
 * whole-page and multi-page `rep stos`), continues after each conversion and checks:
 *   - each first touch converted exactly that page (COUNT_PRIVATE per step, neighbours unchanged);
 *   - a converted page is a fresh zero page (nothing carries across a conversion), on both sides;
 *   - data written through the live view stays, and the host sees shared data and never private;
 *   - touching live views converts nothing;
 *   - a page bounced ten times (a store through the shared view converts it, KVM_HC_MAP_GPA_RANGE
 *     makes it private again) is progress every time: the same fault recurring after a
 *     conversion is not a guest stuck on one fault.
 * It prints "# expected-implicit-conversions N" (N = 20) for the lab test to compare with the
 * VMM's count of memory-fault conversions.
 */
#include <tsvmm/tsvmm.h>

TSVMM_GUEST_DESCRIPTION("touches pages through the wrong view of a --shared-bit layout: implicit conversions and their data semantics");
TSVMM_GUEST_WANTS_PRIVATE();

#define PAGE   0x1000ULL
#define HUGE   0x200000ULL
#define NP     8

#define PLAN   13
#define BOUNCES 10
#define EXPECTED_CONVERSIONS (10 + BOUNCES)

typedef unsigned long long ull;

static uint64_t region;     /* GPA of page 0 */
static uint64_t alias;      /* 1 << shared_bit */
static uint8_t priv[NP];    /* the state the guest expects: 1 private */
static unsigned conversions;   /* implicit conversions the guest has caused so far */

enum view { PRIVATE_VIEW = 1, SHARED_VIEW = 0 };

static volatile uint8_t *at(unsigned i, enum view v)
{
	uint64_t gpa = region + i * PAGE;
	return (volatile uint8_t *)(uintptr_t)(v == PRIVATE_VIEW ? gpa : gpa | alias);
}

static const char *view_name(enum view v) { return v == PRIVATE_VIEW ? "private" : "shared"; }

/* Bookkeeping for an access the guest is about to make: a first touch through the other view converts. */
static void touching(unsigned i, enum view v)
{
	if (priv[i] != (uint8_t)v) {
		priv[i] = (uint8_t)v;
		conversions++;
	}
}

/* The VMM's map agrees with priv[] for every test page (one request per page). */
static void count_all(void)
{
	for (unsigned i = 0; i < NP; i++) {
		int64_t got = tsvmm_host_count_private(region + i * PAGE, PAGE);
		if (got != priv[i])
			tap_step_fail("COUNT_PRIVATE page %u (0x%llx) = %lld, guest expects %u (%s)", i, (ull)(region + i * PAGE),
			     (long long)got, priv[i], priv[i] ? "private" : "shared");
	}
}

/* Page i, read through its live view, holds byte everywhere except an optional u64 word at off. */
static void expect_page(unsigned i, uint8_t byte, int word_off, uint64_t word)
{
	volatile uint8_t *p = at(i, (enum view)priv[i]);
	uint64_t start = 0;
	if (word_off >= 0) {
		uint64_t got = *(volatile uint64_t *)(p + word_off);
		if (got != word)
			tap_step_fail("page %u: read 0x%llx at +0x%x through the %s view, expected 0x%llx", i, (ull)got, word_off,
			     view_name((enum view)priv[i]), (ull)word);
		uint64_t off = tsvmm_find_not(p, (uint64_t)word_off, byte);
		if (off != (uint64_t)word_off)
			tap_step_fail("page %u: read 0x%02x at +0x%llx, expected 0x%02x", i, p[off], (ull)off, byte);
		start = (uint64_t)word_off + 8;
	}
	uint64_t off = tsvmm_find_not(p + start, PAGE - start, byte);
	if (off != PAGE - start)
		tap_step_fail("page %u: read 0x%02x at +0x%llx through the %s view, expected 0x%02x", i, p[start + off],
		     (ull)(start + off), view_name((enum view)priv[i]), byte);
}

/* The host's view agrees: shared pages hold byte (then fill), private pages do not show byte. */
static void host_sees(unsigned first, unsigned count, uint8_t byte, int fill)
{
	uint64_t gpa = region + first * PAGE, size = count * PAGE, found = 0, value = 0;
	int rc = priv[first] ? tsvmm_host_check_private(gpa, size, byte, &found, &value)
			     : tsvmm_host_check_shared(gpa, size, byte, fill, &found, &value);
	if (rc)
		tap_step_fail("%s [0x%llx, 0x%llx) byte 0x%02x: result %d, host saw 0x%02llx at 0x%llx",
		     priv[first] ? "CHECK_PRIVATE" : "CHECK_SHARED", (ull)gpa, (ull)(gpa + size), byte, rc, (ull)value,
		     (ull)found);
}

static uint8_t pattern(unsigned i) { return (uint8_t)(0xa0 + i); }

int tsvmm_main(const struct tsvmm_boot_info *boot, uint32_t cpu)
{
	if (cpu != 0)
		tsvmm_halt();

	const char *problem = tsvmm_boot_check(boot);
	unsigned maxphy = tsvmm_maxphyaddr();
	const char *skip = problem ? problem
			   : boot->backend == TSVMM_BACKEND_SHARED ? "the VMM offers no private memory"
			   : !boot->shared_bit ? "needs a shared-bit layout (tsvmm run implicit --shared-bit N)"
			   : maxphy <= boot->shared_bit ? "MAXPHYADDR too small for the shared bit: the alias is not addressable"
							 : 0;
	const struct tsvmm_ram_range *range = 0;
	if (!skip) {
		region = tsvmm_reserve_pages(HUGE / PAGE, HUGE);
		range = region ? tsvmm_ram_range_of(region, HUGE) : 0;
		if (!range)
			skip = "no 2 MiB-aligned 2 MiB of free RAM (raise --mem)";
		else if (!(range->flags & TSVMM_RAM_PRIVATE))
			/* the runtime's page tables for the alias come from free RAM used at its plain GPA */
			skip = "needs free RAM to start private (the default)";
	}
	if (skip) {
		tap_skip_all("%s (backend %s, shared bit %u, MAXPHYADDR %u)", skip, tsvmm_backend_name(boot->backend),
			     boot->shared_bit, maxphy);
		return tap_status();
	}
	alias = 1ULL << boot->shared_bit;
	for (unsigned i = 0; i < NP; i++)
		priv[i] = 1;

	tap_plan(PLAN);
	tsvmm_printf("implicit: backend %s, shared bit %u (MAXPHYADDR %u): pages at 0x%llx private, at 0x%llx shared\n",
		     tsvmm_backend_name(boot->backend), boot->shared_bit, maxphy, (ull)region, (ull)(region | alias));
	tap_diag("expected-implicit-conversions %u", EXPECTED_CONVERSIONS);

	/* 1: map the shared view; the VMM agrees every page starts private */
	tap_step_begin();
	int rc = tsvmm_map(region | alias, region | alias, HUGE, TSVMM_MAP_2M);
	if (rc)
		tap_step_fail("tsvmm_map of the shared view at 0x%llx failed: %d", (ull)(region | alias), rc);
	count_all();
	tap_step_end("shared view of [0x%llx, +%u pages) mapped at 0x%llx; the VMM counts all %u pages private", (ull)region, NP,
	    (ull)(region | alias), NP);
	if (!tap_step_ok()) {
		tap_diag("cannot go on without the shared view and a private start");
		return tap_status();
	}

	/* 2: private data through the live (private) view: no conversion */
	tap_step_begin();
	for (unsigned i = 0; i < NP; i++) {
		touching(i, PRIVATE_VIEW);
		memset((void *)at(i, PRIVATE_VIEW), pattern(i), PAGE);
	}
	for (unsigned i = 0; i < NP; i++) {
		expect_page(i, pattern(i), -1, 0);
		host_sees(i, 1, pattern(i), -1);
	}
	count_all();
	tap_step_end("wrote 0xa0+i to pages 0-7 through the private view: read back, invisible to the host, no conversion");

	/* 3: page 0 read through the shared view: one conversion, a fresh zero page */
	tap_step_begin();
	touching(0, SHARED_VIEW);
	uint64_t v = *(volatile uint64_t *)at(0, SHARED_VIEW);
	if (v)
		tap_step_fail("first read of page 0 through the shared view gave 0x%llx, expected a fresh zero page", (ull)v);
	expect_page(0, 0, -1, 0);
	for (unsigned i = 1; i < NP; i++)
		expect_page(i, pattern(i), -1, 0);
	count_all();
	tap_step_end("read page 0 through the shared view: converted to shared (conversion %u), reads zero, pages 1-7 keep their private data",
	    conversions);

	/* 4: page 0 written through its now-live shared view: no conversion; the host sees it and writes 0x5b */
	tap_step_begin();
	touching(0, SHARED_VIEW);
	memset((void *)at(0, SHARED_VIEW), 0x5a, PAGE);
	expect_page(0, 0x5a, -1, 0);
	host_sees(0, 1, 0x5a, 0x5b);
	expect_page(0, 0x5b, -1, 0);
	count_all();
	tap_step_end("wrote 0x5a to page 0 through the shared view: no conversion, the host saw 0x5a and wrote 0x5b, the guest sees 0x5b");

	/* 5: one 8-byte store to page 1 through the shared view: converted, the store retried on a fresh page */
	tap_step_begin();
	touching(1, SHARED_VIEW);
	*(volatile uint64_t *)(at(1, SHARED_VIEW) + 0x800) = 0x1122334455667788ULL;
	expect_page(1, 0, 0x800, 0x1122334455667788ULL);
	count_all();
	tap_step_end("8-byte store to page 1 through the shared view: converted (conversion %u), the retried store landed on a zero page",
	    conversions);

	/* 6: page 0 read through the private view again: back to private, zero; the shared 0x5b is gone from the host */
	tap_step_begin();
	touching(0, PRIVATE_VIEW);
	v = *(volatile uint64_t *)at(0, PRIVATE_VIEW);
	if (v)
		tap_step_fail("first read of page 0 through the private view gave 0x%llx, expected a fresh zero page", (ull)v);
	expect_page(0, 0, -1, 0);
	host_sees(0, 1, 0x5b, -1);
	count_all();
	tap_step_end("read page 0 through the private view: converted back (conversion %u), reads zero (not 0xa0), the host no longer holds 0x5b",
	    conversions);

	/* 7: private data on page 0 through the live view */
	tap_step_begin();
	touching(0, PRIVATE_VIEW);
	memset((void *)at(0, PRIVATE_VIEW), 0xc3, PAGE);
	expect_page(0, 0xc3, -1, 0);
	host_sees(0, 1, 0xc3, -1);
	count_all();
	tap_step_end("wrote 0xc3 to page 0 through the private view: no conversion, invisible to the host");

	/* 8: a whole-page rep stos to page 2 through the shared view: one conversion, then the rest of the page */
	tap_step_begin();
	touching(2, SHARED_VIEW);
	memset((void *)at(2, SHARED_VIEW), 0x66, PAGE);
	expect_page(2, 0x66, -1, 0);
	host_sees(2, 1, 0x66, -1);
	count_all();
	tap_step_end("rep stos of 0x66 over page 2 through the shared view: converted once (conversion %u), the host sees 0x66",
	    conversions);

	/* 9: page 3 bounced: read through the shared view, then a store through the private view */
	tap_step_begin();
	touching(3, SHARED_VIEW);
	v = *(volatile uint64_t *)(at(3, SHARED_VIEW) + 0x10);
	if (v)
		tap_step_fail("first read of page 3 through the shared view gave 0x%llx", (ull)v);
	count_all();
	touching(3, PRIVATE_VIEW);
	*(volatile uint64_t *)at(3, PRIVATE_VIEW) = 0x0123456789abcdefULL;
	expect_page(3, 0, 0, 0x0123456789abcdefULL);
	count_all();
	tap_step_end("page 3: read through the shared view, then a store through the private view: two conversions (now %u), zero page plus the store",
	    conversions);

	/* 10: one rep stos over pages 4-7 through the shared view: one conversion per page */
	tap_step_begin();
	for (unsigned i = 4; i < 8; i++)
		touching(i, SHARED_VIEW);
	memset((void *)at(4, SHARED_VIEW), 0x99, 4 * PAGE);
	for (unsigned i = 4; i < 8; i++)
		expect_page(i, 0x99, -1, 0);
	host_sees(4, 4, 0x99, -1);
	count_all();
	tap_step_end("rep stos of 0x99 over pages 4-7 through the shared view: each page converted on its first touch (now %u), the host sees 0x99",
	    conversions);

	/* 11: live views again: no conversions, all data where it was left */
	tap_step_begin();
	unsigned before = conversions;
	for (unsigned i = 0; i < NP; i++) {
		touching(i, (enum view)priv[i]);
		(void)*(volatile uint64_t *)(at(i, (enum view)priv[i]) + 0xff8);
	}
	expect_page(0, 0xc3, -1, 0);
	expect_page(1, 0, 0x800, 0x1122334455667788ULL);
	expect_page(2, 0x66, -1, 0);
	expect_page(3, 0, 0, 0x0123456789abcdefULL);
	for (unsigned i = 4; i < 8; i++)
		expect_page(i, 0x99, -1, 0);
	host_sees(0, 1, 0xc3, -1);
	host_sees(2, 1, 0x66, -1);
	host_sees(4, 4, 0x99, -1);
	count_all();
	if (conversions != before)
		tap_step_fail("bookkeeping: live-view touches counted as conversions");
	tap_step_end("touching every page through its live view converts nothing; data written through live views stays");

	/* 12: page 0 bounced: a store through the shared view (implicit, to shared), then
	 * KVM_HC_MAP_GPA_RANGE back to private, ten times: the same fault each round, never "stuck" */
	tap_step_begin();
	for (unsigned round = 0; round < BOUNCES && tap_step_ok(); round++) {
		uint64_t word = 0xb0b0000000000000ULL | round;
		touching(0, SHARED_VIEW);
		*(volatile uint64_t *)(at(0, SHARED_VIEW) + 0x100) = word;
		expect_page(0, 0, 0x100, word);
		long rc = tsvmm_map_gpa_range(region, 1, TSVMM_MAP_GPA_PRIVATE);
		if (rc)
			tap_step_fail("round %u: KVM_HC_MAP_GPA_RANGE of page 0 to private returned %ld", round, rc);
		priv[0] = 1;
		count_all();
	}
	tap_step_end("page 0 bounced %u times: a store through the shared view converts it to shared, MAP_GPA_RANGE back to private (now %u implicit conversions)",
	    BOUNCES, conversions);

	/* 13: the VMM's final map equals the guest's, and the count the lab compares */
	tap_step_begin();
	count_all();
	int64_t total = tsvmm_host_count_private(region, NP * PAGE);
	uint64_t want = 0;
	for (unsigned i = 0; i < NP; i++)
		want += priv[i];
	if (total != (int64_t)want)
		tap_step_fail("COUNT_PRIVATE of all %u pages = %lld, guest expects %llu", NP, (long long)total, (ull)want);
	if (conversions != EXPECTED_CONVERSIONS)
		tap_step_fail("the guest caused %u implicit conversions, this file promises %u", conversions, EXPECTED_CONVERSIONS);
	tap_step_end("final state: pages 0 and 3 private, 1, 2, 4-7 shared (%llu private); %u implicit conversions caused", (ull)want,
	    conversions);
	return tap_status();
}
