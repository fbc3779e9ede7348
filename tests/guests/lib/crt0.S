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

/* Multiboot v1 header (QEMU's -kernel; kvmini ignores it): the address fields (flag 16)
 * make QEMU load the file as the flat image it is (text at file offset 0x1000 = 1 MiB,
 * data after it with the same delta), zero .bss up to __image_end and enter mb_entry32 in
 * 32-bit protected mode, paging off, EBX = the multiboot information. */
/* Weak: link.ld defines them; the GNU-ld-layout guests (linked with ld's default script,
 * for kvmini's loader tests only) leave them 0 and are not bootable by QEMU. */
	.weak __image_start, __data_end, __image_end
#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x00010002 /* memory map, address fields */
	.balign 4
mb_header:
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)
	.long mb_header
	.long __image_start
	.long __data_end
	.long __image_end
	.long mb_entry32

	.code32
mb_entry32:
	cli
	cld
	movl %ebx, mb_info
	/* clear PML4 and PDPT, then 2048 PD entries of 2 MiB (3-4 GiB uncached) */
	movl $mb_pml4, %edi
	xorl %eax, %eax
	movl $2048, %ecx
	rep stosl
	movl $mb_pd, %edi
	xorl %ecx, %ecx
2:	movl %ecx, %eax
	shll $21, %eax
	orl $0x83, %eax
	cmpl $1536, %ecx
	jb 3f
	orl $0x18, %eax
3:	movl %eax, (%edi,%ecx,8)
	movl $0, 4(%edi,%ecx,8)
	incl %ecx
	cmpl $2048, %ecx
	jb 2b
	movl $mb_pd + 3, %eax
	movl %eax, mb_pdpt
	addl $4096, %eax
	movl %eax, mb_pdpt + 8
	addl $4096, %eax
	movl %eax, mb_pdpt + 16
	addl $4096, %eax
	movl %eax, mb_pdpt + 24
	movl $mb_pdpt + 3, %eax
	movl %eax, mb_pml4
	movl $mb_pml4, %eax
	movl %eax, %cr3
	movl %cr4, %eax
	orl $0x20, %eax /* PAE */
	movl %eax, %cr4
	movl $0xc0000080, %ecx
	rdmsr
	orl $0x100, %eax /* EFER.LME */
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax /* PG | PE */
	movl %eax, %cr0
	lgdt mb_gdt_desc
	ljmp $0x10, $mb_entry64

	.code64
mb_entry64:
	movl $0x18, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs
	leaq boot_stack_top(%rip), %rsp
	movl mb_info(%rip), %edi
	call multiboot_boot_params
	movq %rax, %rsi
	jmp _start

	.balign 8
mb_gdt:
	.quad 0
	.quad 0
	.quad 0x00af9a000000ffff /* 0x10: 64-bit code */
	.quad 0x00cf92000000ffff /* 0x18: data */
mb_gdt_desc:
	.word mb_gdt_desc - mb_gdt - 1
	.long mb_gdt

	.bss
	.balign 4096
mb_pml4:
	.skip 4096
mb_pdpt:
	.skip 4096
mb_pd:
	.skip 4 * 4096
mb_info:
	.skip 4
	.balign 16
boot_stack:
	.skip 16384
boot_stack_top:

	.section .note.GNU-stack, "", @progbits
