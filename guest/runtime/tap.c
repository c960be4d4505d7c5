/* TAP lines: the result channel tests parse. */
#include <tsvmm/tsvmm.h>

static unsigned planned, count, failed;

void tap_plan(unsigned n)
{
	__atomic_store_n(&planned, n, __ATOMIC_RELAXED);
	tsvmm_printf("1..%u\n", n);
}

static void result(int ok, const char *directive, const char *fmt, va_list ap)
{
	unsigned n = __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED);
	if (!ok)
		__atomic_add_fetch(&failed, 1, __ATOMIC_RELAXED);
	/* one line, written atomically (the console sends whole lines) */
	tsvmm_printf("%sok %u - %s", ok ? "" : "not ", n, directive);
	tsvmm_vprintf(fmt, ap);
	tsvmm_putc('\n');
}

int tap_ok(int cond, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	result(cond != 0, "", fmt, ap);
	va_end(ap);
	return cond != 0;
}

void tap_skip(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	result(1, "# SKIP ", fmt, ap);
	va_end(ap);
}

void tap_skip_all(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	__atomic_store_n(&planned, 0, __ATOMIC_RELAXED);
	tsvmm_print("1..0 # SKIP ");
	tsvmm_vprintf(fmt, ap);
	tsvmm_putc('\n');
	va_end(ap);
}

void tap_diag(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tsvmm_print("# ");
	tsvmm_vprintf(fmt, ap);
	tsvmm_putc('\n');
	va_end(ap);
}

int tap_status(void)
{
	unsigned n = __atomic_load_n(&count, __ATOMIC_RELAXED);
	unsigned f = __atomic_load_n(&failed, __ATOMIC_RELAXED);
	unsigned p = __atomic_load_n(&planned, __ATOMIC_RELAXED);
	if (f) {
		tap_diag("failed %u of %u tests", f, n);
		return TSVMM_STATUS_FAIL;
	}
	if (n != p) {
		tap_diag("planned %u tests but ran %u", p, n);
		return TSVMM_STATUS_FAIL;
	}
	return TSVMM_STATUS_PASS;
}

static struct {
	int ok;
	char why[200];
} steps[TSVMM_MAX_CPUS];

void tap_step_begin(void)
{
	steps[tsvmm_cpu()].ok = 1;
	steps[tsvmm_cpu()].why[0] = 0;
}

void tap_step_fail(const char *fmt, ...)
{
	uint32_t cpu = tsvmm_cpu();

	if (steps[cpu].ok) {
		va_list ap;
		va_start(ap, fmt);
		tsvmm_vsnprintf(steps[cpu].why, sizeof(steps[cpu].why), fmt, ap);
		va_end(ap);
	}
	steps[cpu].ok = 0;
}

int tap_step_ok(void)
{
	return steps[tsvmm_cpu()].ok;
}

int tap_step_end(const char *fmt, ...)
{
	uint32_t cpu = tsvmm_cpu();
	char text[200];
	va_list ap;

	va_start(ap, fmt);
	tsvmm_vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	tap_ok(steps[cpu].ok, "%s", text);
	if (!steps[cpu].ok)
		tap_diag("  first failure: %s", steps[cpu].why);
	return steps[cpu].ok;
}
