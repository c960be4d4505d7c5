/* x86-64 helpers for tsvmm guests: port I/O, control registers, MSRs, halting. */
#ifndef TSVMM_ARCH_H
#define TSVMM_ARCH_H

#include <stdint.h>

static inline void tsvmm_outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void tsvmm_outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t tsvmm_inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void tsvmm_pause(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void tsvmm_cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void tsvmm_hlt(void) { __asm__ volatile("hlt" ::: "memory"); }

static inline uint64_t tsvmm_rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}
static inline void tsvmm_wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

static inline void tsvmm_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(subleaf));
}

static inline uint64_t tsvmm_read_cr2(void) { uint64_t v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline uint64_t tsvmm_read_cr3(void) { uint64_t v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline void tsvmm_write_cr3(uint64_t v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
static inline void tsvmm_invlpg(uint64_t va) { __asm__ volatile("invlpg (%0)" : : "r"(va) : "memory"); }

/* This vCPU's index: the first word of the per-CPU block IA32_GS_BASE points at (abi.h). */
static inline uint32_t tsvmm_cpu(void)
{
	uint32_t cpu;
	__asm__ volatile("movl %%gs:0, %0" : "=r"(cpu));
	return cpu;
}

/* A simple test-and-set spinlock; SMP-safe, no interrupts involved. */
typedef struct { volatile uint32_t locked; } tsvmm_spinlock_t;
#define TSVMM_SPINLOCK_INIT { 0 }

static inline void tsvmm_spin_lock(tsvmm_spinlock_t *l)
{
	while (__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE))
		while (__atomic_load_n(&l->locked, __ATOMIC_RELAXED))
			tsvmm_pause();
}
static inline void tsvmm_spin_unlock(tsvmm_spinlock_t *l) { __atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE); }

#endif
