/*
 * Console output on COM1 (boot_info.console_port): a printf subset and line-atomic output.
 * Each vCPU collects its current line in its own buffer and sends it under one spinlock when
 * the line ends ('\n', sent as "\r\n"), so lines of different vCPUs never interleave.
 * Formats: %d %i %u %x %X %o %p %s %c %%, flags - 0 + space #, width and precision (or *),
 * length modifiers hh h l ll z j t.
 */
#ifndef TSVMM_CONSOLE_H
#define TSVMM_CONSOLE_H

#include <stdarg.h>
#include <stddef.h>

#define TSVMM_PRINTF(f, a) __attribute__((format(printf, f, a)))

void tsvmm_putc(char c);
void tsvmm_print(const char *s);   /* no newline added */
int tsvmm_printf(const char *fmt, ...) TSVMM_PRINTF(1, 2);
int tsvmm_vprintf(const char *fmt, va_list ap);
int tsvmm_snprintf(char *buf, size_t size, const char *fmt, ...) TSVMM_PRINTF(3, 4);
int tsvmm_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
/* Send this vCPU's unfinished line now (tsvmm_exit and the return from main do it). */
void tsvmm_flush(void);

/* The formatter behind all of the above: calls put(ctx, c) per character, returns the count. */
int tsvmm_vformat(void (*put)(void *ctx, char c), void *ctx, const char *fmt, va_list ap);

#endif
