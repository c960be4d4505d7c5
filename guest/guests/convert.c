/*
 * convert: the scenarios of the kernel selftest x86/private_mem_conversions_test as a guest,
 * on one chunk of 2 MiB + 4 KiB (2 MiB aligned, inside a 4 MiB reservation, as the selftest's
 * per-vCPU data) in RAM the boot page flags private.
 *
 * The selftest's host thread is the VMM, reached by host requests (host.h): SYNC_SHARED is
 * CHECK_SHARED with FILL, SYNC_PRIVATE is CHECK_PRIVATE, its "fallocate without set-attributes"
 * hypercall is PUNCH_PRIVATE, and COUNT_PRIVATE compares the VMM's page-state map with what
 * the guest expects after every step. Conversions are KVM_HC_MAP_GPA_RANGE.
 *
 * tsvmm's VMM discards the side a page leaves (like SNP/TDX): a page converted to private reads
 * zero, a page converted back to shared reads zero and its old shared data is gone from the
 * host's view. Where the selftest expects the host to still see the old shared pattern after a
 * private round trip, this guest expects zeroes instead, and checks it.
 *
 * With a shared-bit layout (boot->shared_bit) the guest reads and writes each page through the
 * view of the state it put the page in (shared pages at gpa | 1 << shared_bit), so no implicit
 * conversion should ever happen: it prints "# expected-implicit-conversions 0".
 */
#include <tsvmm/tsvmm.h>

TSVMM_GUEST_DESCRIPTION("private_mem_conversions_test scenarios: explicit conversions, host checks, punch holes, bad requests");
TSVMM_GUEST_WANTS_PRIVATE();

#define PAGE      0x1000ULL
#define HUGE      0x200000ULL
#define CHUNK     (HUGE + PAGE)          /* the selftest's PER_CPU_DATA_SIZE */
#define CHUNK_PAGES (CHUNK / PAGE)       /* 513 */
#define RESERVE   (2 * HUGE)             /* align_up(2 MiB + 4 KiB, 2 MiB) */

#define P_PRIVATE TSVMM_MAP_GPA_PRIVATE
#define P_SHARED  TSVMM_MAP_GPA_SHARED

/* the selftest's patterns */
#define INIT_P 0xcc
#define P1     0x11
#define P2     0x22
#define P3     0x33
#define P4     0x44

static const struct {
	uint64_t offset, size;
} ranges[] = {
	{ 0, PAGE }, { 0, HUGE }, { PAGE, PAGE }, { PAGE, HUGE }, { HUGE, PAGE },
};
#define NR_RANGES (sizeof(ranges) / sizeof(ranges[0]))

#define PLAN (3 + 2 * NR_RANGES * 3 + 1 + 2 * NR_RANGES + 1 + 9)

static uint64_t base;                 /* chunk GPA */
static uint64_t alias;                /* 1 << shared_bit, or 0 */
static uint8_t expect_private[RESERVE / PAGE];   /* what the guest believes, per page of the reservation */

typedef unsigned long long ull;

/* ---- state the guest expects, and the views ---- */

static uint64_t page_index(uint64_t gpa) { return (gpa - base) / PAGE; }
static int is_private(uint64_t gpa) { return expect_private[page_index(gpa)]; }

static volatile uint8_t *view(uint64_t gpa)
{
	return (volatile uint8_t *)(uintptr_t)(is_private(gpa) ? gpa : gpa | alias);
}

static uint64_t expected_count(uint64_t gpa, uint64_t size)
{
	uint64_t n = 0;
	for (uint64_t g = gpa; g < gpa + size; g += PAGE)
		n += is_private(g);
	return n;
}

/* Write byte over [gpa, gpa + size), each page through the view of its expected state. */
static void fill(uint64_t gpa, uint64_t size, uint8_t byte)
{
	uint64_t g = gpa;
	while (g < gpa + size) {
		uint64_t run = PAGE;
		while (g + run < gpa + size && is_private(g + run) == is_private(g))
			run += PAGE;
		memset((void *)view(g), byte, run);
		g += run;
	}
}

/* The guest reads byte everywhere in [gpa, gpa + size); what names the data in a failure. */
static int verify(uint64_t gpa, uint64_t size, uint8_t byte, const char *what)
{
	uint64_t g = gpa;
	while (g < gpa + size) {
		uint64_t run = PAGE;
		while (g + run < gpa + size && is_private(g + run) == is_private(g))
			run += PAGE;
		volatile uint8_t *p = view(g);
		uint64_t off = tsvmm_find_not(p, run, byte);
		if (off != run) {
			tap_step_fail("guest read 0x%02x at 0x%llx (%s view), expected 0x%02x (%s)", p[off], (ull)(g + off),
			     is_private(g) ? "private" : "shared", byte, what);
			return 0;
		}
		g += run;
	}
	return 1;
}

/* ---- requests ---- */

static void convert(uint64_t gpa, uint64_t size, int to_private, unsigned hint)
{
	long r = tsvmm_map_gpa_range(gpa, size / PAGE, (to_private ? P_PRIVATE : P_SHARED) | hint);
	if (r) {
		tap_step_fail("MAP_GPA_RANGE(0x%llx, %llu pages, %s) returned %ld", (ull)gpa, (ull)(size / PAGE),
		     to_private ? "private" : "shared", r);
		return;
	}
	for (uint64_t g = gpa; g < gpa + size; g += PAGE)
		expect_private[page_index(g)] = (uint8_t)to_private;
}

static void count(uint64_t gpa, uint64_t size)
{
	int64_t got = tsvmm_host_count_private(gpa, size);
	uint64_t want = expected_count(gpa, size);
	if (got != (int64_t)want)
		tap_step_fail("COUNT_PRIVATE [0x%llx, 0x%llx) = %lld, guest expects %llu", (ull)gpa, (ull)(gpa + size),
		     (long long)got, (ull)want);
}

/* SYNC_SHARED: the host sees cur in the shared view, then writes new (new < 0: no write). */
static void host_shared(uint64_t gpa, uint64_t size, uint8_t cur, int new)
{
	uint64_t found = 0, value = 0;
	int rc = tsvmm_host_check_shared(gpa, size, cur, new, &found, &value);
	if (rc)
		tap_step_fail("CHECK_SHARED [0x%llx, 0x%llx) expect 0x%02x: result %d, host saw 0x%02llx at 0x%llx", (ull)gpa,
		     (ull)(gpa + size), cur, rc, (ull)value, (ull)found);
}

/* SYNC_PRIVATE: the host's shared backing holds no byte of the guest's private pattern. */
static void host_private(uint64_t gpa, uint64_t size, uint8_t pattern, const char *what)
{
	uint64_t found = 0, value = 0;
	int rc = tsvmm_host_check_private(gpa, size, pattern, &found, &value);
	if (rc)
		tap_step_fail("CHECK_PRIVATE [0x%llx, 0x%llx) pattern 0x%02x (%s): result %d, host saw 0x%02llx at 0x%llx",
		     (ull)gpa, (ull)(gpa + size), pattern, what, rc, (ull)value, (ull)found);
}

static void punch(uint64_t gpa, uint64_t size)
{
	int rc = tsvmm_host_punch_private(gpa, size);
	if (rc)
		tap_step_fail("PUNCH_PRIVATE [0x%llx, 0x%llx): result %d", (ull)gpa, (ull)(gpa + size), rc);
}

/* The rest of the chunk around [gpa, gpa + size) still reads byte. */
static void verify_rest(uint64_t gpa, uint64_t size, uint8_t byte, const char *what)
{
	if (gpa > base)
		verify(base, gpa - base, byte, what);
	if (gpa + size < base + CHUNK)
		verify(gpa + size, base + CHUNK - (gpa + size), byte, what);
}

static const char *size_name(uint64_t size) { return size == PAGE ? "4 KiB" : "2 MiB"; }
static const char *offset_name(uint64_t off) { return off == 0 ? "0" : off == PAGE ? "4 KiB" : "2 MiB"; }

/* ---- scenario 14: explicit conversions (pass 1: 4K hint; pass 2: 2M hint where the range allows) ---- */

static void conversions(int pass)
{
	for (unsigned k = 0; k < NR_RANGES; k++) {
		uint64_t gpa = base + ranges[k].offset, size = ranges[k].size, n = size / PAGE;
		unsigned hint = (pass && !(gpa & (HUGE - 1)) && !(size & (HUGE - 1))) ? TSVMM_MAP_GPA_PAGE_SZ_2M : 0;
		const char *hint_name = hint ? "2M" : "4K";

		/* i-iv: shared 0x11, to private, fresh zero pages, private 0x22 invisible to the host */
		tap_step_begin();
		fill(gpa, size, P1);
		convert(gpa, size, 1, hint);
		count(gpa, size);
		count(base, CHUNK);
		verify(gpa, size, 0, "a page converted to private is fresh, the shared 0x11 does not carry");
		fill(gpa, size, P2);
		host_private(gpa, size, P2, "the guest's private data");
		host_private(gpa, size, P1, "the shared data, discarded by the conversion");
		verify(gpa, size, P2, "private data");
		verify_rest(gpa, size, INIT_P, "the rest of the chunk, still shared");
		tap_step_end("pass %d [%s +%s] to private (%s hint): ret 0, COUNT %llu, reads zero, private 0x22 invisible to the host, rest 0xcc",
		    pass + 1, offset_name(ranges[k].offset), size_name(size), hint_name, (ull)n);

		/* v: single pages inside the private range: odd ones to shared (first two and last two pages) */
		tap_step_begin();
		uint64_t odd = 0;
		for (uint64_t j = 0; j < n; j++) {
			if (j >= 4 && j + 2 < n)
				continue;
			uint64_t page = gpa + j * PAGE;
			if (j & 1) {
				convert(page, PAGE, 0, 0);
				host_shared(page, PAGE, 0, P3);   /* selftest: host sees 0x11; here the conversion discarded it */
				verify(page, PAGE, P3, "the host's fill of a page converted to shared");
				odd++;
			} else {
				host_private(page, PAGE, P2, "the guest's private data");
			}
		}
		count(gpa, size);
		for (uint64_t j = 0; j < n; j++) {
			uint64_t page = gpa + j * PAGE;
			verify(page, PAGE, is_private(page) ? P2 : P3, is_private(page) ? "private data next to converted pages" : "host fill");
		}
		tap_step_end("pass %d [%s +%s] single pages: %llu odd page(s) to shared read the host's 0x33, even ones stay private (COUNT %llu)",
		    pass + 1, offset_name(ranges[k].offset), size_name(size), (ull)odd, (ull)(n - odd));

		/* vi-viii: the range back to shared, host round trip 0x33 -> 0x44, reset 0xcc, whole chunk shared */
		tap_step_begin();
		convert(gpa, size, 0, hint);
		count(gpa, size);
		for (uint64_t j = 0; j < n; j++) {
			uint64_t page = gpa + j * PAGE;
			int was_shared = (j & 1) && (j < 4 || j + 2 >= n);
			verify(page, PAGE, was_shared ? P3 : 0,
			       was_shared ? "an already-shared page keeps its data" : "a page converted back to shared is fresh");
		}
		fill(gpa, size, P3);
		host_shared(gpa, size, P3, P4);
		verify(gpa, size, P4, "the host's fill");
		fill(gpa, size, INIT_P);
		convert(base, CHUNK, 0, 0);
		count(base, CHUNK);
		verify(base, CHUNK, INIT_P, "the whole chunk after the reset");
		tap_step_end("pass %d [%s +%s] back to shared: formerly private pages read zero, host saw 0x33 and wrote 0x44, chunk reset to 0xcc",
		    pass + 1, offset_name(ranges[k].offset), size_name(size));
	}
}

/* ---- scenario 15: punch holes in private memory ---- */

static void punch_holes(int precise)
{
	for (unsigned k = 0; k < NR_RANGES; k++) {
		uint64_t gpa = base + ranges[k].offset, size = ranges[k].size;
		tap_step_begin();
		punch(base, CHUNK);
		count(base, CHUNK);
		verify(base, CHUNK, 0, "the chunk after punching all of it");
		if (precise)
			fill(gpa, size, INIT_P);
		else
			fill(base, CHUNK, INIT_P);
		verify(precise ? gpa : base, precise ? size : CHUNK, INIT_P, "private data written after the punch");
		if (!precise)
			host_private(base, CHUNK, INIT_P, "the guest's private data");
		punch(gpa, size);
		count(base, CHUNK);
		verify(gpa, size, 0, "the punched range");
		verify_rest(gpa, size, precise ? 0 : INIT_P, precise ? "never written since the punch" : "private data outside the hole");
		tap_step_end("punch %s [%s +%s]: state stays private, the hole reads zero, %s", precise ? "precise" : "not precise",
		    offset_name(ranges[k].offset), size_name(size), precise ? "nothing else was written" : "the rest of the chunk survives");
	}
}

/* ---- bad requests ---- */

static int einval_from_kvm_or_vmm(long r) { return r == TSVMM_EINVAL || r == -TSVMM_EINVAL; }

static void bad_request(const char *what, uint64_t gpa, uint64_t pages, uint64_t attrs, int kvm_may_answer)
{
	long r = tsvmm_map_gpa_range(gpa, pages, attrs);
	int ok = kvm_may_answer ? einval_from_kvm_or_vmm(r) : r == TSVMM_EINVAL;
	tap_ok(ok, "bad request refused with EINVAL: %s (gpa 0x%llx, %llu pages, attrs 0x%llx) -> %ld%s", what, (ull)gpa,
	       (ull)pages, (ull)attrs, r, r == -TSVMM_EINVAL ? " (KVM answered -KVM_EINVAL itself)" : "");
}

static void bad_requests(const struct tsvmm_boot_info *boot)
{
	uint64_t ram_end = 0;
	for (uint32_t i = 0; i < boot->ram_range_count && i < TSVMM_MAX_RAM_RANGES; i++)
		if (boot->ram[i].base + boot->ram[i].size > ram_end)
			ram_end = boot->ram[i].base + boot->ram[i].size;

	/* KVM itself refuses an unaligned gpa, zero pages and a wrapping gfn with -KVM_EINVAL (no exit) */
	bad_request("unaligned gpa", base + 0x800, 1, P_PRIVATE, 1);
	bad_request("zero pages", base, 0, P_PRIVATE, 1);
	bad_request("outside RAM", ram_end, 1, P_PRIVATE, 0);
	bad_request("straddling the end of RAM", ram_end - PAGE, 2, P_PRIVATE, 0);
	bad_request("end past 2^64", 0xfffffffffffff000ULL, 2, P_PRIVATE, 1);
	bad_request("reserved attribute bit 5", base, 1, P_PRIVATE | 0x20, 0);
	bad_request("page-size field 3", base, 1, P_PRIVATE | 0x3, 0);

	struct tsvmm_host_request r;
	memset(&r, 0, sizeof(r));
	r.op = TSVMM_HOST_COUNT_PRIVATE;
	r.gpa = base + 0x800;
	r.size = PAGE;
	int unaligned = tsvmm_host_request(&r);
	memset(&r, 0, sizeof(r));
	r.op = 99;
	r.gpa = base;
	r.size = PAGE;
	int unknown = tsvmm_host_request(&r);
	tap_ok(unaligned == TSVMM_EINVAL && unknown == TSVMM_EINVAL,
	       "bad host requests refused with 22: unaligned COUNT_PRIVATE -> %d, unknown op 99 -> %d", unaligned, unknown);

	tap_step_begin();
	count(base, RESERVE);
	convert(base, PAGE, 1, 0);
	count(base, PAGE);
	convert(base, PAGE, 0, 0);
	count(base, CHUNK);
	tap_step_end("the guest keeps running after the refusals, no state changed, and a good request still works");
}

int tsvmm_main(const struct tsvmm_boot_info *boot, uint32_t cpu)
{
	if (cpu != 0)
		tsvmm_halt();

	const char *problem = tsvmm_boot_check(boot);
	const char *skip = problem ? problem
			   : boot->backend == TSVMM_BACKEND_SHARED ? "the VMM offers no private memory"
			   : boot->convert_method == TSVMM_CONVERT_NONE ? "the boot page names no conversion method"
									: 0;
	if (!skip && boot->shared_bit && tsvmm_maxphyaddr() <= boot->shared_bit)
		skip = "MAXPHYADDR too small for the shared bit";
	uint64_t reserve = 0;
	const struct tsvmm_ram_range *range = 0;
	if (!skip) {
		reserve = tsvmm_reserve_pages(RESERVE / PAGE, HUGE);
		range = reserve ? tsvmm_ram_range_of(reserve, RESERVE) : 0;
		if (!range)
			skip = "no 2 MiB-aligned 4 MiB of free RAM (raise --mem)";
		else if (boot->shared_bit && !(range->flags & TSVMM_RAM_PRIVATE))
			/* the page tables for the shared view come from free RAM used at its plain GPA */
			skip = "a shared-bit layout needs free RAM to start private (the default)";
	}
	if (skip) {
		tap_skip_all("%s (backend %s, MAXPHYADDR %u, shared bit %u)", skip, tsvmm_backend_name(boot->backend),
			     tsvmm_maxphyaddr(), boot->shared_bit);
		return tap_status();
	}
	tap_plan(PLAN);

	base = reserve;
	int starts_private = !!(range->flags & TSVMM_RAM_PRIVATE);
	for (uint64_t i = 0; i < RESERVE / PAGE; i++)
		expect_private[i] = (uint8_t)starts_private;
	tsvmm_printf("convert: backend %s, %s, chunk [0x%llx, 0x%llx) in RAM [0x%llx, 0x%llx) flagged %s\n",
		     tsvmm_backend_name(boot->backend), tsvmm_convert_method_name(boot->convert_method), (ull)base,
		     (ull)(base + CHUNK), (ull)range->base, (ull)(range->base + range->size),
		     starts_private ? "private" : "shared");
	if (boot->shared_bit) {
		alias = 1ULL << boot->shared_bit;
		tsvmm_printf("convert: shared bit %u: shared pages are used at gpa | 0x%llx (MAXPHYADDR %u)\n",
			     boot->shared_bit, (ull)alias, tsvmm_maxphyaddr());
	}
	tap_diag("expected-implicit-conversions 0");

	/* setup: the VMM agrees the reservation starts in the flagged state; private data stays private */
	tap_step_begin();
	if (alias) {
		int rc = tsvmm_map(base | alias, base | alias, RESERVE, TSVMM_MAP_2M);
		if (rc)
			tap_step_fail("tsvmm_map of the shared view failed: %d", rc);
	}
	count(base, RESERVE);
	tap_step_end("chunk at 0x%llx: the VMM counts %llu of %llu reserved pages private, as the RAM map says", (ull)base,
	    (ull)expected_count(base, RESERVE), (ull)(RESERVE / PAGE));

	tap_step_begin();
	if (starts_private) {
		fill(base, CHUNK, 0x5a);
		host_private(base, CHUNK, 0x5a, "private data written before any conversion");
	}
	convert(base, CHUNK, 0, 0);
	count(base, RESERVE);
	verify(base, CHUNK, 0, "the chunk converted to shared is fresh");
	tap_step_end("chunk to shared: ret 0, COUNT 0, reads zero (private data 0x5a did not carry)");

	/* 14a: the guest writes 0xaa, the host sees it and writes 0xcc, the guest sees 0xcc */
	tap_step_begin();
	fill(base, CHUNK, 0xaa);
	host_shared(base, CHUNK, 0xaa, INIT_P);
	verify(base, CHUNK, INIT_P, "the host's fill");
	tap_step_end("shared chunk: guest wrote 0xaa, the host saw it and wrote 0xcc, the guest sees 0xcc");

	conversions(0);
	conversions(1);

	/* 15: the chunk private, punch holes */
	tap_step_begin();
	convert(base, CHUNK, 1, 0);
	count(base, CHUNK);
	verify(base, CHUNK, 0, "the chunk converted to private is fresh");
	tap_step_end("chunk to private for the punch tests: COUNT %llu, reads zero", (ull)CHUNK_PAGES);
	punch_holes(0);
	punch_holes(1);

	tap_step_begin();
	fill(base, CHUNK, 0x77);
	convert(base, CHUNK, 0, 0);
	count(base, CHUNK);
	verify(base, CHUNK, 0, "private data 0x77 must not carry to shared");
	host_shared(base, CHUNK, 0, -1);
	tap_step_end("chunk back to shared: COUNT 0, the guest and the host read zero (private 0x77 did not carry)");

	bad_requests(boot);
	return tap_status();
}
