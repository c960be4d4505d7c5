/*
 * Host requests (host.h): one slot per vCPU in .bss (below free_base, so always shared and
 * identity-mapped: its address is its GPA), one 32-bit `out` of the slot's GPA per request.
 */
#include <tsvmm/tsvmm.h>
#include "runtime.h"

static struct tsvmm_host_request slots[TSVMM_MAX_CPUS] __attribute__((aligned(64)));

int tsvmm_host_request(struct tsvmm_host_request *req)
{
	uint32_t cpu = tsvmm_cpu();
	volatile struct tsvmm_host_request *slot = &slots[cpu < TSVMM_MAX_CPUS ? cpu : 0];
	req->result = TSVMM_HOST_UNANSWERED;   /* stays if the VMM ignores the request */
	memcpy((void *)slot, req, sizeof(*req));
	/* the VMM answers before the `out` completes; "memory": the slot is read and written behind our back */
	__asm__ volatile("outl %%eax, %[port]"
			 :
			 : "a"((uint32_t)(uintptr_t)slot), [port] "i"(TSVMM_HOST_PORT)
			 : "memory");
	memcpy(req, (const void *)slot, sizeof(*req));
	return req->result;
}

static int simple(uint32_t op, uint64_t gpa, uint64_t size, uint8_t expect, int fill, uint64_t *found,
		  uint64_t *value)
{
	struct tsvmm_host_request r;
	memset(&r, 0, sizeof(r));
	r.op = op;
	r.gpa = gpa;
	r.size = size;
	r.expect = expect;
	if (fill >= 0) {
		r.flags = TSVMM_HOST_FLAG_FILL;
		r.fill = (uint8_t)fill;
	}
	int rc = tsvmm_host_request(&r);
	if (found)
		*found = r.found;
	if (value)
		*value = r.value;
	return rc;
}

int tsvmm_host_check_shared(uint64_t gpa, uint64_t size, uint8_t expect, int fill, uint64_t *found,
			    uint64_t *value)
{
	return simple(TSVMM_HOST_CHECK_SHARED, gpa, size, expect, fill, found, value);
}

int tsvmm_host_check_private(uint64_t gpa, uint64_t size, uint8_t expect, uint64_t *found, uint64_t *value)
{
	return simple(TSVMM_HOST_CHECK_PRIVATE, gpa, size, expect, -1, found, value);
}

int tsvmm_host_punch_private(uint64_t gpa, uint64_t size)
{
	return simple(TSVMM_HOST_PUNCH_PRIVATE, gpa, size, 0, -1, 0, 0);
}

int64_t tsvmm_host_count_private(uint64_t gpa, uint64_t size)
{
	uint64_t found = 0;
	int rc = simple(TSVMM_HOST_COUNT_PRIVATE, gpa, size, 0, -1, &found, 0);
	return rc ? -(int64_t)(rc > 0 ? rc : 1) : (int64_t)found;
}

uint64_t tsvmm_find_not(const volatile void *p, uint64_t n, uint8_t byte)
{
	const volatile uint8_t *b = p;
	uint64_t i = 0;
	uint64_t word = byte * 0x0101010101010101ULL;
	while (i < n && ((uintptr_t)(b + i) & 7))
		if (b[i] != byte)
			return i;
		else
			i++;
	for (; i + 8 <= n; i += 8)
		if (*(const volatile uint64_t *)(b + i) != word)
			break;
	for (; i < n; i++)
		if (b[i] != byte)
			return i;
	return n;
}

const struct tsvmm_ram_range *tsvmm_ram_range_of(uint64_t gpa, uint64_t size)
{
	const struct tsvmm_boot_info *b = tsvmm_boot_page;
	if (!b || gpa + size < gpa)
		return 0;
	for (uint32_t i = 0; i < b->ram_range_count && i < TSVMM_MAX_RAM_RANGES; i++) {
		const struct tsvmm_ram_range *r = &b->ram[i];
		if (gpa >= r->base && gpa + size <= r->base + r->size)
			return r;
	}
	return 0;
}

unsigned tsvmm_maxphyaddr(void)
{
	uint32_t a, b, c, d;
	tsvmm_cpuid(0x80000000, 0, &a, &b, &c, &d);
	if (a < 0x80000008)
		return 36;
	tsvmm_cpuid(0x80000008, 0, &a, &b, &c, &d);
	return a & 0xff;
}
