/*
 * tsvmm firmware, 64-bit part: boot-information checks, the call into the guest, and the
 * exception reporter behind the IDT. Freestanding, no runtime library: just enough to print.
 */
#include <stdint.h>
#include <tsvmm/abi.h>
#include <tsvmm/arch.h>

#define MSR_GS_BASE 0xc0000101
#define LSR_THRE    0x20

/* One per vCPU, 64 bytes (entry.S computes the address with a shift by 6) */
struct fw_percpu {
	uint32_t cpu;
	uint32_t reserved;
	uint64_t self;
	uint64_t pad[6];
};
_Static_assert(sizeof(struct fw_percpu) == 64, "fw_percpu is 64 bytes");
extern struct fw_percpu fw_percpu[TSVMM_MAX_CPUS];

struct fw_frame {
	uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

void fw_main(const struct tsvmm_boot_info *boot, uint32_t cpu) __attribute__((noreturn));
void fw_exception(const struct fw_frame *frame) __attribute__((noreturn));

static uint16_t console_port = TSVMM_CONSOLE_PORT;
static uint16_t exit_port = TSVMM_EXIT_PORT;
static volatile uint32_t console_lock;

static void put_byte(char c)
{
	/* like a 16550 driver: wait (bounded) for THR empty, then one `out` */
	for (unsigned tries = 0; tries < 100000 && !(tsvmm_inb(console_port + 5) & LSR_THRE); tries++)
		__asm__ volatile("pause");
	tsvmm_outb(console_port, (uint8_t)c);
}

static void put_str(const char *s)
{
	for (; *s; s++) {
		if (*s == '\n')
			put_byte('\r');
		put_byte(*s);
	}
}

static void put_hex(uint64_t v)
{
	char buf[19];
	int i = sizeof(buf);
	buf[--i] = 0;
	do {
		buf[--i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	buf[--i] = 'x';
	buf[--i] = '0';
	put_str(&buf[i]);
}

static void put_dec(uint64_t v)
{
	char buf[21];
	int i = sizeof(buf);
	buf[--i] = 0;
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put_str(&buf[i]);
}

/* Bounded, so a vCPU that dies holding it cannot silence the others for good. */
static void lock_console(void)
{
	for (unsigned tries = 0; tries < 1000000; tries++) {
		if (!__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE))
			return;
		__asm__ volatile("pause");
	}
}

static void unlock_console(void) { __atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE); }

static void __attribute__((noreturn)) fw_exit(uint32_t status)
{
	tsvmm_outl(exit_port, status);
	for (;;)
		__asm__ volatile("cli; hlt");
}

void fw_main(const struct tsvmm_boot_info *boot, uint32_t cpu)
{
	if (boot->magic != TSVMM_BOOT_MAGIC || boot->version != TSVMM_BOOT_VERSION) {
		lock_console();
		put_str("tsvmm-firmware: bad boot-information page at ");
		put_hex((uint64_t)(uintptr_t)boot);
		put_str(": magic=");
		put_hex(boot->magic);
		put_str(" version=");
		put_dec(boot->version);
		put_str(" (expected magic=");
		put_hex(TSVMM_BOOT_MAGIC);
		put_str(" \"TSVMMBI1\" version=");
		put_dec(TSVMM_BOOT_VERSION);
		put_str(") cpu=");
		put_dec(cpu);
		put_str("\n");
		unlock_console();
		fw_exit(TSVMM_STATUS_INTERNAL);
	}
	if (boot->console_port)
		console_port = boot->console_port;
	if (boot->exit_port)
		exit_port = boot->exit_port;
	if (cpu >= TSVMM_MAX_CPUS || cpu >= boot->cpu_count || !boot->guest_entry) {
		lock_console();
		put_str("tsvmm-firmware: cannot start vCPU ");
		put_dec(cpu);
		put_str(": boot info says cpu_count=");
		put_dec(boot->cpu_count);
		put_str(" (firmware limit ");
		put_dec(TSVMM_MAX_CPUS);
		put_str(") guest_entry=");
		put_hex(boot->guest_entry);
		put_str("\n");
		unlock_console();
		fw_exit(TSVMM_STATUS_INTERNAL);
	}

	int (*entry)(const struct tsvmm_boot_info *, uint32_t) =
		(int (*)(const struct tsvmm_boot_info *, uint32_t))(uintptr_t)boot->guest_entry;
	int status = entry(boot, cpu);
	fw_exit((uint32_t)status);
}

static const char *const exception_names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
	"#DF", "CSO", "#TS", "#NP", "#SS", "#GP", "#PF", "reserved",
	"#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "reserved", "reserved",
	"reserved", "reserved", "reserved", "reserved", "#HV", "#VC", "#SX", "reserved",
};

void fw_exception(const struct fw_frame *frame)
{
	uint64_t cr2;
	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	/* the vCPU index lives in the per-CPU block IA32_GS_BASE points at (entry.S) */
	uint64_t gs = tsvmm_rdmsr(MSR_GS_BASE);
	uint64_t first = (uint64_t)(uintptr_t)&fw_percpu[0];
	int64_t cpu = -1;
	if (gs >= first && gs < first + sizeof(fw_percpu[0]) * TSVMM_MAX_CPUS && (gs - first) % sizeof(fw_percpu[0]) == 0)
		cpu = ((const struct fw_percpu *)(uintptr_t)gs)->cpu;

	lock_console();
	put_str("tsvmm-firmware: exception ");
	put_dec(frame->vector);
	put_str(" (");
	put_str(frame->vector < 32 ? exception_names[frame->vector] : "?");
	put_str(") error=");
	put_hex(frame->error);
	put_str(" rip=");
	put_hex(frame->rip);
	put_str(" cr2=");
	put_hex(cr2);
	put_str(" cpu=");
	if (cpu < 0)
		put_str("?");
	else
		put_dec((uint64_t)cpu);
	put_str("\n");
	unlock_console();
	fw_exit(TSVMM_STATUS_GUEST_EXCEPTION);
}
