/*
 * exits: the scenarios of the kernel's private_mem_kvm_exits_test. The VMM makes a one-page test
 * slot outside RAM, the guest uses it, then asks for it to be broken (exit=delete|no-gmem|release;
 * default: delete on the attributes backend, release on memslots) and keeps reading it. The access
 * after the break is a KVM_EXIT_MEMORY_FAULT; with --on-fault convert the VMM re-makes the slot
 * with a new guest_memfd, the access is retried and reads zero. With deny/stop the VM ends there.
 */
#include <tsvmm/tsvmm.h>

TSVMM_GUEST_DESCRIPTION("private_mem_kvm_exits_test as a guest: a test slot deleted, without guest_memfd or released gives KVM_EXIT_MEMORY_FAULT (exit=delete|no-gmem|release)");
TSVMM_GUEST_WANTS_PRIVATE();

#define PATTERN 0x5a5a5a5a5a5a5a5aULL
#define SPINS 200000000ULL

static int slot_request(uint32_t op, uint8_t how)
{
	static struct tsvmm_host_request req;
	memset(&req, 0, sizeof(req));
	req.op = op;
	req.gpa = TSVMM_TEST_SLOT_GPA;
	req.size = 4096;
	req.expect = how;
	return tsvmm_host_request(&req);
}

int tsvmm_main(const struct tsvmm_boot_info *boot, uint32_t cpu)
{
	volatile uint64_t *page = (volatile uint64_t *)(uintptr_t)TSVMM_TEST_SLOT_GPA;
	char which[16] = "";
	uint8_t how;
	uint64_t spins = 0, seen = PATTERN;

	if (cpu != 0)
		tsvmm_halt();
	const char *name = which;

	if (tsvmm_cmdline_get("exit", which, sizeof(which)) < 0 || !which[0])
		name = boot->backend == TSVMM_BACKEND_ATTRIBUTES ? "delete" : "release";
	how = !strcmp(name, "delete") ? TSVMM_BREAK_DELETE : !strcmp(name, "no-gmem") ? TSVMM_BREAK_NO_GMEM
		: !strcmp(name, "release") ? TSVMM_BREAK_RELEASE : 0;

	tap_plan(4);
	tap_ok(how != 0, "scenario exit=%s is known", name);
	tap_ok(slot_request(TSVMM_HOST_TEST_SLOT_CREATE, 0) == 0, "the VMM made a test slot at 0x%llx", TSVMM_TEST_SLOT_GPA);
	*page = PATTERN;
	tap_ok(*page == PATTERN, "the test slot holds what the guest wrote (%s backend)", tsvmm_backend_name(boot->backend));
	tsvmm_printf("# exits: breaking the test slot (exit=%s), then reading 0x%llx until it changes\n", name, TSVMM_TEST_SLOT_GPA);
	if (slot_request(TSVMM_HOST_TEST_SLOT_BREAK, how) != 0) {
		tap_ok(0, "the VMM refused exit=%s on this backend", name);
		return tap_status();
	}
	while (spins < SPINS && (seen = *page) == PATTERN)
		spins++;
	tap_ok(seen == 0, "after the memory fault the slot was re-made: the page reads zero (read 0x%llx after %llu spins)",
	       (unsigned long long)seen, (unsigned long long)spins);
	return tap_status();
}
