/* The benchmark guest: one line on the COM1 UART, then either leave through the debug-exit
 * port (BENCH_EXIT) or halt forever with interrupts off (the idle variant, kept alive for
 * the RSS measurement). Ring 0 is emulated instruction by instruction on PVM hosts, so the
 * guest does as little as possible: no stack, no paging, no LSR polling (neither VMM's UART
 * ever reports a full transmitter). */
	.code32
	.section .text, "ax"
	.globl _start
_start:
	cld
	mov	$msg, %esi
	mov	$msg_end - msg, %ecx
	mov	$0x3f8, %dx
1:	lodsb
	out	%al, %dx
	loop	1b
#ifdef BENCH_EXIT
	/* QEMU's isa-debug-exit convention: the VMM exits with (0 << 1) | 1 = 1. */
	xor	%eax, %eax
	out	%al, $0xf4
#endif
2:	cli
	hlt
	jmp	2b

	.section .rodata, "a"
msg:	.ascii	"bench: guest up\n"
msg_end:

/* XEN_ELFNOTE_PHYS32_ENTRY: what makes both kvmini and QEMU microvm enter _start in 32-bit
 * protected mode (the PVH boot ABI) instead of treating the file as a Linux kernel. */
	.section .note.Xen, "a", @note
	.p2align 2
	.long	4		/* namesz */
	.long	4		/* descsz */
	.long	18		/* type */
	.asciz	"Xen"
	.long	_start
