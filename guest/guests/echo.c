/* echo: reads COM1 and echoes each line back, uppercased; `q` on its own line (or Ctrl-D) exits 0. */
#include <tsvmm/tsvmm.h>

TSVMM_GUEST_DESCRIPTION("echoes what is typed on COM1, uppercased, one line at a time; q or Ctrl-D quits (input tests)");

#define LSR 5
#define LSR_DR 0x01

static int getc_blocking(uint16_t port)
{
	while (!(tsvmm_inb(port + LSR) & LSR_DR))
		tsvmm_pause();
	return tsvmm_inb(port);
}

int tsvmm_main(const struct tsvmm_boot_info *boot, uint32_t cpu)
{
	uint16_t port = boot->console_port ? boot->console_port : TSVMM_CONSOLE_PORT;
	char line[128];
	unsigned n = 0;

	if (cpu != 0)
		tsvmm_halt();
	tsvmm_printf("echo: ready (type a line; q quits)\n");
	for (;;) {
		int c = getc_blocking(port);
		if (c == 0x04)
			return 0;
		if (c == '\r' || c == '\n') {
			line[n] = 0;
			if (n == 1 && line[0] == 'Q')
				return 0;
			if (n > 0)
				tsvmm_printf("echo: %s\n", line);
			n = 0;
			continue;
		}
		if (n < sizeof(line) - 1)
			line[n++] = (c >= 'a' && c <= 'z') ? c - 'a' + 'A' : c;
	}
}
