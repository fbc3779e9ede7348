/* The built-in demo guest (tests/guests/demo.c), embedded so that `kvmini run` with no
 * --kernel has something to boot. */
	.section .rodata
	.balign 16
	.globl demo_guest_elf
demo_guest_elf:
	.incbin DEMO_ELF
	.globl demo_guest_elf_end
demo_guest_elf_end:
	.section .note.GNU-stack,"",@progbits
