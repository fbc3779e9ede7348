/* The notification floor: N round trips of "write the notify address, wait until the host
 * answers", from ring 3 as the test guests' drivers run. bare_kvm --notify enters _start in
 * 64-bit mode at CPL 3 (its own identity page tables, user pages), registers 0xd0000000 as
 * a KVM ioeventfd, and a host thread bumps the word at 0x4000 for each signal it reads; the
 * guest times the N round trips with rdtsc (stored at 0x3000 and 0x3008) and then executes
 * hlt, which at CPL 3 with no IDT ends the VM (a triple fault, KVM_EXIT_SHUTDOWN). N is at
 * 0x2000 (the host writes it before the run). */
	.section .text, "ax"
	.code64
	.globl _start
_start:
	/* Register-indirect addresses only: this .code64 is assembled into an ELF32 object. */
	movl	$0x2000, %edi
	movl	$0x3000, %r8d
	movl	$0x4000, %r9d
	movl	$0xd0000000, %r10d
	movl	(%rdi), %esi
	rdtsc
	movl	%eax, (%r8)
	movl	%edx, 4(%r8)
1:	movl	(%r9), %ebx
	movl	$1, (%r10)
2:	cmpl	(%r9), %ebx
	je	2b
	decl	%esi
	jnz	1b
	rdtsc
	movl	%eax, 8(%r8)
	movl	%edx, 12(%r8)
	hlt

	.section .note.Xen, "a", @note
	.p2align 2
	.long	4
	.long	4
	.long	18
	.asciz	"Xen"
	.long	_start
