/*
 * tsvmm firmware: the boot stub every vCPU starts in.
 *
 * 32-bit entry -> GDT, PAE, identity map of [0, 4 GiB) with 2 MiB pages, EFER.LME, paging
 * -> 64-bit code -> per-vCPU stack, GS base, IDT -> fw_main() (main.c), which checks the
 * boot-information page and calls the guest.
 *
 * Everything here is static and read-only at run time (page tables, GDT, IDT), so all vCPUs
 * may run it at the same moment; the only per-vCPU writes go to fw_percpu[cpu].
 */
#include <tsvmm/abi.h>

#define CR0_PE      (1 << 0)
#define CR0_WP      (1 << 16)
#define CR0_PG      (1 << 31)
#define CR4_PAE     (1 << 5)
#define MSR_EFER    0xc0000080
#define EFER_LME    (1 << 8)
#define MSR_GS_BASE 0xc0000101

#define PTE_P       (1 << 0)
#define PTE_RW      (1 << 1)
#define PTE_A       (1 << 5)
#define PTE_D       (1 << 6)
#define PTE_PS      (1 << 7)
#define PTE_TABLE   (PTE_P | PTE_RW | PTE_A)
#define PTE_2M      (PTE_P | PTE_RW | PTE_A | PTE_D | PTE_PS)

#define PERCPU_SIZE 64          /* must match struct fw_percpu in main.c */

	.section .text.entry, "ax"
	.code32
	.globl _start
	.type _start, @function
_start:
	/*
	 * Every vCPU starts here, all at the same time, already in 32-bit protected mode with
	 * paging off and flat 4 GiB segments: the VMM sets this PVH-like state directly with
	 * KVM_SET_SREGS/KVM_SET_REGS (EIP = this ELF entry, EBX = boot-info GPA, ESI = vCPU
	 * index, EFLAGS = 0x2). So there is no real-mode code and no reset vector here.
	 * EBX and ESI must survive until fw_main.
	 */
	cli
	cld

	/* Long mode needs CPUID.80000001h:EDX.LM, i.e. the VMM must have set CPUID (KVM_SET_CPUID2) */
	movl	%ebx, %edi		/* cpuid clobbers EBX */
	movl	$0x80000000, %eax
	cpuid
	cmpl	$0x80000001, %eax
	jb	no_long_mode
	movl	$0x80000001, %eax
	cpuid
	btl	$29, %edx
	jnc	no_long_mode
	movl	%edi, %ebx

	lgdt	gdt_desc

	movl	%cr4, %eax
	orl	$CR4_PAE, %eax
	movl	%eax, %cr4

	movl	$pml4, %eax
	movl	%eax, %cr3

	movl	$MSR_EFER, %ecx
	rdmsr
	orl	$EFER_LME, %eax
	wrmsr

	movl	%cr0, %eax
	orl	$(CR0_PG | CR0_WP | CR0_PE), %eax
	movl	%eax, %cr0

	ljmp	$TSVMM_GDT_CODE64, $long_mode

/* 32-bit: the first vCPU here prints no_lm_msg on COM1 and exits with TSVMM_STATUS_INTERNAL */
no_long_mode:
	movl	$1, %eax
	xchgl	%eax, no_lm_once
	testl	%eax, %eax
	jnz	9f
	movl	$no_lm_msg, %esi
5:	movb	(%esi), %cl
	testb	%cl, %cl
	jz	7f
	movl	$100000, %edi
6:	movw	$(TSVMM_CONSOLE_PORT + 5), %dx	/* LSR: wait (bounded) for THR empty */
	inb	%dx, %al
	testb	$0x20, %al
	jnz	8f
	pause
	decl	%edi
	jnz	6b
8:	movw	$TSVMM_CONSOLE_PORT, %dx
	movb	%cl, %al
	outb	%al, %dx
	incl	%esi
	jmp	5b
7:	movl	$TSVMM_STATUS_INTERNAL, %eax
	movw	$TSVMM_EXIT_PORT, %dx
	outl	%eax, %dx
9:	hlt
	jmp	9b

	.code64
long_mode:
	movl	$TSVMM_GDT_DATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	xorl	%eax, %eax
	movl	%eax, %fs
	movl	%eax, %gs

	movl	%ebx, %ebx		/* zero-extend boot-info GPA */
	movl	%esi, %esi		/* zero-extend vCPU index */
	cmpl	$TSVMM_MAX_CPUS, %esi
	jae	1f

	/* RSP = TSVMM_STACKS_BASE + (cpu + 1) * TSVMM_STACK_SIZE */
	leaq	1(%rsi), %rax
	imulq	$TSVMM_STACK_SIZE, %rax, %rax
	addq	$TSVMM_STACKS_BASE, %rax
	movq	%rax, %rsp

	/* IA32_GS_BASE = &fw_percpu[cpu]; fw_percpu[cpu].cpu = cpu, .self = itself */
	movq	%rsi, %rax
	shlq	$6, %rax
	addq	$fw_percpu, %rax
	movl	%esi, (%rax)
	movq	%rax, 8(%rax)
	movq	%rax, %rdx
	shrq	$32, %rdx
	movl	$MSR_GS_BASE, %ecx
	wrmsr
	jmp	2f
1:
	/* vCPU index out of range: fw_main reports it from a shared emergency stack */
	movq	$fw_emergency_stack_top, %rsp
2:
	lidt	idt_desc
	xorl	%ebp, %ebp
	movq	%rbx, %rdi
	/* %rsi = cpu */
	call	fw_main
3:	hlt
	jmp	3b
	.size _start, . - _start

/*
 * Exception stubs: 32 of them, 16 bytes apart, so the IDT below can point at
 * isr_table + 16 * vector. Vectors without a CPU-pushed error code push 0.
 */
	.section .text.isr, "ax"
	.p2align 9
	.globl isr_table
isr_table:
	.irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.p2align 4
	.if (\vec == 8) || (\vec == 10) || (\vec == 11) || (\vec == 12) || (\vec == 13) || (\vec == 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
	.else
	pushq	$0
	.endif
	pushq	$\vec
	jmp	isr_common
	.endr
	.p2align 4
	.globl isr_table_end
isr_table_end:			/* firmware.ld checks the stubs are exactly 16 bytes apart */

isr_common:
	/* stack: vector, error code, RIP, CS, RFLAGS, RSP, SS (no privilege change) */
	movq	%rsp, %rdi
	andq	$-16, %rsp
	call	fw_exception
4:	hlt
	jmp	4b

	.section .data.tables, "aw"
/*
 * Page tables: PML4[0] -> PDPT, PDPT[0..3] -> four page directories of 512 2 MiB pages
 * each, identity-mapping [0, 4 GiB). Static, and with the accessed/dirty bits preset the
 * page walks of concurrently booting vCPUs never need to write them: SMP-safe.
 */
	.p2align 12
	.globl pml4
pml4:
	.quad	pdpt + PTE_TABLE
	.fill	511, 8, 0
	.globl pdpt
pdpt:
	.quad	pd + 0 * 4096 + PTE_TABLE
	.quad	pd + 1 * 4096 + PTE_TABLE
	.quad	pd + 2 * 4096 + PTE_TABLE
	.quad	pd + 3 * 4096 + PTE_TABLE
	.fill	508, 8, 0
	.globl pd
pd:
	.set	page, 0
	.rept	4 * 512
	.quad	(page << 21) | PTE_2M
	.set	page, page + 1
	.endr

	.section .rodata, "a"
no_lm_msg:
	.asciz	"tsvmm-firmware: this vCPU has no long mode (CPUID 0x80000001 EDX.LM=0): the VMM must set CPUID with KVM_SET_CPUID2\r\n"

	.section .data, "aw"
	.p2align 4
/* GDT: null, 64-bit code (0x08), data (0x10). Accessed bits preset: never written. */
gdt:
	.quad	0
	.quad	0x00af9b000000ffff	/* code: P, DPL0, S, type 0xb (exec/read/accessed), L, G */
	.quad	0x00cf93000000ffff	/* data: P, DPL0, S, type 0x3 (read/write/accessed), D/B, G */
gdt_end:
	.p2align 4
gdt_desc:				/* 10 bytes: lgdt in 32-bit mode reads the low 4 of the base */
	.word	gdt_end - gdt - 1
	.quad	gdt

/*
 * IDT: 32 64-bit interrupt gates (DPL 0, no IST). The handler address is split across the
 * gate; the linker script supplies the pieces of isr_table (isr_table_lo/mid/hi).
 */
	.p2align 4
idt:
	.irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.word	isr_table_lo + \vec * 16
	.word	TSVMM_GDT_CODE64
	.byte	0			/* IST */
	.byte	0x8e			/* present, DPL 0, 64-bit interrupt gate */
	.word	isr_table_mid
	.long	isr_table_hi
	.long	0
	.endr
idt_end:
	.p2align 4
idt_desc:
	.word	idt_end - idt - 1
	.quad	idt

	.section .bss, "aw", @nobits
	.p2align 2
no_lm_once:
	.skip	4
	.p2align 6
	.globl fw_percpu
fw_percpu:
	.skip	TSVMM_MAX_CPUS * PERCPU_SIZE
	.p2align 4
	.skip	4096
fw_emergency_stack_top:
