/*
 * Host requests (abi.h, struct tsvmm_host_request, port TSVMM_HOST_PORT): the VMM's side of the
 * private-memory tests, i.e. what the kernel selftest's host thread does with SYNC_SHARED,
 * SYNC_PRIVATE and its punch-hole hypercall flag. The VMM only ever reads or writes the *shared*
 * backing of a page; pages are named by their plain GPA (without the shared bit).
 *
 * Each call copies the request into this vCPU's slot in the runtime's .bss (shared RAM below
 * free_base, as the ABI requires), does one 32-bit `out` of the slot's GPA, and copies the
 * answer back: callers may keep requests anywhere, and every vCPU may send requests at once.
 *
 * Only send requests to a VMM that offers private memory (boot_info.backend != SHARED): a VMM
 * without the port stops the VM with an unhandled exit.
 */
#ifndef TSVMM_HOST_H
#define TSVMM_HOST_H

#include <stdint.h>
#include <tsvmm/abi.h>

/* result of a request the VMM did not answer (e.g. it found the request block misplaced) */
#define TSVMM_HOST_UNANSWERED (-2)

/*
 * Send *req; result, found and value are filled in. Returns req->result: 0 ok, -1 check failed,
 * >0 errno (22 bad request, e.g. a check of a range not entirely in the state it checks),
 * TSVMM_HOST_UNANSWERED.
 */
int tsvmm_host_request(struct tsvmm_host_request *req);

/*
 * CHECK_SHARED: every byte of the shared view of [gpa, gpa + size) equals expect; with fill
 * (>= 0) the VMM then writes that byte over the range. On a mismatch (-1) *found (if not 0)
 * gets the first mismatching GPA and *value the byte there.
 */
int tsvmm_host_check_shared(uint64_t gpa, uint64_t size, uint8_t expect, int fill, uint64_t *found,
			    uint64_t *value);
/* CHECK_PRIVATE: the shared backing of the range holds no byte == expect (the guest's private data). */
int tsvmm_host_check_private(uint64_t gpa, uint64_t size, uint8_t expect, uint64_t *found, uint64_t *value);
/* PUNCH_PRIVATE: the VMM discards the private backing of the range; the state stays private. */
int tsvmm_host_punch_private(uint64_t gpa, uint64_t size);
/* COUNT_PRIVATE: pages of the range the VMM's page-state map says are private, or -errno / -1. */
int64_t tsvmm_host_count_private(uint64_t gpa, uint64_t size);

/* ---- helpers for memory tests ---- */

/* Offset of the first byte of [p, p + n) that is not `byte`, or n if all are (8-byte steps where aligned). */
uint64_t tsvmm_find_not(const volatile void *p, uint64_t n, uint8_t byte);

/* The RAM range (boot page) holding all of [gpa, gpa + size), or 0. */
const struct tsvmm_ram_range *tsvmm_ram_range_of(uint64_t gpa, uint64_t size);

/* MAXPHYADDR from CPUID 0x80000008 (EAX[7:0]), or 36 if the leaf is absent. */
unsigned tsvmm_maxphyaddr(void);

#endif
