/* Console: per-vCPU line buffers sent whole under one lock, and the printf formatter. */
#include <tsvmm/tsvmm.h>
#include "runtime.h"

#define LSR_OFFSET 5
#define LSR_THRE   0x20
#define LINE_SIZE  256

struct line {
	unsigned len;
	char buf[LINE_SIZE];
};

static struct line lines[TSVMM_MAX_CPUS];
static tsvmm_spinlock_t console_lock = TSVMM_SPINLOCK_INIT;

static void uart_put(uint16_t port, char c)
{
	/* as a 16550 driver does: wait for THR empty (bounded), then one `out` */
	for (unsigned tries = 0; tries < 100000 && !(tsvmm_inb(port + LSR_OFFSET) & LSR_THRE); tries++)
		tsvmm_pause();
	tsvmm_outb(port, (uint8_t)c);
}

static void send_line(struct line *l, int newline)
{
	uint16_t port = tsvmm_console_port;
	tsvmm_spin_lock(&console_lock);
	for (unsigned i = 0; i < l->len; i++)
		uart_put(port, l->buf[i]);
	if (newline) {
		uart_put(port, '\r');
		uart_put(port, '\n');
	}
	tsvmm_spin_unlock(&console_lock);
	l->len = 0;
}

static struct line *my_line(void)
{
	uint32_t cpu = tsvmm_cpu();
	return &lines[cpu < TSVMM_MAX_CPUS ? cpu : 0];
}

static void line_put(struct line *l, char c)
{
	if (c == '\n') {
		send_line(l, 1);
		return;
	}
	if (c == '\r')
		return;
	if (l->len == LINE_SIZE)
		send_line(l, 0);  /* an over-long line goes out in pieces */
	l->buf[l->len++] = c;
}

void tsvmm_putc(char c) { line_put(my_line(), c); }

void tsvmm_print(const char *s)
{
	struct line *l = my_line();
	while (*s)
		line_put(l, *s++);
}

void tsvmm_flush(void)
{
	struct line *l = my_line();
	if (l->len)
		send_line(l, 0);
}

static void put_line(void *ctx, char c) { line_put(ctx, c); }

int tsvmm_vprintf(const char *fmt, va_list ap) { return tsvmm_vformat(put_line, my_line(), fmt, ap); }

int tsvmm_printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = tsvmm_vprintf(fmt, ap);
	va_end(ap);
	return n;
}

struct sbuf {
	char *buf;
	size_t size, len;
};

static void put_sbuf(void *ctx, char c)
{
	struct sbuf *s = ctx;
	if (s->len + 1 < s->size)
		s->buf[s->len] = c;
	s->len++;
}

int tsvmm_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct sbuf s = { buf, size, 0 };
	int n = tsvmm_vformat(put_sbuf, &s, fmt, ap);
	if (size)
		buf[s.len < size ? s.len : size - 1] = 0;
	return n;
}

int tsvmm_snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = tsvmm_vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

/* ---- the formatter ---- */

enum { F_LEFT = 1, F_ZERO = 2, F_PLUS = 4, F_SPACE = 8, F_ALT = 16 };

struct fmt_out {
	void (*put)(void *, char);
	void *ctx;
	int count;
};

static void out_c(struct fmt_out *o, char c)
{
	o->put(o->ctx, c);
	o->count++;
}

static void out_pad(struct fmt_out *o, char c, int n)
{
	while (n-- > 0)
		out_c(o, c);
}

static void out_number(struct fmt_out *o, uint64_t v, int negative, unsigned base, int upper,
		       unsigned flags, int width, int precision)
{
	char digits[24];
	int nd = 0;
	const char *set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	while (v) {
		digits[nd++] = set[v % base];
		v /= base;
	}
	if (nd == 0 && precision != 0)
		digits[nd++] = '0';

	char prefix[3];
	int np = 0;
	if (negative)
		prefix[np++] = '-';
	else if (flags & F_PLUS)
		prefix[np++] = '+';
	else if (flags & F_SPACE)
		prefix[np++] = ' ';
	if ((flags & F_ALT) && base == 16) {
		prefix[np++] = '0';
		prefix[np++] = upper ? 'X' : 'x';
	} else if ((flags & F_ALT) && base == 8 && (precision <= nd)) {
		prefix[np++] = '0';
	}

	int zeros = precision > nd ? precision - nd : 0;
	int len = np + zeros + nd;
	if ((flags & F_ZERO) && !(flags & F_LEFT) && precision < 0 && width > len) {
		zeros += width - len;
		len = width;
	}
	if (!(flags & F_LEFT))
		out_pad(o, ' ', width - len);
	for (int i = 0; i < np; i++)
		out_c(o, prefix[i]);
	out_pad(o, '0', zeros);
	while (nd)
		out_c(o, digits[--nd]);
	if (flags & F_LEFT)
		out_pad(o, ' ', width - len);
}

int tsvmm_vformat(void (*put)(void *ctx, char c), void *ctx, const char *fmt, va_list ap)
{
	struct fmt_out o = { put, ctx, 0 };
	va_list args;
	va_copy(args, ap);

	for (const char *p = fmt; *p; p++) {
		if (*p != '%') {
			out_c(&o, *p);
			continue;
		}
		const char *start = p++;
		unsigned flags = 0;
		for (;; p++) {
			if (*p == '-') flags |= F_LEFT;
			else if (*p == '0') flags |= F_ZERO;
			else if (*p == '+') flags |= F_PLUS;
			else if (*p == ' ') flags |= F_SPACE;
			else if (*p == '#') flags |= F_ALT;
			else break;
		}
		int width = 0;
		if (*p == '*') {
			width = va_arg(args, int);
			if (width < 0) {
				flags |= F_LEFT;
				width = -width;
			}
			p++;
		} else {
			while (*p >= '0' && *p <= '9')
				width = width * 10 + (*p++ - '0');
		}
		int precision = -1;
		if (*p == '.') {
			p++;
			precision = 0;
			if (*p == '*') {
				precision = va_arg(args, int);
				if (precision < 0)
					precision = -1;
				p++;
			} else {
				while (*p >= '0' && *p <= '9')
					precision = precision * 10 + (*p++ - '0');
			}
		}
		/* length: 0 int, 1 long/long long/size_t/intmax/ptrdiff, -1 short, -2 char */
		int length = 0;
		if (*p == 'h') {
			length = -1;
			if (*++p == 'h') {
				length = -2;
				p++;
			}
		} else if (*p == 'l') {
			length = 1;
			if (*++p == 'l')
				p++;
		} else if (*p == 'z' || *p == 'j' || *p == 't') {
			length = 1;
			p++;
		}

		switch (*p) {
		case 'd':
		case 'i': {
			int64_t v;
			if (length == 1)
				v = va_arg(args, long);
			else
				v = va_arg(args, int);
			if (length == -1)
				v = (short)v;
			else if (length == -2)
				v = (signed char)v;
			uint64_t mag = v < 0 ? -(uint64_t)v : (uint64_t)v;
			out_number(&o, mag, v < 0, 10, 0, flags, width, precision);
			break;
		}
		case 'u':
		case 'x':
		case 'X':
		case 'o': {
			uint64_t v;
			if (length == 1)
				v = va_arg(args, unsigned long);
			else
				v = va_arg(args, unsigned int);
			if (length == -1)
				v = (unsigned short)v;
			else if (length == -2)
				v = (unsigned char)v;
			unsigned base = *p == 'u' ? 10 : *p == 'o' ? 8 : 16;
			if (v == 0)
				flags &= ~(unsigned)F_ALT;  /* %#x and %#o of 0 print just "0" */
			out_number(&o, v, 0, base, *p == 'X', flags & ~(unsigned)(F_PLUS | F_SPACE), width, precision);
			break;
		}
		case 'p': {
			uint64_t v = (uintptr_t)va_arg(args, void *);
			out_number(&o, v, 0, 16, 0, (flags & (F_LEFT | F_ZERO)) | F_ALT, width, precision);
			break;
		}
		case 's': {
			const char *s = va_arg(args, const char *);
			if (!s)
				s = "(null)";
			int n = 0;
			while (s[n] && (precision < 0 || n < precision))
				n++;
			if (!(flags & F_LEFT))
				out_pad(&o, ' ', width - n);
			for (int i = 0; i < n; i++)
				out_c(&o, s[i]);
			if (flags & F_LEFT)
				out_pad(&o, ' ', width - n);
			break;
		}
		case 'c': {
			char c = (char)va_arg(args, int);
			if (!(flags & F_LEFT))
				out_pad(&o, ' ', width - 1);
			out_c(&o, c);
			if (flags & F_LEFT)
				out_pad(&o, ' ', width - 1);
			break;
		}
		case '%':
			out_c(&o, '%');
			break;
		default:
			/* unknown conversion: print it as written */
			for (const char *q = start; q <= p && *q; q++)
				out_c(&o, *q);
			if (!*p)
				p--;
			break;
		}
	}
	va_end(args);
	return o.count;
}
