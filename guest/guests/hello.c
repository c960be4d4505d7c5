/* hello: the boot banner, the boot-information facts and the RAM map, then a few TAP checks. */
#include <tsvmm/tsvmm.h>

TSVMM_GUEST_DESCRIPTION("prints the boot banner, boot-info facts and RAM map; TAP-checks the boot page");

static void print_size(uint64_t bytes)
{
	if (bytes >= (1ULL << 30) && !(bytes & ((1ULL << 30) - 1)))
		tsvmm_printf("%llu GiB", (unsigned long long)(bytes >> 30));
	else if (bytes >= (1ULL << 20) && !(bytes & ((1ULL << 20) - 1)))
		tsvmm_printf("%llu MiB", (unsigned long long)(bytes >> 20));
	else
		tsvmm_printf("%llu KiB", (unsigned long long)(bytes >> 10));
}

int tsvmm_main(const struct tsvmm_boot_info *boot, uint32_t cpu)
{
	if (cpu != 0)
		tsvmm_halt();

	tsvmm_printf("tsvmm hello: booted on vCPU %u of %u\n", cpu, boot->cpu_count);
	tsvmm_printf("backend: %s (%u)\n", tsvmm_backend_name(boot->backend), boot->backend);
	if (boot->shared_bit)
		tsvmm_printf("shared bit: %u (shared view = gpa | 0x%llx)\n", boot->shared_bit,
			     1ULL << boot->shared_bit);
	else
		tsvmm_printf("shared bit: none\n");
	tsvmm_printf("conversion: %s (port 0x%x)\n", tsvmm_convert_method_name(boot->convert_method),
		     boot->convert_port);
	tsvmm_printf("cmdline: \"%s\"\n", boot->cmdline);
	tsvmm_printf("guest entry 0x%llx, free RAM from 0x%llx\n", (unsigned long long)boot->guest_entry,
		     (unsigned long long)boot->free_base);
	tsvmm_printf("RAM map (%u range%s):\n", boot->ram_range_count, boot->ram_range_count == 1 ? "" : "s");
	uint64_t total = 0;
	int free_in_ram = 0;
	for (uint32_t i = 0; i < boot->ram_range_count && i < TSVMM_MAX_RAM_RANGES; i++) {
		const struct tsvmm_ram_range *r = &boot->ram[i];
		tsvmm_printf("  [%u] base=0x%010llx end=0x%010llx size=", i, (unsigned long long)r->base,
			     (unsigned long long)(r->base + r->size));
		print_size(r->size);
		tsvmm_printf(" flags=0x%x (%s)\n", r->flags, r->flags & TSVMM_RAM_PRIVATE ? "private" : "shared");
		total += r->size;
		if (boot->free_base >= r->base && boot->free_base < r->base + r->size)
			free_in_ram = 1;
	}
	tsvmm_print("RAM total: ");
	print_size(total);
	tsvmm_putc('\n');

	const char *problem = tsvmm_boot_check(boot);
	tap_plan(3);
	tap_ok(!problem, "boot-information page is sane%s%s", problem ? ": " : "", problem ? problem : "");
	tap_ok(cpu < boot->cpu_count && tsvmm_cpu() == cpu, "vCPU index %u below cpu_count %u and matches GS block",
	       cpu, boot->cpu_count);
	tap_ok(free_in_ram && boot->guest_entry >= TSVMM_GUEST_BASE && boot->guest_entry < boot->free_base,
	       "guest entry and free_base lie inside RAM above the image base");
	return tap_status();
}
