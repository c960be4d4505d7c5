/*
 * tsvmm's multiboot (v1) test kernel: what a kvm-unit-tests binary needs from a VMM, checked
 * from inside. It reads the multiboot information block (magic, memory map, command line,
 * modules), the CPU count and RAM size from QEMU's fw_cfg, brings up the other vCPUs with
 * INIT/SIPI through the local APIC, takes timer (PIT, IRQ 0) and UART (IRQ 4) interrupts through
 * the in-kernel PIC, and reports TAP lines on COM1 (one `out` per byte). It exits through the
 * debug-exit port with the number of failed checks (0 = pass).
 */
#include <stdint.h>
#include <tsvmm/abi.h>
#include <tsvmm/arch.h>

#define MB_BOOTLOADER_MAGIC 0x2badb002
#define MBI_MEMORY  (1u << 0)
#define MBI_CMDLINE (1u << 2)
#define MBI_MODS    (1u << 3)
#define MBI_MMAP    (1u << 6)

struct mb_info {
	uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length, mmap_addr;
	uint32_t drives_length, drives_addr, config_table, boot_loader_name;
};
struct mb_mmap_entry {
	uint32_t size;
	uint64_t base, length;
	uint32_t type;
} __attribute__((packed));
struct mb_module {
	uint32_t start, end, string, reserved;
};

#define FW_CFG_SELECTOR 0x510
#define FW_CFG_DATA     0x511
#define FW_CFG_SIGNATURE 0x00
#define FW_CFG_RAM_SIZE  0x03
#define FW_CFG_NB_CPUS   0x05

#define APIC_BASE_MSR 0x1b
#define APIC_ID   0x20
#define APIC_SVR  0xf0
#define APIC_EOI  0xb0
#define APIC_ICR_LO 0x300
#define APIC_ICR_HI 0x310
#define ICR_INIT 0x00000500
#define ICR_STARTUP 0x00000600
#define ICR_ASSERT 0x00004000
#define ICR_ALL_BUT_SELF 0x000c0000
#define ICR_PENDING 0x00001000
#define TRAMPOLINE_GPA 0x8000

#define PIC1_CMD 0x20
#define PIC1_DATA 0x21
#define PIC_EOI 0x20
#define IRQ_BASE 0x20
#define PIT_CH0 0x40
#define PIT_MODE 0x43

extern char trampoline_start[], trampoline_end[];

static tsvmm_spinlock_t print_lock = TSVMM_SPINLOCK_INIT;
static int test_number, failures;

static void putc_com1(char c)
{
	while (!(tsvmm_inb(TSVMM_CONSOLE_PORT + 5) & 0x20))
		tsvmm_pause();
	tsvmm_outb(TSVMM_CONSOLE_PORT, (uint8_t)c);
}
static void puts_(const char *s)
{
	for (; *s; s++) {
		if (*s == '\n')
			putc_com1('\r');
		putc_com1(*s);
	}
}
/* Decimal or hex; 64-bit values only in hex (no 64-bit division in a 32-bit kernel without libgcc). */
static void putu(uint64_t v, int base)
{
	char buf[24];
	int i = 0;
	do {
		if (base == 16) {
			buf[i++] = "0123456789abcdef"[v & 15];
			v >>= 4;
		} else {
			buf[i++] = '0' + (uint32_t)v % 10;
			v = (uint32_t)v / 10;
		}
	} while (v);
	if (base == 16)
		puts_("0x");
	while (i)
		putc_com1(buf[--i]);
}
static void check(int ok, const char *what)
{
	test_number++;
	if (!ok)
		failures++;
	puts_(ok ? "ok " : "not ok ");
	putu(test_number, 10);
	puts_(" - ");
	puts_(what);
	puts_("\n");
}
static void memcopy(void *dst, const void *src, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		((volatile char *)dst)[i] = ((const char *)src)[i];
}
static int prefix(const char *s, const char *p)
{
	while (*p)
		if (*s++ != *p++)
			return 0;
	return 1;
}

static void fw_cfg_read(uint16_t key, void *buf, uint32_t len)
{
	__asm__ volatile("outw %0, %1" : : "a"(key), "Nd"((uint16_t)FW_CFG_SELECTOR));
	for (uint32_t i = 0; i < len; i++)
		((uint8_t *)buf)[i] = tsvmm_inb(FW_CFG_DATA);
}

static volatile uint32_t *apic;
static uint32_t apic_read(uint32_t reg) { return apic[reg / 4]; }
static void apic_write(uint32_t reg, uint32_t v) { apic[reg / 4] = v; }
static uint32_t cpuid_apic_id(void)
{
	uint32_t a, b, c, d;
	tsvmm_cpuid(1, 0, &a, &b, &c, &d);
	return b >> 24;
}

/* ---- the application processors ---- */
static volatile uint32_t aps_up;
static volatile uint32_t apic_id_seen[TSVMM_MAX_CPUS];

void ap_main(void)
{
	uint32_t id = apic_read(APIC_ID) >> 24;
	uint32_t from_cpuid = cpuid_apic_id();
	tsvmm_spin_lock(&print_lock);
	puts_("# AP up: local APIC id ");
	putu(id, 10);
	puts_(", CPUID.1 APIC id ");
	putu(from_cpuid, 10);
	puts_("\n");
	tsvmm_spin_unlock(&print_lock);
	if (id < TSVMM_MAX_CPUS)
		apic_id_seen[id] = 1 + (from_cpuid == id);
	__atomic_add_fetch(&aps_up, 1, __ATOMIC_SEQ_CST);
	for (;;) {
		tsvmm_cli();
		tsvmm_hlt();
	}
}

static void delay(uint32_t loops)
{
	for (volatile uint32_t i = 0; i < loops; i++)
		tsvmm_pause();
}

static void start_aps(uint32_t cpus)
{
	memcopy((void *)TRAMPOLINE_GPA, trampoline_start, trampoline_end - trampoline_start);
	apic_write(APIC_SVR, apic_read(APIC_SVR) | 0x100 | 0xff);
	apic_write(APIC_ICR_HI, 0);
	apic_write(APIC_ICR_LO, ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_INIT);
	while (apic_read(APIC_ICR_LO) & ICR_PENDING)
		tsvmm_pause();
	delay(1000);
	for (int i = 0; i < 2 && aps_up < cpus - 1; i++) {
		apic_write(APIC_ICR_LO, ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_STARTUP | (TRAMPOLINE_GPA >> 12));
		while (apic_read(APIC_ICR_LO) & ICR_PENDING)
			tsvmm_pause();
		delay(1000);
	}
	/* Each AP runs a few thousand (emulated) instructions: wait long enough for slow hosts. */
	for (uint32_t spins = 0; aps_up < cpus - 1 && spins < 200000000u; spins++)
		tsvmm_pause();
}

/* ---- interrupts: a minimal 32-bit IDT for the PIT (IRQ 0) and the UART (IRQ 4) ---- */
static volatile uint32_t ticks, uart_irqs;
struct idt_gate {
	uint16_t offset_lo, selector;
	uint8_t zero, type;
	uint16_t offset_hi;
} __attribute__((packed));
static struct idt_gate idt[IRQ_BASE + 16];

extern void irq0_stub(void), irq4_stub(void);

void timer_interrupt(void)
{
	ticks++;
	tsvmm_outb(PIC1_CMD, PIC_EOI);
}
void uart_interrupt(void)
{
	uint8_t iir = tsvmm_inb(TSVMM_CONSOLE_PORT + 2);
	if ((iir & 0x0f) == 0x02) {
		uart_irqs++;
		tsvmm_outb(TSVMM_CONSOLE_PORT + 1, 0); /* THRE seen: transmit interrupts off again */
	}
	tsvmm_outb(PIC1_CMD, PIC_EOI);
}
static void set_gate(int vector, void (*handler)(void))
{
	uint32_t a = (uint32_t)handler;
	idt[vector] = (struct idt_gate){ (uint16_t)a, 0x08, 0, 0x8e, (uint16_t)(a >> 16) };
}

static void test_interrupts(void)
{
	struct { uint16_t limit; uint32_t base; } __attribute__((packed)) idtr = { sizeof idt - 1, (uint32_t)idt };
	set_gate(IRQ_BASE + 0, irq0_stub);
	set_gate(IRQ_BASE + 4, irq4_stub);
	__asm__ volatile("lidt %0" : : "m"(idtr));
	/* 8259A: edge triggered, cascade, vectors from IRQ_BASE, 8086 mode; only IRQ 0 and 4 */
	tsvmm_outb(PIC1_CMD, 0x11);
	tsvmm_outb(PIC1_DATA, IRQ_BASE);
	tsvmm_outb(PIC1_DATA, 0x04);
	tsvmm_outb(PIC1_DATA, 0x01);
	tsvmm_outb(PIC1_DATA, 0xee);
	/* PIT channel 0, rate generator, 1193182 / 11932 = 100 Hz */
	tsvmm_outb(PIT_MODE, 0x34);
	tsvmm_outb(PIT_CH0, 11932 & 0xff);
	tsvmm_outb(PIT_CH0, 11932 >> 8);
	for (int i = 0; i < 1000 && ticks < 3; i++)
		__asm__ volatile("sti; hlt; cli" ::: "memory");
	check(ticks >= 3, "the PIT's IRQ 0 woke a halted vCPU three times (in-kernel PIC and PIT)");
	/* The UART: MCR OUT2 routes its interrupt to IRQ 4; enabling THRI raises it at once. */
	tsvmm_outb(TSVMM_CONSOLE_PORT + 4, 0x0b);
	tsvmm_outb(TSVMM_CONSOLE_PORT + 1, 0x02);
	for (int i = 0; i < 1000 && !uart_irqs; i++)
		__asm__ volatile("sti; hlt; cli" ::: "memory");
	check(uart_irqs == 1, "the 16550 raised IRQ 4 for transmitter-empty (KVM_IRQ_LINE)");
	tsvmm_outb(PIC1_DATA, 0xff);
}

void mb_main(uint32_t magic, const struct mb_info *mbi)
{
	puts_("tsvmm multiboot test kernel\n");
	check(magic == MB_BOOTLOADER_MAGIC, "EAX holds the multiboot boot loader magic 0x2badb002");
	check((mbi->flags & (MBI_MEMORY | MBI_MMAP)) == (MBI_MEMORY | MBI_MMAP), "the info block has mem_lower/mem_upper and a memory map");

	char signature[5] = { 0 };
	fw_cfg_read(FW_CFG_SIGNATURE, signature, 4);
	check(prefix(signature, "QEMU"), "fw_cfg at 0x510 answers with the QEMU signature");
	uint16_t cpus = 0;
	uint64_t ram_size = 0;
	fw_cfg_read(FW_CFG_NB_CPUS, &cpus, 2);
	fw_cfg_read(FW_CFG_RAM_SIZE, &ram_size, 8);
	puts_("# fw_cfg: ");
	putu(cpus, 10);
	puts_(" CPUs, RAM ");
	putu(ram_size, 16);
	puts_("\n");

	puts_("# mem_lower ");
	putu(mbi->mem_lower, 10);
	puts_(" KiB, mem_upper ");
	putu(mbi->mem_upper, 10);
	puts_(" KiB\n");
	uint64_t mapped = 0, upper_end = 0;
	for (uint32_t at = mbi->mmap_addr; at < mbi->mmap_addr + mbi->mmap_length;) {
		const struct mb_mmap_entry *e = (const void *)at;
		puts_("# mmap ");
		putu(e->base, 16);
		puts_("-");
		putu(e->base + e->length, 16);
		puts_(e->type == 1 ? " RAM\n" : " reserved\n");
		mapped += e->length;
		if (e->base == 0x100000 && e->type == 1)
			upper_end = e->base + e->length;
		at += e->size + 4;
	}
	check(mapped == ram_size, "the memory map covers exactly the RAM fw_cfg reports");
	check(upper_end && mbi->mem_upper == (upper_end - 0x100000) >> 10, "mem_upper ends where the map's RAM at 1 MiB ends");
	check(mbi->mem_lower == 640, "mem_lower is 640 KiB");

	if (mbi->flags & MBI_CMDLINE) {
		puts_("# cmdline: ");
		puts_((const char *)mbi->cmdline);
		puts_("\n");
	}
	if (mbi->flags & MBI_MODS) {
		const struct mb_module *m = (const void *)mbi->mods_addr;
		for (uint32_t i = 0; i < mbi->mods_count; i++) {
			puts_("# module ");
			putu(i, 10);
			puts_(": ");
			putu(m[i].end - m[i].start, 10);
			puts_(" bytes at ");
			putu(m[i].start, 16);
			puts_(", \"");
			puts_((const char *)m[i].string);
			puts_("\"\n");
		}
	}

	apic = (volatile uint32_t *)(uint32_t)(tsvmm_rdmsr(APIC_BASE_MSR) & 0xfffff000u);
	uint32_t bsp_id = apic_read(APIC_ID) >> 24;
	check(bsp_id == 0 && cpuid_apic_id() == 0, "the boot vCPU has local APIC id 0, in the APIC and in CPUID");
	if (cpus > 1) {
		start_aps(cpus);
		tsvmm_spin_lock(&print_lock);
		puts_("# ");
		putu(aps_up, 10);
		puts_(" of ");
		putu(cpus - 1, 10);
		puts_(" APs came up\n");
		tsvmm_spin_unlock(&print_lock);
		int distinct = 1;
		for (uint32_t id = 1; id < cpus; id++)
			distinct &= apic_id_seen[id] == 2;
		check(aps_up == cpus - 1u, "INIT/SIPI brought up every other vCPU from fw_cfg's count");
		check(distinct, "each AP has its own local APIC id 1..n-1, matching its CPUID");
	}
	test_interrupts();

	tsvmm_spin_lock(&print_lock);
	puts_("1..");
	putu(test_number, 10);
	puts_("\n");
	puts_(failures ? "multiboot: FAIL\n" : "multiboot: PASS\n");
	tsvmm_outl(TSVMM_EXIT_PORT, failures);
}
