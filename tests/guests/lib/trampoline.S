/* The AP start-up trampoline. ap_start() (ap.c) copies ap_trampoline..ap_trampoline_end to
 * AP_TRAMPOLINE_ADDR (0x8000), fills in ap_trampoline_params (CR3, EFER bits, stack, entry)
 * and sends INIT + STARTUP with vector 8. The AP starts here in real mode with CS = 0x0800,
 * IP = 0, so offsets from ap_trampoline are offsets in the segment and every absolute
 * address is TRAMP + (label - ap_trampoline). */
#define TRAMP 0x8000
#define OFF(label) ((label) - ap_trampoline)
#define ABS(label) (TRAMP + OFF(label))

	.section .rodata.ap_trampoline, "a"
	.balign 16
	.globl ap_trampoline, ap_trampoline_end, ap_trampoline_params

	.code16
ap_trampoline:
	cli
	cld
	movw %cs, %ax
	movw %ax, %ds
	lgdtl OFF(tr_gdtr)
	movl %cr0, %eax
	andl $0x9fffffff, %eax		/* caches on: clear CD and NW */
	orl $1, %eax			/* PE */
	movl %eax, %cr0
	ljmpl $0x08, $ABS(tr_pm32)

	.code32
tr_pm32:
	movw $0x10, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movl %cr4, %eax
	orl $0x20, %eax			/* PAE */
	movl %eax, %cr4
	movl ABS(tr_cr3), %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx		/* EFER */
	rdmsr
	orl ABS(tr_efer), %eax		/* LME (| NXE if the BSP has it) */
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax		/* PG | PE */
	movl %eax, %cr0
	ljmpl $0x18, $ABS(tr_lm64)

	.code64
tr_lm64:
	movq ABS(tr_stack), %rsp
	movq ABS(tr_entry), %rax
	call *%rax
1:	cli
	hlt
	jmp 1b

	.balign 8
tr_gdt:
	.quad 0
	.quad 0x00cf9b000000ffff	/* 0x08 32-bit code */
	.quad 0x00cf93000000ffff	/* 0x10 data */
	.quad 0x00af9b000000ffff	/* 0x18 64-bit code */
tr_gdt_end:
tr_gdtr:
	.word tr_gdt_end - tr_gdt - 1
	.long ABS(tr_gdt)

	.balign 8
ap_trampoline_params:
tr_cr3:	.long 0
tr_efer: .long 0
tr_stack: .quad 0
tr_entry: .quad 0
ap_trampoline_end:

	.section .note.GNU-stack, "", @progbits
