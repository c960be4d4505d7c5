/*
 * The tsvmm guest ABI: what the VMM, the firmware and the test guests agree on.
 * vmm/machine/abi.ts mirrors every number here; change both together.
 *
 * Guest-physical layout (all RAM below 4 GiB, identity-mapped by the firmware):
 *   0x0000_1000  boot-information page (struct tsvmm_boot_info), written by the VMM
 *   0x0001_0000  firmware image (ELF, linked here; its page tables live inside it)
 *   0x0008_0000  per-vCPU stacks, TSVMM_STACK_SIZE each, vCPU i's top at
 *                TSVMM_STACKS_BASE + (i + 1) * TSVMM_STACK_SIZE
 *   0x0010_0000  the guest ELF image (linked at 1 MiB)
 *   free_base..  RAM the guest may use for itself (page aligned)
 *
 * vCPU entry (set by the VMM with KVM_SET_SREGS/KVM_SET_REGS, like the PVH boot ABI):
 *   32-bit protected mode, paging off, flat 4 GiB code and data segments,
 *   EFLAGS = 0x2 (interrupts off), EIP = firmware ELF entry,
 *   EBX = TSVMM_BOOT_INFO_GPA, ESI = vCPU index.
 * Firmware -> guest: 64-bit long mode, identity map of [0, 4 GiB) with 2 MiB pages,
 *   RSP = top of this vCPU's stack, and the call
 *   int guest_entry(const struct tsvmm_boot_info *boot, uint32_t cpu);
 *   (SysV ABI: RDI = boot, RSI = cpu) whose return value the firmware writes to the exit port.
 *   Also set for the guest: IA32_GS_BASE = address of this vCPU's per-CPU block inside the
 *   firmware, whose first 32-bit word is the vCPU index (read it with `movl %gs:0`); the GDT
 *   holds 64-bit code at TSVMM_GDT_CODE64 and data at TSVMM_GDT_DATA; the IDT's 32 exception
 *   vectors print a report on the console and exit with TSVMM_STATUS_GUEST_EXCEPTION.
 *   Guests must not change IA32_GS_BASE. The firmware does not zero the guest's .bss: the VMM
 *   loads PT_LOAD segments into fresh (zeroed) RAM.
 *
 * Console: lines end with "\r\n" (as a serial console does); every byte is one `out` to
 *   console_port after LSR (console_port + 5) bit 5 (THR empty) reads 1.
 */
#ifndef TSVMM_ABI_H
#define TSVMM_ABI_H

#define TSVMM_BOOT_INFO_GPA      0x1000
#define TSVMM_FIRMWARE_BASE      0x10000
#define TSVMM_STACKS_BASE        0x80000
#define TSVMM_STACK_SIZE         0x4000
#define TSVMM_MAX_CPUS           32
#define TSVMM_GUEST_BASE         0x100000

#define TSVMM_CONSOLE_PORT       0x3f8   /* COM1, 16550 */
#define TSVMM_EXIT_PORT          0xf4    /* 32-bit out: the VMM exits with this status */
#define TSVMM_CONVERT_PORT       0xf8    /* 32-bit out: conversion doorbell (see below) */
#define TSVMM_HOST_PORT          0xfc    /* 32-bit out of the GPA of a struct tsvmm_host_request */
/* (the doorbell `out` takes its port as an immediate because RDX carries attrs: keep it < 0x100) */

/* "TSVMMBI1" little-endian */
#define TSVMM_BOOT_MAGIC         0x3149424d4d565354ULL
#define TSVMM_BOOT_VERSION       1
#define TSVMM_MAX_RAM_RANGES     16
#define TSVMM_CMDLINE_SIZE       512

/* boot_info.backend */
#define TSVMM_BACKEND_SHARED     0   /* no private memory */
#define TSVMM_BACKEND_ATTRIBUTES 1
#define TSVMM_BACKEND_MEMSLOTS   2

/* boot_info.convert_method: how to send KVM_HC_MAP_GPA_RANGE (RAX=12, RBX=gpa, RCX=pages, RDX=attrs) */
#define TSVMM_CONVERT_NONE       0
#define TSVMM_CONVERT_VMCALL     1   /* Intel */
#define TSVMM_CONVERT_VMMCALL    2   /* AMD */
#define TSVMM_CONVERT_DOORBELL   3   /* out to convert_port with the same registers; result in RAX */

/* ram[].flags */
#define TSVMM_RAM_PRIVATE        (1u << 0)   /* the range starts private */

/*
 * Exit statuses. 0..63 belong to the guest (0 = pass). The VMM's own:
 * 64 bad command line, 65 bad guest image, 69 host lacks a capability, 70 VMM internal error,
 * 71 guest exception (firmware), 72 triple fault/shutdown, 73 KVM internal or emulation error,
 * 74 unhandled exit, 75 memory fault stopped the VM, 76 bad hypercall or doorbell number,
 * 77 a status on the exit port that is neither the guest's (0..63) nor the firmware's (70, 71),
 * 78 stdout or the trace file stopped accepting writes, 79 guest reset and 88 guest panic
 * (multiboot and Linux guests), 124 timeout, and for a stop from outside
 * 128 + the signal's number: 129 SIGHUP, 130 SIGINT, 141 stdout closed (EPIPE), 143 SIGTERM.
 */
#define TSVMM_STATUS_PASS             0
#define TSVMM_STATUS_FAIL             1   /* a guest's generic "some check failed" */
#define TSVMM_STATUS_BAD_CMDLINE      64
#define TSVMM_STATUS_BAD_IMAGE        65
#define TSVMM_STATUS_NO_CAPABILITY    69
#define TSVMM_STATUS_INTERNAL         70  /* also: the firmware found a bad boot-info page */
#define TSVMM_STATUS_GUEST_EXCEPTION  71
#define TSVMM_STATUS_SHUTDOWN         72
#define TSVMM_STATUS_KVM_ERROR        73
#define TSVMM_STATUS_UNHANDLED_EXIT   74
#define TSVMM_STATUS_MEMORY_FAULT     75
#define TSVMM_STATUS_BAD_HYPERCALL    76
#define TSVMM_STATUS_BAD_STATUS       77
#define TSVMM_STATUS_GUEST_MAX        63  /* the largest status a guest may write */
#define TSVMM_STATUS_OUTPUT_FAILED    78
#define TSVMM_STATUS_GUEST_RESET      79  /* i8042 or 0xcf9 reset, KVM_SYSTEM_EVENT_RESET */
#define TSVMM_STATUS_GUEST_PANIC      88  /* a panic line on the console, KVM_SYSTEM_EVENT_CRASH */
#define TSVMM_STATUS_TIMEOUT          124
#define TSVMM_STATUS_SIGHUP           129
#define TSVMM_STATUS_SIGINT           130
#define TSVMM_STATUS_STDOUT_CLOSED    141
#define TSVMM_STATUS_SIGTERM          143

/* Firmware GDT selectors (valid in the guest) */
#define TSVMM_GDT_CODE64         0x08
#define TSVMM_GDT_DATA           0x10

/* KVM_HC_MAP_GPA_RANGE: RAX = nr, RBX = gpa, RCX = 4 KiB pages, RDX = attrs; RAX = 0 or errno */
#define TSVMM_HC_MAP_GPA_RANGE        12
#define TSVMM_MAP_GPA_PAGE_SZ_4K      0
#define TSVMM_MAP_GPA_PAGE_SZ_2M      (1u << 0)
#define TSVMM_MAP_GPA_PAGE_SZ_1G      (1u << 1)
#define TSVMM_MAP_GPA_PRIVATE         (1u << 4)   /* KVM_MAP_GPA_RANGE_ENCRYPTED */
#define TSVMM_MAP_GPA_SHARED          0           /* KVM_MAP_GPA_RANGE_DECRYPTED */

#ifndef __ASSEMBLER__
#include <stdint.h>

struct tsvmm_ram_range {
	uint64_t base;
	uint64_t size;
	uint32_t flags;
	uint32_t reserved;
};

struct tsvmm_boot_info {
	uint64_t magic;            /*   0 */
	uint32_t version;          /*   8 */
	uint32_t cpu_count;        /*  12 */
	uint64_t guest_entry;      /*  16 */
	uint64_t free_base;        /*  24 first free page-aligned GPA above the guest image */
	uint32_t ram_range_count;  /*  32 */
	uint32_t backend;          /*  36 TSVMM_BACKEND_* */
	uint32_t shared_bit;       /*  40 0 = no aliased layout, else shared view = gpa | 1 << shared_bit */
	uint32_t convert_method;   /*  44 TSVMM_CONVERT_* */
	uint16_t convert_port;     /*  48 */
	uint16_t exit_port;        /*  50 */
	uint16_t console_port;     /*  52 */
	uint16_t reserved0;        /*  54 */
	struct tsvmm_ram_range ram[TSVMM_MAX_RAM_RANGES]; /* 56, 24 bytes each */
	char cmdline[TSVMM_CMDLINE_SIZE];                 /* 440, NUL-terminated */
};                                                    /* 952 */

_Static_assert(sizeof(struct tsvmm_boot_info) == 952, "boot info layout");

/*
 * Host requests: the VMM's side of the conversion tests (what the kernel selftest's host thread
 * does). The guest writes the request into shared RAM below free_base (its own .data/.bss) and
 * does a 32-bit `out` of its GPA to TSVMM_HOST_PORT; the VMM fills in result/found/value before
 * the guest continues. The VMM only ever reads or writes the *shared* backing of a page.
 */
#define TSVMM_HOST_CHECK_SHARED   1  /* every byte of the shared view == expect; then, with FILL, write fill */
#define TSVMM_HOST_CHECK_PRIVATE  2  /* the shared backing of the (private) range holds no byte == expect */
#define TSVMM_HOST_PUNCH_PRIVATE  3  /* discard the private backing of the range, state unchanged (reads zero after) */
#define TSVMM_HOST_COUNT_PRIVATE  4  /* found = pages of the range the VMM's page-state map says are private */
/*
 * Exit scenarios (private_mem_kvm_exits_test): a one-page test slot outside RAM at gpa, with its
 * own guest_memfd (private on the attributes backend; guest_memfd-only on memslots), then broken:
 *   TEST_SLOT_CREATE  create it
 *   TEST_SLOT_BREAK   expect = TSVMM_BREAK_*; DELETE happens ~20 ms after the guest continues,
 *                     i.e. under the running vCPU; the others at once
 * The next access is a KVM_EXIT_MEMORY_FAULT. With --on-fault convert the VMM re-makes the slot
 * with a new guest_memfd and the access is retried (the page then reads zero).
 */
#define TSVMM_HOST_TEST_SLOT_CREATE 5
#define TSVMM_HOST_TEST_SLOT_BREAK  6
#define TSVMM_BREAK_DELETE   1  /* attributes: delete the slot of a private page -> exit 39, flags PRIVATE */
#define TSVMM_BREAK_NO_GMEM  2  /* attributes: re-add it without KVM_MEM_GUEST_MEMFD -> exit 39, flags PRIVATE */
#define TSVMM_BREAK_RELEASE  3  /* memslots: release its guest_memfd -> exit 39, flags 0 */
#define TSVMM_TEST_SLOT_GPA  0xc0000000ULL
#define TSVMM_HOST_FLAG_FILL      1

struct tsvmm_host_request {
	uint32_t op;          /*  0 TSVMM_HOST_* */
	int32_t  result;      /*  4 out: 0 ok, -1 check failed, >0 errno (22 = bad request) */
	uint64_t gpa;         /*  8 page aligned */
	uint64_t size;        /* 16 bytes, page multiple */
	uint8_t  expect;      /* 24 */
	uint8_t  fill;        /* 25 */
	uint8_t  flags;       /* 26 TSVMM_HOST_FLAG_* */
	uint8_t  reserved[5]; /* 27 */
	uint64_t found;       /* 32 out: first mismatching GPA (checks) or a count */
	uint64_t value;       /* 40 out: the byte found there */
};                        /* 48 */

_Static_assert(sizeof(struct tsvmm_host_request) == 48, "host request layout");
#endif

#endif
