/*
 * qemu-hello: the flat firmware image QEMU boots in `npm run bench` (-machine microvm -bios),
 * the baseline for `tsvmm run hello`. A 64 KiB image; QEMU maps it just below 4 GiB, so the
 * vCPU starts in real mode at the reset vector, offset 0xfff0 here (CS.base = 0xffff0000,
 * IP = 0xfff0). Everything stays in that segment: near jumps and CS-relative loads (DS.base is
 * 0 at reset). It prints a text as long as the hello guest's on COM1 exactly the way the tsvmm
 * guests do -- poll LSR (0x3fd) until THR is empty (bit 5), then one `out` to 0x3f8 per byte --
 * and exits with a 32-bit `out` of 0 to isa-debug-exit at 0xf4 (QEMU then exits with status 1).
 * Its last line starts with "ok 3 - ", which bench.ts checks for.
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
	/* the same shape and about the same size as guest/guests/hello.c's output */
	.ascii	"qemu-hello: booted on vCPU 0 of 1\r\n"
	.ascii	"backend: none (flat -bios image)\r\n"
	.ascii	"shared bit: none\r\n"
	.ascii	"conversion: none (no doorbell)\r\n"
	.ascii	"cmdline: \"\"\r\n"
	.ascii	"entry: reset vector 0xfffffff0, real mode\r\n"
	.ascii	"RAM map (1 range):\r\n"
	.ascii	"  [0] base=0x0000000000 end=0x0001000000 size=16 MiB flags=0x0 (shared)\r\n"
	.ascii	"RAM total: 16 MiB\r\n"
	.ascii	"1..3\r\n"
	.ascii	"ok 1 - as long as the hello guest's text\r\n"
	.ascii	"ok 2 - COM1 0x3f8: one out per byte after polling LSR\r\n"
	.asciz	"ok 3 - exit through isa-debug-exit at port 0xf4 with status 0\r\n"

	/* reset vector: 16 bytes below the top of the image */
	.org	0xfff0
reset:
	jmp	_start
	.org	0x10000
