/* Boot-information page helpers and the command line. */
#include <tsvmm/tsvmm.h>
#include "runtime.h"

const char *tsvmm_boot_check(const struct tsvmm_boot_info *b)
{
	if (!b)
		return "no boot-information page";
	if (b->magic != TSVMM_BOOT_MAGIC)
		return "bad magic";
	if (b->version != TSVMM_BOOT_VERSION)
		return "unknown version";
	if (b->cpu_count == 0 || b->cpu_count > TSVMM_MAX_CPUS)
		return "cpu_count out of range";
	if (b->ram_range_count == 0 || b->ram_range_count > TSVMM_MAX_RAM_RANGES)
		return "ram_range_count out of range";
	for (uint32_t i = 0; i < b->ram_range_count; i++) {
		const struct tsvmm_ram_range *r = &b->ram[i];
		if ((r->base | r->size) & (TSVMM_PAGE_SIZE - 1) || r->size == 0 || r->base + r->size < r->base)
			return "RAM range empty, misaligned or wrapping";
		if (i && r->base < b->ram[i - 1].base + b->ram[i - 1].size)
			return "RAM ranges unsorted or overlapping";
	}
	if (b->free_base & (TSVMM_PAGE_SIZE - 1))
		return "free_base not page aligned";
	if (b->backend > TSVMM_BACKEND_MEMSLOTS)
		return "unknown backend";
	if (b->convert_method > TSVMM_CONVERT_DOORBELL)
		return "unknown convert_method";
	if (b->shared_bit && (b->shared_bit < 32 || b->shared_bit > 51))
		return "shared_bit out of range";
	if (strnlen(b->cmdline, TSVMM_CMDLINE_SIZE) == TSVMM_CMDLINE_SIZE)
		return "cmdline not NUL-terminated";
	return 0;
}

const char *tsvmm_backend_name(uint32_t backend)
{
	switch (backend) {
	case TSVMM_BACKEND_SHARED: return "shared";
	case TSVMM_BACKEND_ATTRIBUTES: return "attributes";
	case TSVMM_BACKEND_MEMSLOTS: return "memslots";
	default: return "unknown";
	}
}

const char *tsvmm_convert_method_name(uint32_t method)
{
	switch (method) {
	case TSVMM_CONVERT_NONE: return "none";
	case TSVMM_CONVERT_VMCALL: return "vmcall";
	case TSVMM_CONVERT_VMMCALL: return "vmmcall";
	case TSVMM_CONVERT_DOORBELL: return "doorbell";
	default: return "unknown";
	}
}

/* Find the last word "key" or "key=..." in the command line: its value and length. */
static int find(const char *key, const char **value, size_t *len)
{
	const struct tsvmm_boot_info *b = tsvmm_boot_page;
	if (!b)
		return 0;
	const char *p = b->cmdline, *end = p + strnlen(p, TSVMM_CMDLINE_SIZE);
	size_t klen = strlen(key);
	int found = 0;
	while (p < end) {
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		const char *w = p;
		while (p < end && *p != ' ' && *p != '\t')
			p++;
		if (p == w)
			break;
		if ((size_t)(p - w) >= klen && !memcmp(w, key, klen)) {
			const char *rest = w + klen;
			if (rest == p) {
				*value = rest;
				*len = 0;
				found = 1;
			} else if (*rest == '=') {
				*value = rest + 1;
				*len = (size_t)(p - rest - 1);
				found = 1;
			}
		}
	}
	return found;
}

int tsvmm_cmdline_get(const char *key, char *buf, size_t size)
{
	const char *v;
	size_t n;
	if (!find(key, &v, &n))
		return -1;
	if (size) {
		size_t c = n < size - 1 ? n : size - 1;
		memcpy(buf, v, c);
		buf[c] = 0;
	}
	return (int)n;
}

int tsvmm_cmdline_has(const char *key)
{
	const char *v;
	size_t n;
	return find(key, &v, &n);
}

uint64_t tsvmm_cmdline_uint(const char *key, uint64_t dflt)
{
	const char *v;
	size_t n;
	if (!find(key, &v, &n) || n == 0)
		return dflt;
	unsigned base = 10;
	if (n > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
		base = 16;
		v += 2;
		n -= 2;
	}
	uint64_t r = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned d;
		char c = v[i];
		if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
		else if (base == 16 && c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
		else if (base == 16 && c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
		else return dflt;
		r = r * base + d;
	}
	return r;
}
