/*
 * Page-table helpers over the firmware's 4-level identity map, and the free-RAM page allocator.
 * Page-table pages come from free RAM below 4 GiB, which the identity map covers, so a table's
 * GPA is also its address.
 */
#include <tsvmm/tsvmm.h>
#include "runtime.h"

#define PTE_P    (1ULL << 0)
#define PTE_RW   (1ULL << 1)
#define PTE_PWT  (1ULL << 3)
#define PTE_PCD  (1ULL << 4)
#define PTE_A    (1ULL << 5)
#define PTE_D    (1ULL << 6)
#define PTE_PS   (1ULL << 7)
#define PTE_ADDR 0x000ffffffffff000ULL
#define PTE_TABLE (PTE_P | PTE_RW | PTE_A)

#define IDENTITY_LIMIT (4ULL << 30)

/* ---- allocator: a bump pointer through the RAM ranges from free_base ---- */

static tsvmm_spinlock_t alloc_lock = TSVMM_SPINLOCK_INIT;
static uint64_t alloc_next;   /* 0: not started */

static uint64_t take_pages(uint64_t count, uint64_t align, int zero)
{
	const struct tsvmm_boot_info *b = tsvmm_boot_page;
	if (!b || !count || align < TSVMM_PAGE_SIZE || (align & (align - 1)))
		return 0;
	uint64_t bytes = count * TSVMM_PAGE_SIZE, found = 0;
	tsvmm_spin_lock(&alloc_lock);
	if (!alloc_next)
		alloc_next = b->free_base;
	for (uint32_t i = 0; i < b->ram_range_count && i < TSVMM_MAX_RAM_RANGES; i++) {
		const struct tsvmm_ram_range *r = &b->ram[i];
		uint64_t end = r->base + r->size;
		if (end > IDENTITY_LIMIT)
			end = IDENTITY_LIMIT;
		uint64_t start = alloc_next > r->base ? alloc_next : r->base;
		start = (start + align - 1) & ~(align - 1);
		if (start < end && end - start >= bytes) {
			found = start;
			alloc_next = start + bytes;
			break;
		}
	}
	tsvmm_spin_unlock(&alloc_lock);
	if (found && zero)
		memset((void *)(uintptr_t)found, 0, bytes);
	return found;
}

uint64_t tsvmm_alloc_pages(uint64_t count, uint64_t align) { return take_pages(count, align, 1); }

uint64_t tsvmm_reserve_pages(uint64_t count, uint64_t align) { return take_pages(count, align, 0); }

/* ---- page tables ---- */

static tsvmm_spinlock_t map_lock = TSVMM_SPINLOCK_INIT;

static uint64_t *table_at(uint64_t entry) { return (uint64_t *)(uintptr_t)(entry & PTE_ADDR); }

static int canonical(uint64_t va) { return (uint64_t)((int64_t)(va << 16) >> 16) == va; }

/*
 * The table one level down from *entry (level: 3 = PML4 entry -> PDPT, 2 = PDPT entry -> PD,
 * 1 = PD entry -> PT), made if absent, split if *entry maps a large page.
 */
static uint64_t *next_table(uint64_t *entry, int level)
{
	uint64_t e = *entry;
	if ((e & PTE_P) && !(e & PTE_PS))
		return table_at(e);
	uint64_t t = tsvmm_alloc_pages(1, TSVMM_PAGE_SIZE);
	if (!t)
		return 0;
	uint64_t *table = (uint64_t *)(uintptr_t)t;
	if ((e & PTE_P) && (e & PTE_PS)) {
		/* replicate the large page with 512 smaller ones (PS stays set except in a PT) */
		uint64_t step = level == 2 ? (1ULL << 21) : TSVMM_PAGE_SIZE;
		uint64_t attrs = e & ~PTE_ADDR & ~(level == 1 ? PTE_PS : 0);
		/* the mask also drops bit 12, which in a large-page entry is PAT, not address */
		uint64_t base = e & PTE_ADDR & ~(level == 2 ? (1ULL << 30) - 1 : (1ULL << 21) - 1);
		for (int i = 0; i < 512; i++)
			table[i] = (base + (uint64_t)i * step) | attrs;
	}
	__atomic_store_n(entry, t | PTE_TABLE, __ATOMIC_RELEASE);
	return table;
}

int tsvmm_map(uint64_t va, uint64_t gpa, uint64_t size, unsigned flags)
{
	uint64_t page = (flags & TSVMM_MAP_2M) ? TSVMM_HUGE_SIZE : TSVMM_PAGE_SIZE;
	if (!size || ((va | gpa | size) & (page - 1)) || va + size < va || gpa + size < gpa)
		return -TSVMM_EINVAL;
	if (!canonical(va) || !canonical(va + size - 1) || ((va ^ (va + size - 1)) >> 47))
		return -TSVMM_EINVAL;
	if ((gpa + size - 1) >> 52)
		return -TSVMM_EINVAL;

	uint64_t leaf = PTE_P | PTE_A | PTE_D;
	if (!(flags & TSVMM_MAP_READONLY))
		leaf |= PTE_RW;
	if (flags & TSVMM_MAP_UNCACHED)
		leaf |= PTE_PCD | PTE_PWT;
	if (flags & TSVMM_MAP_2M)
		leaf |= PTE_PS;

	int rc = 0;
	tsvmm_spin_lock(&map_lock);
	uint64_t *pml4 = table_at(tsvmm_read_cr3());
	for (uint64_t off = 0; off < size; off += page) {
		uint64_t v = va + off;
		uint64_t *pdpt = next_table(&pml4[(v >> 39) & 511], 3);
		uint64_t *pd = pdpt ? next_table(&pdpt[(v >> 30) & 511], 2) : 0;
		if (!pd) {
			rc = -TSVMM_ENOMEM;
			break;
		}
		uint64_t *pde = &pd[(v >> 21) & 511];
		if (flags & TSVMM_MAP_2M) {
			__atomic_store_n(pde, (gpa + off) | leaf, __ATOMIC_RELEASE);
			continue;
		}
		uint64_t *pt = next_table(pde, 1);
		if (!pt) {
			rc = -TSVMM_ENOMEM;
			break;
		}
		__atomic_store_n(&pt[(v >> 12) & 511], (gpa + off) | leaf, __ATOMIC_RELEASE);
	}
	tsvmm_flush_tlb();
	tsvmm_spin_unlock(&map_lock);
	return rc;
}

int tsvmm_translate(uint64_t va, uint64_t *gpa)
{
	if (!canonical(va))
		return -TSVMM_EINVAL;
	uint64_t e = tsvmm_read_cr3();
	for (int level = 3; level >= 0; level--) {
		e = table_at(e)[(va >> (12 + 9 * level)) & 511];
		if (!(e & PTE_P))
			return -TSVMM_EINVAL;
		if (level == 0 || (level <= 2 && (e & PTE_PS))) {
			uint64_t mask = (1ULL << (12 + 9 * level)) - 1;
			uint64_t base = e & PTE_ADDR;
			if (level)
				base &= ~(1ULL << 12);  /* PAT bit of a large page */
			*gpa = (base & ~mask) | (va & mask);
			return 0;
		}
	}
	return -TSVMM_EINVAL;
}

void tsvmm_flush_tlb(void) { tsvmm_write_cr3(tsvmm_read_cr3()); }
