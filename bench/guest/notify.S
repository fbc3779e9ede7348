/* The notification floor: N round trips of "write the notify address, wait until the host
 * answers". bare_kvm --notify registers 0xd0000000 as a KVM ioeventfd and a host thread
 * bumps the word at 0x4000 for each signal it reads; the guest times the N round trips with
 * rdtsc (stored at 0x3000 and 0x3008) and leaves through the debug-exit port. N is at 0x2000
 * (the host writes it before the run). 32-bit protected mode, paging off (PVH entry). */
	.code32
	.section .text, "ax"
	.globl _start
_start:
	mov	0x2000, %esi
	rdtsc
	mov	%eax, 0x3000
	mov	%edx, 0x3004
1:	mov	0x4000, %ebx
	movl	$1, 0xd0000000
2:	cmp	0x4000, %ebx
	je	2b
	dec	%esi
	jnz	1b
	rdtsc
	mov	%eax, 0x3008
	mov	%edx, 0x300c
	xor	%eax, %eax
	out	%al, $0xf4
3:	cli
	hlt
	jmp	3b

	.section .note.Xen, "a", @note
	.p2align 2
	.long	4
	.long	4
	.long	18
	.asciz	"Xen"
	.long	_start
