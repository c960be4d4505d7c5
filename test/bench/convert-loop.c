/*
 * convert-loop: the C baseline of the conversion bench (`npm run bench -- --only convert`).
 * A KVM user of its own (no tsvmm code) that lays out guest RAM exactly as tsvmm's backends do
 * (vmm/memory/attributes.ts, vmm/memory/memslots.ts) and makes, per conversion, the same
 * ioctls and fallocates in the same order:
 *
 *   attributes  VM type KVM_X86_SW_PROTECTED_VM; one memslot over all RAM with a guest_memfd
 *               (flags 0) and a memfd at userspace_addr; RAM from --low up starts PRIVATE.
 *               Conversion: KVM_SET_MEMORY_ATTRIBUTES, then fallocate(PUNCH_HOLE|KEEP_SIZE) of
 *               the side left (the guest_memfd to shared, the memfd to private).
 *   memslots    default VM; a guest_memfd with MMAP|INIT_SHARED (shared pages, mapped by the
 *               VMM) and one with MMAP (private pages); every memslot is guest_memfd-only.
 *               Conversion: the memslots of the range are rebuilt from maximal runs of equal
 *               state (every touching slot deleted, the runs re-added; a range in the middle of a
 *               private region splits it into 3 slots, and back into 1), then the side left is
 *               punched. With --shared-bit B the aliased layout: page p is private at p and
 *               shared at p | 2^B; the view a page is not in is a slot over a guest_memfd that
 *               was created, bound and closed (released), so the guest touching it is a real
 *               KVM_EXIT_MEMORY_FAULT. Slot numbers are reused last-freed-first, as tsvmm does.
 *
 * Modes (--modes, each on a fresh VM; the range is --gpa, sizes from --sizes):
 *   ioctl      the conversion loop alone: --warm then --n round trips private -> shared ->
 *              private of the range, timed around the loop (a vCPU ran once first, so KVM has
 *              an MMU root, as in a running VM). Result: ns per conversion.
 *   hypercall  the same round trips asked by a raw 64-bit guest with KVM_HC_MAP_GPA_RANGE
 *              (vmmcall on AMD, vmcall on Intel; KVM_CAP_EXIT_HYPERCALL), answered by this
 *              KVM_RUN loop: the full path a VMM takes. Timed between completed conversions
 *              (clock read after the ioctls, before re-entering), as tsvmm's event times are.
 *   touched    as hypercall, and after every conversion the guest stores 8 bytes to each page of
 *              the range: each conversion discards memory that is populated and mapped.
 *   smp        --vcpus V (2..8) vCPUs at once, one thread each, every one converting its own 4 KiB
 *              page (gpa + 2 pages x index) round trip by hypercall as in `hypercall`. One lock
 *              serialises conversions (as tsvmm's engine does); memslots: the converting thread
 *              first stops every other vCPU (immediate_exit + a signal, then waits until none is
 *              in KVM_RUN) and lets them go after, as tsvmm's quiesce does. Timed between
 *              completed conversions of all vCPUs.
 *   implicit   (memslots with --shared-bit) a raw guest stores 8 bytes to --warm + --n distinct
 *              pages through the shared view, one after the other; each is KVM_RUN = -1/EFAULT,
 *              exit 39 (flags 0, gpa | 2^B, size 4096) -> conversion of that page to shared ->
 *              KVM_RUN again, which retries the store. Times per exit: handling = KVM_RUN's
 *              return -> KVM_RUN called again; cycle = one exit 39 -> the next (handling, then
 *              the guest running: re-entry, the retried store faulting in a fresh page, the
 *              loop, the next touch, the exit).
 *
 * Usage: convert-loop --backend attributes|memslots [--modes ioctl,hypercall,touched,smp,implicit] [--vcpus V]
 *        [--sizes 4096,2097152] [--n N] [--warm W] [--mem BYTES] [--low GPA] [--gpa GPA]
 *        [--shared-bit B]
 * Output: one JSON line on stdout. Exit status: 0 ok, 64 usage, 69 no /dev/kvm or the backend
 * is not offered by this KVM (the reason on stderr), 70 anything else.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <pthread.h>
#include <signal.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#define BASELINE_NAME "convert-loop"
#include "baseline-vm.h"

/* ---- uAPI not in older <linux/kvm.h> (numbers from the kernel's include/uapi/linux/kvm.h, 7.3) ---- */

struct cl_create_guest_memfd {
	uint64_t size, flags, reserved[6];
};
struct cl_region2 {
	uint32_t slot, flags;
	uint64_t guest_phys_addr, memory_size, userspace_addr, guest_memfd_offset;
	uint32_t guest_memfd, pad1;
	uint64_t pad2[14];
};
struct cl_memory_attributes {
	uint64_t address, size, attributes, flags;
};
_Static_assert(sizeof(struct cl_create_guest_memfd) == 64, "kvm_create_guest_memfd");
_Static_assert(sizeof(struct cl_region2) == 160, "kvm_userspace_memory_region2");
_Static_assert(sizeof(struct cl_memory_attributes) == 32, "kvm_memory_attributes");

#define CL_CREATE_GUEST_MEMFD      _IOWR(KVMIO, 0xd4, struct cl_create_guest_memfd)
#define CL_SET_USER_MEMORY_REGION2 _IOW(KVMIO, 0x49, struct cl_region2)
#define CL_SET_MEMORY_ATTRIBUTES   _IOW(KVMIO, 0xd2, struct cl_memory_attributes)
_Static_assert(CL_CREATE_GUEST_MEMFD == 0xc040aed4, "KVM_CREATE_GUEST_MEMFD");
_Static_assert(CL_SET_USER_MEMORY_REGION2 == 0x40a0ae49, "KVM_SET_USER_MEMORY_REGION2");
_Static_assert(CL_SET_MEMORY_ATTRIBUTES == 0x4020aed2, "KVM_SET_MEMORY_ATTRIBUTES");

#define CL_MEM_GUEST_MEMFD        (1u << 2)
#define CL_GMEM_MMAP              (1ull << 0)
#define CL_GMEM_INIT_SHARED       (1ull << 1)
#define CL_ATTRIBUTE_PRIVATE      (1ull << 3)
#define CL_X86_SW_PROTECTED_VM    1
#define CL_CAP_USER_MEMORY2       231
#define CL_CAP_MEMORY_ATTRIBUTES  233
#define CL_CAP_VM_TYPES           235
#define CL_CAP_GUEST_MEMFD_FLAGS  244
#define CL_CAP_EXIT_HYPERCALL     201
#define CL_EXIT_HYPERCALL         3
#define CL_EXIT_MEMORY_FAULT      39
#define CL_HC_MAP_GPA_RANGE       12
#define CL_MAP_GPA_ENCRYPTED      0x10
#define CL_MAP_GPA_PAGE_SZ_2M     0x1

/* kvm_run: the exit union at offset 32 (hypercall: nr 32, args 40.., ret 88; memory_fault: flags 32, gpa 40, size 48) */
#define RUN_U64(run, off) (*(volatile uint64_t *)((uint8_t *)(run) + (off)))

#define PAGE     4096ull
#define HUGE     0x200000ull
#define PDPT2_GPA 0x4000ull
#define PD2_GPA  0x5000ull

static void fail(int status, const char *what)
{
	fprintf(stderr, "convert-loop: %s\n", what);
	exit(status);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}
static uint64_t median_u64(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof *v, cmp_u64);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- the guests: position-independent 64-bit code copied to CODE_GPA ---- */

#define GUEST_BLOB(name, body) \
	__asm__(".pushsection .rodata\n.globl " #name "\n" #name ":\n" body ".globl " #name "_end\n" #name "_end:\n.popsection\n"); \
	extern const uint8_t name[], name##_end[];

GUEST_BLOB(guest_hlt, "hlt\n")
/* r8 = gpa, r9 = pages, r10 = attrs to shared, r11 = attrs to private, r12 = round trips */
#define HC_LOOP(insn) \
	"1: mov $12, %eax\n mov %r8, %rbx\n mov %r9, %rcx\n mov %r10, %rdx\n" insn "\n" \
	"   mov $12, %eax\n mov %r8, %rbx\n mov %r9, %rcx\n mov %r11, %rdx\n" insn "\n" \
	"   dec %r12\n jnz 1b\n hlt\n"
GUEST_BLOB(guest_vmmcall, HC_LOOP("vmmcall"))
GUEST_BLOB(guest_vmcall, HC_LOOP("vmcall"))
/* the same, with an 8-byte store to each page of the range after every conversion */
#define TOUCH_RANGE(label) " mov %r8, %rdi\n mov %r9, %rsi\n" label ": mov %rsi, (%rdi)\n add $4096, %rdi\n dec %rsi\n jnz " label "b\n"
#define HC_TOUCH_LOOP(insn) \
	"1: mov $12, %eax\n mov %r8, %rbx\n mov %r9, %rcx\n mov %r10, %rdx\n" insn "\n" TOUCH_RANGE("2") \
	"   mov $12, %eax\n mov %r8, %rbx\n mov %r9, %rcx\n mov %r11, %rdx\n" insn "\n" TOUCH_RANGE("3") \
	"   dec %r12\n jnz 1b\n hlt\n"
GUEST_BLOB(guest_vmmcall_touch, HC_TOUCH_LOOP("vmmcall"))
GUEST_BLOB(guest_vmcall_touch, HC_TOUCH_LOOP("vmcall"))
/* r8 = first address (shared view), r9 = pages: one 8-byte store per page */
GUEST_BLOB(guest_touch, "1: mov %r9, (%r8)\n add $4096, %r8\n dec %r9\n jnz 1b\n hlt\n")

/* ---- one VM ---- */

enum backend { ATTRIBUTES, MEMSLOTS };
enum kind { K_NONE = -1, K_SHARED, K_PRIVATE, K_DEAD };

struct seg {
	int slot, first, count, kind;
};
#define MAX_SEGS 256

static struct {
	enum backend backend;
	int kvm, vm, vcpu;
	struct kvm_run *run;
	uint64_t mem, low, alias;
	unsigned pages, low_pages;
	uint8_t *state;   /* per page: 1 private */
	uint8_t *shared;  /* host view of the shared backing, by GPA */
	int gmem, memfd;  /* attributes */
	int gsh, gpv;     /* memslots */
	uint8_t *gpv_map;
	struct seg segs[2][MAX_SEGS];
	int nsegs[2];
	int free_slots[2 * MAX_SEGS], nfree, next_slot;
	unsigned long slot_calls, attr_calls, punches, gmem_creates;
} M;

static int create_gmem(uint64_t size, uint64_t flags)
{
	struct cl_create_guest_memfd g = { .size = size, .flags = flags };
	int fd = ioctl(M.vm, CL_CREATE_GUEST_MEMFD, &g);
	if (fd < 0)
		die(70, "KVM_CREATE_GUEST_MEMFD");
	M.gmem_creates++;
	return fd;
}

static void set_region(uint32_t slot, uint64_t gpa, uint64_t size, uint64_t uaddr, int gmem, uint64_t offset)
{
	struct cl_region2 r = {
		.slot = slot, .flags = gmem >= 0 ? CL_MEM_GUEST_MEMFD : 0, .guest_phys_addr = gpa, .memory_size = size,
		.userspace_addr = uaddr, .guest_memfd_offset = offset, .guest_memfd = gmem >= 0 ? (uint32_t)gmem : 0,
	};
	M.slot_calls++;
	if (ioctl(M.vm, CL_SET_USER_MEMORY_REGION2, &r) < 0) {
		fprintf(stderr, "convert-loop: slot %u gpa 0x%llx size 0x%llx: ", slot, (unsigned long long)gpa, (unsigned long long)size);
		die(70, "KVM_SET_USER_MEMORY_REGION2");
	}
}

static void punch(int fd, uint64_t offset, uint64_t len)
{
	int rc;
	M.punches++;
	do
		rc = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len);
	while (rc != 0 && errno == EINTR);
	if (rc)
		die(70, "fallocate(PUNCH_HOLE|KEEP_SIZE)");
}

static void set_attributes(uint64_t gpa, uint64_t size, int private)
{
	struct cl_memory_attributes a = { .address = gpa, .size = size, .attributes = private ? CL_ATTRIBUTE_PRIVATE : 0 };
	M.attr_calls++;
	if (ioctl(M.vm, CL_SET_MEMORY_ATTRIBUTES, &a) < 0)
		die(70, "KVM_SET_MEMORY_ATTRIBUTES");
}

/* memslots.ts kindOf */
static int kind_of(int view, unsigned page)
{
	int low = page < M.low_pages, priv = M.state[page];
	if (view == 0)
		return low ? K_SHARED : priv ? K_PRIVATE : M.alias ? K_DEAD : K_SHARED;
	return low ? K_NONE : priv ? K_DEAD : K_SHARED;
}

static void add_slot(int view, unsigned first, unsigned count, int kind)
{
	int slot = M.nfree ? M.free_slots[--M.nfree] : M.next_slot++;
	uint64_t offset = (uint64_t)first * PAGE, size = (uint64_t)count * PAGE;
	uint64_t gpa = offset + (view ? M.alias : 0);
	if (kind == K_DEAD) {
		int dead = create_gmem(size, CL_GMEM_MMAP);
		set_region(slot, gpa, size, (uintptr_t)M.shared + offset, dead, 0);
		close(dead);
	} else {
		uint8_t *map = kind == K_SHARED ? M.shared : M.gpv_map;
		set_region(slot, gpa, size, (uintptr_t)map + offset, kind == K_SHARED ? M.gsh : M.gpv, offset);
	}
	if (M.nsegs[view] == MAX_SEGS)
		fail(70, "too many memslots");
	M.segs[view][M.nsegs[view]++] = (struct seg){ slot, (int)first, (int)count, kind };
}

static int cmp_seg(const void *a, const void *b)
{
	return ((const struct seg *)a)->first - ((const struct seg *)b)->first;
}

/* memslots.ts rebuild: re-lay the slots of pages [first, end) in every view, merging with neighbours */
static void rebuild(unsigned first, unsigned end)
{
	for (int view = 0; view < (M.alias ? 2 : 1); view++) {
		struct seg *list = M.segs[view];
		unsigned lo = first, hi = end;
		int kept = 0;
		for (int i = 0; i < M.nsegs[view]; i++) {
			struct seg s = list[i];
			if ((unsigned)s.first <= end && (unsigned)(s.first + s.count) >= first) {
				if ((unsigned)s.first < lo)
					lo = s.first;
				if ((unsigned)(s.first + s.count) > hi)
					hi = s.first + s.count;
				set_region(s.slot, (uint64_t)s.first * PAGE + (view ? M.alias : 0), 0, 0, -1, 0);
				M.free_slots[M.nfree++] = s.slot;
			} else
				list[kept++] = s;
		}
		M.nsegs[view] = kept;
		for (unsigned start = lo; start < hi;) {
			int kind = kind_of(view, start);
			unsigned stop = start + 1;
			while (stop < hi && kind_of(view, stop) == kind)
				stop++;
			if (kind != K_NONE)
				add_slot(view, start, stop - start, kind);
			start = stop;
		}
		qsort(list, M.nsegs[view], sizeof *list, cmp_seg);
	}
}

/* one conversion, as the engine's backends apply it */
static void convert(unsigned first, unsigned count, int to_private)
{
	memset(M.state + first, to_private, count);
	uint64_t offset = (uint64_t)first * PAGE, size = (uint64_t)count * PAGE;
	if (M.backend == ATTRIBUTES) {
		set_attributes(offset, size, to_private);
		punch(to_private ? M.memfd : M.gmem, offset, size);
	} else {
		rebuild(first, first + count);
		punch(to_private ? M.gsh : M.gpv, offset, size);
	}
}

static uint8_t *map_fd(int fd, uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die(70, "mmap");
	return p;
}

static void vm_create(enum backend backend, uint64_t mem, uint64_t low, int shared_bit)
{
	memset(&M, 0, sizeof M);
	M.backend = backend;
	M.mem = mem;
	M.low = low;
	M.pages = (unsigned)(mem / PAGE);
	M.low_pages = (unsigned)(low / PAGE);
	M.alias = shared_bit ? 1ull << shared_bit : 0;
	M.kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (M.kvm < 0)
		die(69, "open /dev/kvm");
	if (ioctl(M.kvm, KVM_CHECK_EXTENSION, CL_CAP_USER_MEMORY2) <= 0)
		fail(69, "no KVM_CAP_USER_MEMORY2");
	if (backend == ATTRIBUTES) {
		int types = ioctl(M.kvm, KVM_CHECK_EXTENSION, CL_CAP_VM_TYPES);
		if (types < 0 || !(types & (1 << CL_X86_SW_PROTECTED_VM)))
			fail(69, "KVM_X86_SW_PROTECTED_VM is not offered (KVM_CAP_VM_TYPES)");
	}
	M.vm = ioctl(M.kvm, KVM_CREATE_VM, backend == ATTRIBUTES ? CL_X86_SW_PROTECTED_VM : 0);
	if (M.vm < 0)
		die(69, "KVM_CREATE_VM");
	M.state = calloc(M.pages, 1);
	memset(M.state + M.low_pages, 1, M.pages - M.low_pages);
	if (backend == ATTRIBUTES) {
		if ((ioctl(M.vm, KVM_CHECK_EXTENSION, CL_CAP_MEMORY_ATTRIBUTES) & CL_ATTRIBUTE_PRIVATE) == 0)
			fail(69, "the VM offers no KVM_MEMORY_ATTRIBUTE_PRIVATE");
		M.gmem = create_gmem(mem, 0);
		M.memfd = memfd_create("convert-loop-shared", MFD_CLOEXEC);
		if (M.memfd < 0 || ftruncate(M.memfd, (off_t)mem) < 0)
			die(70, "memfd");
		M.shared = map_fd(M.memfd, mem);
		set_region(0, 0, mem, (uintptr_t)M.shared, M.gmem, 0);
		set_attributes(low, mem - low, 1);
	} else {
		int flags = ioctl(M.vm, KVM_CHECK_EXTENSION, CL_CAP_GUEST_MEMFD_FLAGS);
		if (flags < 0 || (flags & 3) != 3)
			fail(69, "this VM's guest_memfd lacks MMAP|INIT_SHARED (KVM_CAP_GUEST_MEMFD_FLAGS)");
		M.gsh = create_gmem(mem, CL_GMEM_MMAP | CL_GMEM_INIT_SHARED);
		M.gpv = create_gmem(mem, CL_GMEM_MMAP);
		M.shared = map_fd(M.gsh, mem);
		M.gpv_map = map_fd(M.gpv, mem); /* never touched: a valid userspace_addr only */
		rebuild(0, M.pages);
	}
}

static void vm_destroy(void)
{
	if (M.run)
		munmap(M.run, (size_t)ioctl(M.kvm, KVM_GET_VCPU_MMAP_SIZE, 0));
	if (M.vcpu > 0)
		close(M.vcpu);
	munmap(M.shared, M.mem);
	if (M.gpv_map)
		munmap(M.gpv_map, M.mem);
	if (M.backend == ATTRIBUTES) {
		close(M.gmem);
		close(M.memfd);
	} else {
		close(M.gsh);
		close(M.gpv);
	}
	close(M.vm);
	close(M.kvm);
	free(M.state);
}

/* A vCPU in 64-bit mode running `code` at CODE_GPA: identity map of [0, 1 GiB) and, with the
 * alias, of [alias, alias + 1 GiB), 2 MiB pages; tables and code in the always-shared low RAM. */
static void vcpu_create(const uint8_t *code, size_t len)
{
	if (M.low < CODE_GPA + 0x1000 || len > 0x1000)
		fail(70, "--low must leave room for the page tables and the code below it");
	uint8_t *m = M.shared;
	memset(m, 0, CODE_GPA + 0x1000);
	map_low_identity(m, 512);
	uint64_t *pml4 = (uint64_t *)(m + PML4_GPA);
	if (M.alias) {
		unsigned i4 = (M.alias >> 39) & 511, i3 = (M.alias >> 30) & 511;
		if (M.alias & ((1ull << 30) - 1) || M.alias >= 1ull << 47)
			fail(64, "--shared-bit must be 30..46");
		if (!pml4[i4])
			pml4[i4] = PDPT2_GPA | 3;
		uint64_t *pdpt2 = (uint64_t *)(m + (pml4[i4] & ~0xfffull));
		pdpt2[i3] = PD2_GPA | 3;
		uint64_t *pd2 = (uint64_t *)(m + PD2_GPA);
		for (int i = 0; i < 512; i++)
			pd2[i] = (M.alias + ((uint64_t)i << 21)) | 0x83;
	}
	memcpy(m + CODE_GPA, code, len);

	M.vcpu = ioctl(M.vm, KVM_CREATE_VCPU, 0);
	if (M.vcpu < 0)
		die(70, "KVM_CREATE_VCPU");
	M.run = vcpu_long_mode(M.kvm, M.vcpu);
}

static void set_regs(uint64_t r8, uint64_t r9, uint64_t r10, uint64_t r11, uint64_t r12)
{
	struct kvm_regs regs = { .rip = CODE_GPA, .rsp = STACK_TOP, .rflags = 2, .r8 = r8, .r9 = r9, .r10 = r10, .r11 = r11, .r12 = r12 };
	if (ioctl(M.vcpu, KVM_SET_REGS, &regs) < 0)
		die(70, "KVM_SET_REGS");
}

static void unexpected_exit(int rc, int err)
{
	fprintf(stderr, "convert-loop: unexpected exit: KVM_RUN %d (%s), exit_reason %u, rip? flags 0x%llx gpa 0x%llx\n", rc,
		rc < 0 ? strerror(err) : "ok", M.run->exit_reason, (unsigned long long)RUN_U64(M.run, 32),
		(unsigned long long)RUN_U64(M.run, 40));
	exit(70);
}

/* Run until hlt; the guest must not exit otherwise. */
static void run_to_hlt(void)
{
	for (;;) {
		int rc = ioctl(M.vcpu, KVM_RUN, 0);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc == 0 && M.run->exit_reason == KVM_EXIT_HLT)
			return;
		unexpected_exit(rc, errno);
	}
}

/* ---- the modes ---- */

static int first_result = 1;
static void result_open(const char *mode, uint64_t size, unsigned n, unsigned warm)
{
	printf("%s{\"mode\":\"%s\",\"size\":%llu,\"n\":%u,\"warm\":%u", first_result ? "" : ",", mode, (unsigned long long)size, n, warm);
	first_result = 0;
}
static void result_counts(unsigned long conversions)
{
	printf(",\"per_conversion\":{\"slot_ioctls\":%.2f,\"attribute_ioctls\":%.2f,\"punches\":%.2f,\"guest_memfds_created\":%.2f}",
	       (double)M.slot_calls / conversions, (double)M.attr_calls / conversions, (double)M.punches / conversions,
	       (double)M.gmem_creates / conversions);
}

static void mode_ioctl(enum backend b, uint64_t mem, uint64_t low, uint64_t gpa, uint64_t size, unsigned n, unsigned warm)
{
	vm_create(b, mem, low, 0);
	vcpu_create(guest_hlt, guest_hlt_end - guest_hlt);
	set_regs(0, 0, 0, 0, 0);
	run_to_hlt();
	unsigned first = (unsigned)(gpa / PAGE), count = (unsigned)(size / PAGE);
	for (unsigned i = 0; i < warm; i++) {
		convert(first, count, 0);
		convert(first, count, 1);
	}
	M.slot_calls = M.attr_calls = M.punches = M.gmem_creates = 0;
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < n; i++) {
		convert(first, count, 0);
		convert(first, count, 1);
	}
	uint64_t t1 = now_ns();
	result_open("ioctl", size, n, warm);
	printf(",\"conversions\":%u,\"ns_per_conversion\":%.1f", 2 * n, (double)(t1 - t0) / (2.0 * n));
	result_counts(2ul * n);
	printf("}");
	vm_destroy();
}

static int is_intel(void)
{
	unsigned a = 0, b = 0, c = 0, d = 0;
	if (!__get_cpuid(0, &a, &b, &c, &d))
		return 0;
	return b == 0x756e6547; /* "Genu" */
}

static void mode_hypercall(enum backend b, uint64_t mem, uint64_t low, uint64_t gpa, uint64_t size, unsigned n, unsigned warm, int touched)
{
	vm_create(b, mem, low, 0);
	struct kvm_enable_cap cap = { .cap = CL_CAP_EXIT_HYPERCALL, .args = { 1ull << CL_HC_MAP_GPA_RANGE } };
	if (ioctl(M.vm, KVM_ENABLE_CAP, &cap) < 0)
		die(70, "KVM_ENABLE_CAP(KVM_CAP_EXIT_HYPERCALL)");
	if (touched && is_intel())
		vcpu_create(guest_vmcall_touch, guest_vmcall_touch_end - guest_vmcall_touch);
	else if (touched)
		vcpu_create(guest_vmmcall_touch, guest_vmmcall_touch_end - guest_vmmcall_touch);
	else if (is_intel())
		vcpu_create(guest_vmcall, guest_vmcall_end - guest_vmcall);
	else
		vcpu_create(guest_vmmcall, guest_vmmcall_end - guest_vmmcall);
	uint64_t hint = size == HUGE ? CL_MAP_GPA_PAGE_SZ_2M : 0;
	set_regs(gpa, size / PAGE, hint, CL_MAP_GPA_ENCRYPTED | hint, warm + n);
	unsigned total = 2 * (warm + n), done = 0;
	uint64_t *at = calloc(total, sizeof *at);
	for (;;) {
		int rc = ioctl(M.vcpu, KVM_RUN, 0);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc == 0 && M.run->exit_reason == CL_EXIT_HYPERCALL && RUN_U64(M.run, 32) == CL_HC_MAP_GPA_RANGE && done < total) {
			uint64_t g = RUN_U64(M.run, 40), pages = RUN_U64(M.run, 48), attrs = RUN_U64(M.run, 56);
			convert((unsigned)(g / PAGE), (unsigned)pages, (attrs & CL_MAP_GPA_ENCRYPTED) != 0);
			RUN_U64(M.run, 88) = 0;
			at[done++] = now_ns();
			if (done == 2 * warm)
				M.slot_calls = M.attr_calls = M.punches = M.gmem_creates = 0;
			continue;
		}
		if (rc == 0 && M.run->exit_reason == KVM_EXIT_HLT)
			break;
		unexpected_exit(rc, errno);
	}
	if (done != total)
		fail(70, "the guest made fewer hypercalls than asked");
	/* the timed conversions: the last 2n; their completions span 2n - 1 intervals */
	uint64_t span = at[total - 1] - at[total - 2 * n];
	result_open(touched ? "touched" : "hypercall", size, n, warm);
	printf(",\"conversions\":%u,\"ns_per_conversion\":%.1f,\"method\":\"%s\"", 2 * n, (double)span / (2.0 * n - 1),
	       is_intel() ? "vmcall" : "vmmcall");
	result_counts(2ul * n);
	printf("}");
	free(at);
	vm_destroy();
}

/* ---- smp: several vCPU threads converting at once ---- */

#define MAX_VCPUS 8
static struct {
	pthread_mutex_t lock;     /* the run state below */
	pthread_cond_t changed;
	pthread_mutex_t convert;  /* one conversion at a time */
	int pausing, in_run[MAX_VCPUS], vcpus, quiesce;
	int fd[MAX_VCPUS];
	struct kvm_run *run[MAX_VCPUS];
	pthread_t thread[MAX_VCPUS];
	uint64_t *at;
	unsigned done, total;
} S = { .lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER, .convert = PTHREAD_MUTEX_INITIALIZER };

static void kick_handler(int sig) { (void)sig; }

/* Stop every vCPU but `self` outside KVM_RUN (the memslots backend re-lays slots). */
static void quiesce_others(int self)
{
	pthread_mutex_lock(&S.lock);
	S.pausing = 1;
	for (int j = 0; j < S.vcpus; j++)
		if (j != self && S.in_run[j]) {
			__atomic_store_n(&S.run[j]->immediate_exit, 1, __ATOMIC_SEQ_CST);
			pthread_kill(S.thread[j], SIGUSR1);
		}
	for (;;) {
		int running = 0;
		for (int j = 0; j < S.vcpus; j++)
			running |= j != self && S.in_run[j];
		if (!running)
			break;
		pthread_cond_wait(&S.changed, &S.lock);
	}
	pthread_mutex_unlock(&S.lock);
}

static void release_others(void)
{
	pthread_mutex_lock(&S.lock);
	S.pausing = 0;
	pthread_cond_broadcast(&S.changed);
	pthread_mutex_unlock(&S.lock);
}

static void *smp_vcpu(void *arg)
{
	int i = (int)(intptr_t)arg;
	struct kvm_run *run = S.run[i];
	for (;;) {
		pthread_mutex_lock(&S.lock);
		while (S.pausing)
			pthread_cond_wait(&S.changed, &S.lock);
		S.in_run[i] = 1;
		pthread_mutex_unlock(&S.lock);
		int rc = ioctl(S.fd[i], KVM_RUN, 0);
		int err = errno;
		pthread_mutex_lock(&S.lock);
		S.in_run[i] = 0;
		__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		pthread_cond_broadcast(&S.changed);
		pthread_mutex_unlock(&S.lock);
		if (rc < 0 && err == EINTR)
			continue;
		if (rc == 0 && run->exit_reason == CL_EXIT_HYPERCALL && RUN_U64(run, 32) == CL_HC_MAP_GPA_RANGE) {
			uint64_t g = RUN_U64(run, 40), pages = RUN_U64(run, 48), attrs = RUN_U64(run, 56);
			pthread_mutex_lock(&S.convert);
			if (S.quiesce)
				quiesce_others(i);
			convert((unsigned)(g / PAGE), (unsigned)pages, (attrs & CL_MAP_GPA_ENCRYPTED) != 0);
			if (S.quiesce)
				release_others();
			if (S.done < S.total)
				S.at[S.done++] = now_ns();
			pthread_mutex_unlock(&S.convert);
			RUN_U64(run, 88) = 0;
			continue;
		}
		if (rc == 0 && run->exit_reason == KVM_EXIT_HLT)
			return NULL;
		fprintf(stderr, "convert-loop: smp vCPU %d: KVM_RUN %d (%s), exit_reason %u\n", i, rc, rc < 0 ? strerror(err) : "ok", run->exit_reason);
		exit(70);
	}
}

static void mode_smp(enum backend b, uint64_t mem, uint64_t low, uint64_t gpa, int vcpus, unsigned n, unsigned warm)
{
	if (vcpus < 2 || vcpus > MAX_VCPUS)
		fail(64, "--vcpus must be 2 to 8");
	vm_create(b, mem, low, 0);
	struct kvm_enable_cap cap = { .cap = CL_CAP_EXIT_HYPERCALL, .args = { 1ull << CL_HC_MAP_GPA_RANGE } };
	if (ioctl(M.vm, KVM_ENABLE_CAP, &cap) < 0)
		die(70, "KVM_ENABLE_CAP(KVM_CAP_EXIT_HYPERCALL)");
	const uint8_t *code = is_intel() ? guest_vmcall : guest_vmmcall;
	size_t len = is_intel() ? (size_t)(guest_vmcall_end - guest_vmcall) : (size_t)(guest_vmmcall_end - guest_vmmcall);
	vcpu_create(code, len);
	S.vcpus = vcpus;
	S.quiesce = b == MEMSLOTS;
	S.fd[0] = M.vcpu;
	S.run[0] = M.run;
	for (int i = 1; i < vcpus; i++) {
		S.fd[i] = ioctl(M.vm, KVM_CREATE_VCPU, i);
		if (S.fd[i] < 0)
			die(70, "KVM_CREATE_VCPU");
		S.run[i] = vcpu_long_mode(M.kvm, S.fd[i]);
	}
	for (int i = 0; i < vcpus; i++) {
		uint64_t mine = gpa + 2 * PAGE * (uint64_t)i;
		struct kvm_regs regs = { .rip = CODE_GPA, .rsp = STACK_TOP, .rflags = 2, .r8 = mine, .r9 = 1, .r10 = 0, .r11 = CL_MAP_GPA_ENCRYPTED, .r12 = warm + n };
		if (ioctl(S.fd[i], KVM_SET_REGS, &regs) < 0)
			die(70, "KVM_SET_REGS");
	}
	struct sigaction sa = { .sa_handler = kick_handler };  /* no SA_RESTART: KVM_RUN returns EINTR */
	sigaction(SIGUSR1, &sa, NULL);
	S.total = 2 * (warm + n) * (unsigned)vcpus;
	S.done = 0;
	S.at = calloc(S.total, sizeof *S.at);
	for (int i = 0; i < vcpus; i++)
		if (pthread_create(&S.thread[i], NULL, smp_vcpu, (void *)(intptr_t)i))
			fail(70, "pthread_create");
	for (int i = 0; i < vcpus; i++)
		pthread_join(S.thread[i], NULL);
	if (S.done != S.total)
		fail(70, "the guests made fewer hypercalls than asked");
	unsigned timed = 2 * n * (unsigned)vcpus;
	uint64_t span = S.at[S.total - 1] - S.at[S.total - timed];
	result_open("smp", PAGE, n, warm);
	printf(",\"vcpus\":%d,\"conversions\":%u,\"ns_per_conversion\":%.1f", vcpus, timed, (double)span / (timed - 1.0));
	printf("}");
	free(S.at);
	for (int i = 1; i < vcpus; i++)
		close(S.fd[i]);
	vm_destroy();
}

static void mode_implicit(uint64_t mem, uint64_t low, uint64_t gpa, int shared_bit, unsigned n, unsigned warm)
{
	vm_create(MEMSLOTS, mem, low, shared_bit);
	vcpu_create(guest_touch, guest_touch_end - guest_touch);
	unsigned total = warm + n, k = 0;
	if (gpa + (uint64_t)total * PAGE >= mem)
		fail(64, "--gpa + pages reaches the end of RAM");
	set_regs(gpa | M.alias, total, 0, 0, 0);
	uint64_t *exit_at = calloc(total, sizeof *exit_at), *entry_at = calloc(total, sizeof *entry_at);
	for (;;) {
		int rc = ioctl(M.vcpu, KVM_RUN, 0);
		uint64_t t = now_ns();
		int err = errno;
		if (rc < 0 && err == EINTR)
			continue;
		if (rc < 0 && err == EFAULT && M.run->exit_reason == CL_EXIT_MEMORY_FAULT && k < total) {
			uint64_t flags = RUN_U64(M.run, 32), g = RUN_U64(M.run, 40), sz = RUN_U64(M.run, 48);
			uint64_t page = (g & ~M.alias) / PAGE;
			if (flags != 0 || !(g & M.alias) || sz != PAGE || page != gpa / PAGE + k || !M.state[page])
				unexpected_exit(rc, err);
			convert((unsigned)page, 1, 0);
			exit_at[k] = t;
			entry_at[k] = now_ns();
			if (++k == warm)
				M.slot_calls = M.attr_calls = M.punches = M.gmem_creates = 0;
			continue;
		}
		if (rc == 0 && M.run->exit_reason == KVM_EXIT_HLT)
			break;
		unexpected_exit(rc, err);
	}
	if (k != total)
		fail(70, "fewer memory faults than touched pages");
	uint64_t *cycle = calloc(n, sizeof *cycle), *handling = calloc(n, sizeof *handling);
	uint64_t sum = 0;
	for (unsigned i = 0; i < n - 1; i++) {
		cycle[i] = exit_at[warm + i + 1] - exit_at[warm + i];
		sum += cycle[i];
	}
	for (unsigned i = 0; i < n; i++)
		handling[i] = entry_at[warm + i] - exit_at[warm + i];
	uint64_t cmed = median_u64(cycle, n - 1), hmed = median_u64(handling, n);
	result_open("implicit", PAGE, n, warm);
	printf(",\"conversions\":%u,\"cycle_median_ns\":%llu,\"cycle_mean_ns\":%.1f,\"cycle_min_ns\":%llu,\"handling_median_ns\":%llu,\"handling_min_ns\":%llu",
	       n, (unsigned long long)cmed, (double)sum / (n - 1), (unsigned long long)cycle[0], (unsigned long long)hmed,
	       (unsigned long long)handling[0]);
	result_counts(n);
	printf("}");
	free(exit_at);
	free(entry_at);
	free(cycle);
	free(handling);
	vm_destroy();
}

int main(int argc, char **argv)
{
	const char *backend = NULL, *modes = "ioctl,hypercall", *sizes = "4096,2097152";
	unsigned long n = 100, warm = 10;
	uint64_t mem = 64ull << 20, low = 0x200000, gpa = 0x600000;
	int shared_bit = 0, vcpus = 2;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			fail(64, "usage: convert-loop --backend attributes|memslots [--modes ioctl,hypercall,touched,smp,implicit] [--vcpus V] [--sizes 4096,2097152] [--n N] [--warm W] [--mem B] [--low GPA] [--gpa GPA] [--shared-bit B]");
		i++;
		if (!strcmp(a, "--backend"))
			backend = v;
		else if (!strcmp(a, "--modes"))
			modes = v;
		else if (!strcmp(a, "--sizes"))
			sizes = v;
		else if (!strcmp(a, "--n"))
			n = strtoul(v, NULL, 0);
		else if (!strcmp(a, "--warm"))
			warm = strtoul(v, NULL, 0);
		else if (!strcmp(a, "--mem"))
			mem = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--low"))
			low = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--gpa"))
			gpa = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--shared-bit"))
			shared_bit = atoi(v);
		else if (!strcmp(a, "--vcpus"))
			vcpus = atoi(v);
		else
			fail(64, "unknown option (see the comment at the top of convert-loop.c)");
	}
	enum backend b;
	if (backend && !strcmp(backend, "attributes"))
		b = ATTRIBUTES;
	else if (backend && !strcmp(backend, "memslots"))
		b = MEMSLOTS;
	else
		fail(64, "--backend attributes|memslots");
	if (n < 2 || n > 1000000 || warm > 1000000 || mem % HUGE || low % PAGE || gpa % PAGE || low >= gpa || gpa >= mem ||
	    mem > (1ull << 30))
		fail(64, "bad --n/--warm/--mem/--low/--gpa (page aligned, low < gpa < mem <= 1 GiB, mem 2 MiB aligned)");

	printf("{\"backend\":\"%s\",\"mem\":%llu,\"low\":%llu,\"gpa\":%llu,\"shared_bit\":%d,\"results\":[", backend,
	       (unsigned long long)mem, (unsigned long long)low, (unsigned long long)gpa, shared_bit);
	fflush(stdout);
	char list[256];
	snprintf(list, sizeof list, "%s", modes);
	for (char *save = NULL, *m = strtok_r(list, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
		if (!strcmp(m, "implicit")) {
			if (b != MEMSLOTS || !shared_bit)
				fail(64, "implicit needs --backend memslots and --shared-bit");
			mode_implicit(mem, low, gpa, shared_bit, (unsigned)n, (unsigned)warm);
			continue;
		}
		if (!strcmp(m, "smp")) {
			mode_smp(b, mem, low, gpa, vcpus, (unsigned)n, (unsigned)warm);
			continue;
		}
		int ioctl_mode = !strcmp(m, "ioctl"), touched = !strcmp(m, "touched");
		if (!ioctl_mode && !touched && strcmp(m, "hypercall"))
			fail(64, "--modes takes ioctl, hypercall, touched, smp, implicit");
		char slist[64];
		snprintf(slist, sizeof slist, "%s", sizes);
		for (char *s2 = NULL, *s = strtok_r(slist, ",", &s2); s; s = strtok_r(NULL, ",", &s2)) {
			uint64_t size = strtoull(s, NULL, 0);
			if (!size || size % PAGE || gpa + size >= mem)
				fail(64, "bad --sizes (page multiples, the range inside RAM with a page after it)");
			if (ioctl_mode)
				mode_ioctl(b, mem, low, gpa, size, (unsigned)n, (unsigned)warm);
			else
				mode_hypercall(b, mem, low, gpa, size, (unsigned)n, (unsigned)warm, touched);
			fflush(stdout);
		}
	}
	printf("]}\n");
	return 0;
}
