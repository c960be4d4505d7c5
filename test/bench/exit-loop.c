/*
 * exit-loop: the C baseline of `npm run bench`. A minimal KVM user of its own (no tsvmm code):
 * one VM, one vCPU put straight into 64-bit long mode with KVM_SET_SREGS (identity map of the
 * first 2 MiB, one 2 MiB page), running this loop at 0x10000 -- byte for byte the loop that
 * test/bench/guests/exits.c runs under tsvmm:
 *
 *     1:  out %al,(%dx)      ee        (or  in (%dx),%al   ec)
 *         sub $1,%ecx        83 e9 01
 *         jnz 1b             75 fa
 *         hlt                f4
 *
 * The KVM_RUN loop answers each KVM_EXIT_IO by re-entering (an `in` gets 0xff, a `out` is
 * dropped) until KVM_EXIT_HLT. Each repetition re-arms RIP/RCX and times the KVM_RUN loop with
 * CLOCK_MONOTONIC; the boot of the VM is outside the timed region. Memory is an anonymous
 * mapping (the loop touches no data, only instruction fetch). No KVM_CAP_SYNC_REGS, no
 * KVM_GET_REGS per exit: the plainest loop there is.
 *
 * Usage: exit-loop [--mode out|in] [--port N] [--iters N] [--reps N] [--sync-regs]
 * Output: one JSON line on stdout, e.g.
 *   {"mode":"out","port":1016,"iters":100000,"reps":5,"ns_per_exit":[...],"median_ns":7301.2,...}
 * Exit status: 0 ok, 69 no usable /dev/kvm, 70 anything else.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE   0x200000UL
#define PML4_GPA   0x1000
#define PDPT_GPA   0x2000
#define PD_GPA     0x3000
#define CODE_GPA   0x10000
#define STACK_TOP  0x8000

static void die(int status, const char *what)
{
	fprintf(stderr, "exit-loop: %s: %s\n", what, strerror(errno));
	exit(status);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	const char *mode = "out";
	unsigned port = 0x3f8;
	unsigned long iters = 100000;
	int reps = 5;
	int sync_regs = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--mode") && i + 1 < argc)
			mode = argv[++i];
		else if (!strcmp(argv[i], "--port") && i + 1 < argc)
			port = (unsigned)strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--iters") && i + 1 < argc)
			iters = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--sync-regs"))
			sync_regs = 1;
		else {
			fprintf(stderr, "usage: exit-loop [--mode out|in] [--port N] [--iters N] [--reps N] [--sync-regs]\n");
			return 64;
		}
	}
	int is_in = !strcmp(mode, "in");
	if (!is_in && strcmp(mode, "out")) {
		fprintf(stderr, "exit-loop: --mode must be out or in\n");
		return 64;
	}
	if (iters < 1 || iters > 0xffffffffUL || reps < 1 || reps > 1000 || port > 0xffff) {
		fprintf(stderr, "exit-loop: bad --iters/--reps/--port\n");
		return 64;
	}

	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		die(69, "open /dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		die(69, "KVM_CREATE_VM");

	uint8_t *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		die(70, "mmap");
	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE, .userspace_addr = (uintptr_t)mem,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		die(70, "KVM_SET_USER_MEMORY_REGION");

	/* page tables: PML4[0] -> PDPT[0] -> PD[0] = 2 MiB page at 0 */
	*(uint64_t *)(mem + PML4_GPA) = PDPT_GPA | 0x3;
	*(uint64_t *)(mem + PDPT_GPA) = PD_GPA | 0x3;
	*(uint64_t *)(mem + PD_GPA) = 0x0 | 0x83;
	static const uint8_t loop[] = { 0xee, 0x83, 0xe9, 0x01, 0x75, 0xfa, 0xf4 };
	memcpy(mem + CODE_GPA, loop, sizeof loop);
	if (is_in)
		mem[CODE_GPA] = 0xec;

	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		die(70, "KVM_CREATE_VCPU");

	/* the guest CPUID must advertise long mode for EFER.LME to be accepted */
	int nent = 256;
	struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + nent * sizeof(struct kvm_cpuid_entry2));
	cpuid->nent = nent;
	if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0)
		die(70, "KVM_GET_SUPPORTED_CPUID");
	if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0)
		die(70, "KVM_SET_CPUID2");

	int mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (mmap_size < 0)
		die(70, "KVM_GET_VCPU_MMAP_SIZE");
	struct kvm_run *run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		die(70, "mmap kvm_run");
	if (sync_regs)
		run->kvm_valid_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS;

	struct kvm_sregs sregs;
	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
		die(70, "KVM_GET_SREGS");
	struct kvm_segment code = {
		.base = 0, .limit = 0xffffffff, .selector = 0x8, .type = 11,
		.present = 1, .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1,
	};
	struct kvm_segment data = code;
	data.selector = 0x10;
	data.type = 3;
	data.l = 0;
	data.db = 1;
	sregs.cs = code;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.cr3 = PML4_GPA;
	sregs.cr4 = 1u << 5;                 /* PAE */
	sregs.cr0 = 0x80050033;              /* PG WP NE ET MP PE */
	sregs.efer = (1u << 8) | (1u << 10); /* LME LMA */
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
		die(70, "KVM_SET_SREGS");

	double *per_exit = calloc(reps, sizeof *per_exit);
	unsigned long exits_seen = 0;
	for (int r = 0; r < reps; r++) {
		struct kvm_regs regs = { 0 };
		regs.rip = CODE_GPA;
		regs.rsp = STACK_TOP;
		regs.rflags = 0x2;
		regs.rcx = iters;
		regs.rdx = port;
		regs.rax = '.';
		if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
			die(70, "KVM_SET_REGS");
		unsigned long io = 0;
		uint64_t t0 = now_ns();
		for (;;) {
			if (ioctl(vcpu, KVM_RUN, 0) < 0) {
				if (errno == EINTR)
					continue;
				die(70, "KVM_RUN");
			}
			if (run->exit_reason == KVM_EXIT_IO) {
				if (run->io.direction == KVM_EXIT_IO_IN)
					memset((uint8_t *)run + run->io.data_offset, 0xff, run->io.size * run->io.count);
				io++;
				continue;
			}
			if (run->exit_reason == KVM_EXIT_HLT)
				break;
			fprintf(stderr, "exit-loop: unexpected exit_reason %u after %lu I/O exits\n",
				run->exit_reason, io);
			return 70;
		}
		uint64_t t1 = now_ns();
		if (io != iters) {
			fprintf(stderr, "exit-loop: expected %lu I/O exits, saw %lu\n", iters, io);
			return 70;
		}
		exits_seen += io;
		per_exit[r] = (double)(t1 - t0) / (double)iters;
	}

	printf("{\"mode\":\"%s\",\"port\":%u,\"iters\":%lu,\"reps\":%d,\"sync_regs\":%s,\"exits\":%lu,\"ns_per_exit\":[",
	       mode, port, iters, reps, sync_regs ? "true" : "false", exits_seen);
	for (int r = 0; r < reps; r++)
		printf("%s%.1f", r ? "," : "", per_exit[r]);
	qsort(per_exit, reps, sizeof *per_exit, cmp_double);
	double median = reps % 2 ? per_exit[reps / 2] : (per_exit[reps / 2 - 1] + per_exit[reps / 2]) / 2;
	printf("],\"median_ns\":%.1f,\"min_ns\":%.1f}\n", median, per_exit[0]);
	return 0;
}
