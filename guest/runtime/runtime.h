/* Runtime-internal state shared between runtime files. */
#ifndef TSVMM_RUNTIME_INTERNAL_H
#define TSVMM_RUNTIME_INTERNAL_H

#include <stdint.h>
#include <tsvmm/abi.h>

extern const struct tsvmm_boot_info *tsvmm_boot_page;
extern uint16_t tsvmm_console_port;
extern uint16_t tsvmm_exit_port;

#endif
