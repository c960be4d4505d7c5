/*
 * Page tables on top of the firmware's identity map (4-level, CR3 shared by all vCPUs), and
 * a page allocator for free RAM from boot_info.free_base. Used e.g. to map the shared-bit
 * alias view (gpa | 1 << shared_bit) at some virtual address.
 *
 * Both are SMP-safe (one lock each). A mapping change flushes only the calling vCPU's TLB
 * (CR3 reload): other vCPUs must not have used the changed virtual range before, or must
 * reload CR3 themselves (tsvmm_flush_tlb).
 */
#ifndef TSVMM_PAGING_H
#define TSVMM_PAGING_H

#include <stdint.h>

#define TSVMM_PAGE_SIZE     0x1000ULL
#define TSVMM_HUGE_SIZE     0x200000ULL

/* tsvmm_map flags */
#define TSVMM_MAP_4K        0x0u   /* 4 KiB pages (2 MiB pages in the way are split) */
#define TSVMM_MAP_2M        0x1u   /* 2 MiB pages: va, gpa and size 2 MiB-aligned */
#define TSVMM_MAP_READONLY  0x2u
#define TSVMM_MAP_UNCACHED  0x4u   /* PCD|PWT */

/* error returns (negated) */
#define TSVMM_EINVAL        22
#define TSVMM_ENOMEM        12

/*
 * Map [va, va + size) to [gpa, gpa + size). Existing mappings there are replaced. Returns 0,
 * -TSVMM_EINVAL (misaligned, empty, non-canonical or wrapping range) or -TSVMM_ENOMEM (no
 * free RAM left for page tables).
 */
int tsvmm_map(uint64_t va, uint64_t gpa, uint64_t size, unsigned flags);
/* Translate va through the current page tables: 0 and *gpa set, or -TSVMM_EINVAL if unmapped. */
int tsvmm_translate(uint64_t va, uint64_t *gpa);
void tsvmm_flush_tlb(void);

/* count zeroed pages aligned to align bytes (a power of two >= 4 KiB) from free RAM; 0 if none */
uint64_t tsvmm_alloc_pages(uint64_t count, uint64_t align);
/*
 * The same pages as tsvmm_alloc_pages would give, but not touched at all: for RAM whose
 * private/shared state or view the caller manages (a write through the wrong view would be an
 * implicit conversion). Later allocations (page tables included) never overlap them.
 */
uint64_t tsvmm_reserve_pages(uint64_t count, uint64_t align);

#endif
