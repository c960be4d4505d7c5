/*
 * The multiboot test kernel's entry points: the multiboot header, the boot processor's entry
 * (32-bit protected mode, paging off, EAX = magic, EBX = info block) and the application
 * processors' real-mode trampoline, which main.c copies to TRAMPOLINE_GPA before sending SIPIs.
 */
#define MULTIBOOT_MAGIC  0x1badb002
#define MULTIBOOT_FLAGS  0x00000003 /* page-align modules, memory information */
#define TRAMPOLINE_GPA   0x8000
#define CODE32 0x08
#define DATA32 0x10

	.section .multiboot, "a"
	.balign 4
	.long MULTIBOOT_MAGIC, MULTIBOOT_FLAGS, -(MULTIBOOT_MAGIC + MULTIBOOT_FLAGS)

	.text
	.code32
	.globl _start
_start:
	cli
	lgdt gdt_descriptor
	ljmp $CODE32, $1f
1:	mov $DATA32, %ecx
	mov %ecx, %ds
	mov %ecx, %es
	mov %ecx, %ss
	mov %ecx, %fs
	mov %ecx, %gs
	mov $bsp_stack_top, %esp
	push %ebx
	push %eax
	call mb_main
	/* mb_main exits through the debug port; if that returns, stop here. */
2:	cli
	hlt
	jmp 2b

	/* An AP arrives here from the trampoline in 32-bit mode: take the next stack and go to C. */
ap_start32:
	mov $DATA32, %ecx
	mov %ecx, %ds
	mov %ecx, %es
	mov %ecx, %ss
	mov %ecx, %fs
	mov %ecx, %gs
	mov $1, %eax
	lock xadd %eax, ap_next_stack
	mov %eax, %esp
	shl $12, %esp
	add $ap_stacks, %esp
	add $4096, %esp
	call ap_main
3:	cli
	hlt
	jmp 3b

	/*
	 * Interrupt stubs for IRQ 0 and IRQ 4. They return without `iret`: KVM's instruction
	 * emulator handles `iret` in real mode only, and an emulating KVM (kvm_pvm) runs every
	 * instruction through it, so a protected-mode `iret` is an emulation failure there. The
	 * frame [EIP, CS, EFLAGS] (same privilege) is turned into [EFLAGS, EIP] for popf; ret.
	 */
	.globl irq0_stub, irq4_stub
irq0_stub:
	pushal
	cld
	call timer_interrupt
	popal
	jmp irq_return
irq4_stub:
	pushal
	cld
	call uart_interrupt
	popal
irq_return:
	push %eax               /* [0] eax [4] EIP [8] CS [12] EFLAGS */
	mov 4(%esp), %eax
	xchg %eax, 12(%esp)     /* [12] EIP, eax = EFLAGS */
	mov %eax, 8(%esp)       /* [8] EFLAGS */
	pop %eax
	add $4, %esp            /* [0] EFLAGS [4] EIP */
	popf
	ret

	/* Real mode at TRAMPOLINE_GPA (CS = TRAMPOLINE_GPA >> 4, IP = 0): enter protected mode. */
	.code16
	.globl trampoline_start, trampoline_end
trampoline_start:
	cli
	mov %cs, %ax
	mov %ax, %ds
	lgdtl trampoline_gdt_descriptor - trampoline_start
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmpl $CODE32, $ap_start32
trampoline_gdt_descriptor:
	.word gdt_end - gdt - 1
	.long gdt
trampoline_end:
	.code32

	.data
	.balign 8
gdt:
	.quad 0
	.quad 0x00cf9b000000ffff /* 0x08: 32-bit code, flat */
	.quad 0x00cf93000000ffff /* 0x10: data, flat */
gdt_end:
gdt_descriptor:
	.word gdt_end - gdt - 1
	.long gdt
ap_next_stack:
	.long 0

	.bss
	.balign 4096
	.globl ap_stacks
ap_stacks:
	.skip 4096 * 32
	.skip 16384
bsp_stack_top:
