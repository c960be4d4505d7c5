/* The boot-information page (abi.h) and the guest command line ("key=value key2 ..."). */
#ifndef TSVMM_BOOT_H
#define TSVMM_BOOT_H

#include <stddef.h>
#include <stdint.h>
#include <tsvmm/abi.h>

/* The page the firmware handed over (valid once tsvmm_main runs). */
const struct tsvmm_boot_info *tsvmm_boot(void);
/* Sanity of the page: 0 if fine, else a static string naming the first problem. */
const char *tsvmm_boot_check(const struct tsvmm_boot_info *boot);

const char *tsvmm_backend_name(uint32_t backend);          /* "shared", "attributes", ... */
const char *tsvmm_convert_method_name(uint32_t method);    /* "none", "vmcall", ... */

/*
 * Command line lookup. Words are separated by spaces; a word is "key=value" or a bare "key"
 * (value ""). The last occurrence of a key wins.
 * tsvmm_cmdline_get copies the value (NUL-terminated, truncated to size) and returns its full
 * length, or -1 if the key is absent.
 */
int tsvmm_cmdline_get(const char *key, char *buf, size_t size);
int tsvmm_cmdline_has(const char *key);
/* Decimal or 0x-hex value of key; dflt if absent or malformed. */
uint64_t tsvmm_cmdline_uint(const char *key, uint64_t dflt);

#endif
