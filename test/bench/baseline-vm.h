/*
 * baseline-vm.h: the VM setup the C baselines of `npm run bench` share (exit-loop.c,
 * convert-loop.c). Each defines BASELINE_NAME (its messages' prefix) before including it.
 * A vCPU starts straight in 64-bit long mode: page tables at PML4_GPA.., code at CODE_GPA,
 * flat code and data segments, the host's supported CPUID (long mode must be advertised for
 * EFER.LME to be accepted).
 */
#ifndef BASELINE_VM_H
#define BASELINE_VM_H

#include <errno.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>

#define PML4_GPA  0x1000ull
#define PDPT_GPA  0x2000ull
#define PD_GPA    0x3000ull
#define STACK_TOP 0x8000ull
#define CODE_GPA  0x10000ull

static void die(int status, const char *what)
{
	fprintf(stderr, BASELINE_NAME ": %s: %s\n", what, strerror(errno));
	exit(status);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Identity map of the first `huge_pages` 2 MiB pages: PML4[0] -> PDPT[0] -> PD[0..huge_pages). */
static void map_low_identity(uint8_t *mem, unsigned huge_pages)
{
	uint64_t *pml4 = (uint64_t *)(mem + PML4_GPA), *pdpt = (uint64_t *)(mem + PDPT_GPA), *pd = (uint64_t *)(mem + PD_GPA);
	pml4[0] = PDPT_GPA | 3;
	pdpt[0] = PD_GPA | 3;
	for (unsigned i = 0; i < huge_pages; i++)
		pd[i] = ((uint64_t)i << 21) | 0x83;
}

/* Give a new vCPU the supported CPUID and 64-bit long mode (CR3 = PML4_GPA); returns its kvm_run. */
static struct kvm_run *vcpu_long_mode(int kvm, int vcpu)
{
	int nent = 256;
	struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + nent * sizeof(struct kvm_cpuid_entry2));
	cpuid->nent = nent;
	if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0)
		die(70, "KVM_GET_SUPPORTED_CPUID");
	if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0)
		die(70, "KVM_SET_CPUID2");
	free(cpuid);
	int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (size < 0)
		die(70, "KVM_GET_VCPU_MMAP_SIZE");
	struct kvm_run *run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		die(70, "mmap kvm_run");

	struct kvm_sregs sregs;
	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
		die(70, "KVM_GET_SREGS");
	struct kvm_segment cs = { .base = 0, .limit = 0xffffffff, .selector = 0x8, .type = 11, .present = 1, .s = 1, .l = 1, .g = 1 };
	struct kvm_segment ds = cs;
	ds.selector = 0x10;
	ds.type = 3;
	ds.l = 0;
	ds.db = 1;
	sregs.cs = cs;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = ds;
	sregs.cr3 = PML4_GPA;
	sregs.cr4 = 1u << 5;                 /* PAE */
	sregs.cr0 = 0x80050033;              /* PG WP NE ET MP PE */
	sregs.efer = (1u << 8) | (1u << 10); /* LME LMA */
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
		die(70, "KVM_SET_SREGS");
	return run;
}

#endif
