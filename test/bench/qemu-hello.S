/*
 * qemu-hello: the flat firmware image QEMU boots in `npm run bench` (-machine microvm -bios),
 * the baseline for `tsvmm run hello`. A 64 KiB image; QEMU maps it just below 4 GiB, so the
 * vCPU starts in real mode at the reset vector, offset 0xfff0 here (CS.base = 0xffff0000,
 * IP = 0xfff0). Everything stays in that segment: near jumps and CS-relative loads (DS.base is
 * 0 at reset). It prints a banner-sized text on COM1 exactly the way the tsvmm guests do --
 * poll LSR (0x3fd) until THR is empty (bit 5), then one `out` to 0x3f8 per byte -- and exits
 * with a 32-bit `out` of 0 to isa-debug-exit at 0xf4 (QEMU then exits with status 1).
 * Build: see test/bench/Makefile.
 */
	.code16
	.text
	.globl _start
_start:
	cli
	cld
	mov	$banner, %si
next:
	mov	%cs:(%si), %bl
	test	%bl, %bl
	jz	done
	mov	$0x3fd, %dx
1:	in	(%dx), %al
	test	$0x20, %al
	jz	1b
	mov	$0x3f8, %dx
	mov	%bl, %al
	out	%al, (%dx)
	inc	%si
	jmp	next
done:
	mov	$0xf4, %dx
	xor	%eax, %eax
	out	%eax, (%dx)
2:	hlt
	jmp	2b

banner:
	.ascii	"qemu-hello: flat -bios image for the tsvmm benchmark\r\n"
	.ascii	"  real mode at the reset vector, COM1 0x3f8 polled through LSR\r\n"
	.ascii	"  RAM: whatever -m gave us, unused\r\n"
	.ascii	"  exit: isa-debug-exit 0xf4, status 0\r\n"
	.asciz	"qemu-hello: done\r\n"

	/* reset vector: 16 bytes below the top of the image */
	.org	0xfff0
reset:
	jmp	_start
	.org	0x10000
