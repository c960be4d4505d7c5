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
#include <fcntl.h>
#include <unistd.h>

#define BASELINE_NAME "exit-loop"
#include "baseline-vm.h"

#define MEM_SIZE   0x200000UL

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

	/* page tables: one 2 MiB page at 0 */
	map_low_identity(mem, 1);
	static const uint8_t loop[] = { 0xee, 0x83, 0xe9, 0x01, 0x75, 0xfa, 0xf4 };
	memcpy(mem + CODE_GPA, loop, sizeof loop);
	if (is_in)
		mem[CODE_GPA] = 0xec;

	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		die(70, "KVM_CREATE_VCPU");

	struct kvm_run *run = vcpu_long_mode(kvm, vcpu);
	if (sync_regs)
		run->kvm_valid_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS;

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
