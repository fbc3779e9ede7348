/* Guest entry. kvmini enters here (ELF e_entry) in 64-bit mode, paging on (identity map of
 * 4 GiB at CR3 0x9000), interrupts off, RSI = boot_params (0x7000), RSP unknown. The VMM
 * has already zeroed .bss (p_memsz > p_filesz), so nothing is cleared here. */
	.section .text.entry, "ax"
	.code64
	.globl _start
_start:
	cli
	cld
	leaq boot_stack_top(%rip), %rsp
	xorl %ebp, %ebp
	movq %rsi, %rdi
	call kit_start
1:	cli
	hlt
	jmp 1b

	.bss
	.balign 16
boot_stack:
	.skip 16384
boot_stack_top:

	.section .note.GNU-stack, "", @progbits
