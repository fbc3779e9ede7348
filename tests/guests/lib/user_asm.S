/* Ring 3 entry and return for user_call() (user.c).
 *
 * uint64_t user_call_asm(fn %rdi, arg %rsi, user_rsp %rdx, user_rflags %rcx):
 * saves the callee-saved registers and RFLAGS on the ring-0 stack, remembers that stack,
 * and iretq's to user_thunk at CPL 3, which calls fn(arg) and hands the result back by
 * executing the ud2 at user_return_ud2. The #UD entry (user_ud_entry, installed by
 * user_init) recognises that one instruction from CPL 3, drops the exception frame, returns
 * to the saved stack and to user_call_asm's caller with the result in %rax; any other #UD
 * goes to the kit's normal stub (and reporter).
 *
 * Why not `int $0x80`: on PVM hosts a software interrupt other than int3 from guest ring 3
 * raises #UD instead of going through the IDT gate; exceptions are always delivered. */
	.text
	.code64

	.globl user_call_asm
user_call_asm:
	pushq %rbp
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	pushfq
	movq %rsp, user_kernel_rsp(%rip)
	pushq $0x23		/* SS: user data | 3 */
	pushq %rdx		/* RSP */
	pushq %rcx		/* RFLAGS */
	pushq $0x2b		/* CS: user code | 3 */
	leaq user_thunk(%rip), %rax
	pushq %rax		/* RIP */
	movq %rdi, %rax
	movq %rsi, %rdi
	iretq

user_thunk:			/* CPL 3 from here */
	call *%rax
	movq %rax, %rdi
user_return_ud2:
	ud2

	.globl user_ud_entry
user_ud_entry:			/* #UD: frame RIP, CS, RFLAGS, RSP, SS (no error code) */
	testb $3, 8(%rsp)
	jz 1f			/* from ring 0: a real #UD */
	pushq %rax
	leaq user_return_ud2(%rip), %rax
	cmpq %rax, 8(%rsp)
	popq %rax
	je user_return		/* user_thunk is done */
1:	jmp isr_stubs + 16 * 6

user_return:			/* CPL 0 again, interrupts off (interrupt gate) */
	movq user_kernel_rsp(%rip), %rsp
	movq %rdi, %rax
	movl $0x18, %ecx
	movl %ecx, %ds
	movl %ecx, %es
	movl %ecx, %ss
	popfq
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	ret

	.bss
	.balign 8
user_kernel_rsp:
	.quad 0

	.section .note.GNU-stack, "", @progbits
