/*
 * The tsvmm guest runtime: everything a test guest includes.
 *
 * A guest defines
 *     int tsvmm_main(const struct tsvmm_boot_info *boot, uint32_t cpu);
 * which runs on every vCPU at once (cpu = 0 .. boot->cpu_count - 1); its return value becomes
 * the VM's exit status (the first vCPU to return or exit ends the VM). It must be SMP-safe.
 * It describes itself for `tsvmm guests` with TSVMM_GUEST_DESCRIPTION("one line").
 */
#ifndef TSVMM_TSVMM_H
#define TSVMM_TSVMM_H

#include <stdint.h>
#include <stddef.h>
#include <tsvmm/abi.h>
#include <tsvmm/arch.h>
#include <tsvmm/boot.h>
#include <tsvmm/console.h>
#include <tsvmm/convert.h>
#include <tsvmm/host.h>
#include <tsvmm/paging.h>
#include <tsvmm/string.h>
#include <tsvmm/tap.h>

/* A NUL-terminated one-line description in the ELF section .tsvmm.description (not loaded). */
#define TSVMM_GUEST_DESCRIPTION(text) \
	__attribute__((section(".tsvmm.description"), used, aligned(1))) \
	static const char tsvmm_guest_description[] = text

/*
 * A guest that converts memory declares it: unless the command line says otherwise, tsvmm then
 * starts the RAM above the guest image private (`--private` default) on a backend this host has.
 */
#define TSVMM_GUEST_WANTS_PRIVATE() \
	__attribute__((section(".tsvmm.private"), used, aligned(1))) \
	static const char tsvmm_guest_private[] = "default"

int tsvmm_main(const struct tsvmm_boot_info *boot, uint32_t cpu);

/* Flush this vCPU's console line, write status to the exit port (32-bit out): ends the VM. */
__attribute__((noreturn)) void tsvmm_exit(int status);
/* Flush, then park this vCPU in hlt with interrupts off (the VMM counts it as done). */
__attribute__((noreturn)) void tsvmm_halt(void);

#endif
