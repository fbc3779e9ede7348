/* syscall: where a `syscall` from ring 3 lands, as every 64-bit Linux system call does.
 *
 * Sets EFER.SCE, STAR (kernel CS 0x10 / SS 0x18, user base 0x18), LSTAR (syscall_entry
 * below) and SFMASK (IF), then runs `syscall` at CPL 3 through user_call(). The kit's user
 * page tables map the guest with the U bit, so the entry code is reachable at either
 * privilege: it records CS and jumps to C, which prints what the CPU did:
 *   syscall: entry ran at cpl C cs 0xS rcx=<return address ok|wrong> r11=<rflags ok|wrong>
 * On hardware and under KVM with VT-x/SVM, `syscall` loads CS from STAR: cpl 0, cs 0x10.
 * Then "syscall: OK" and power-off (kvmini exits 0); at any other CPL "syscall: FAIL ..."
 * and debug-exit 9 (kvmini exits 19). */
#include "kit.h"

#define MSR_EFER   0xc0000080u
#define MSR_STAR   0xc0000081u
#define MSR_LSTAR  0xc0000082u
#define MSR_SFMASK 0xc0000084u
#define EFER_SCE   1ull

uint64_t entry_cs, entry_rcx, entry_r11;
void syscall_entry(void);
void syscall_return_point(void);

__asm__(".text\n"
	".globl syscall_entry\n"
	"syscall_entry:\n"
	"	movq %rcx, entry_rcx(%rip)\n"
	"	movq %r11, entry_r11(%rip)\n"
	"	movq %cs, %rax\n"
	"	movq %rax, entry_cs(%rip)\n"
	"	andq $-16, %rsp\n"
	"	call syscall_landed\n"
	"	ud2\n");

__attribute__((noreturn, used)) void syscall_landed(void)
{
	unsigned c = (unsigned)(entry_cs & 3);
	bool rcx_ok = entry_rcx == (uint64_t)(uintptr_t)syscall_return_point;
	printf("syscall: entry ran at cpl %u cs 0x%lx rcx=%s r11=%s\n", c, entry_cs,
	       rcx_ok ? "ok" : "wrong", (entry_r11 & 0x202) == 0x202 ? "ok" : "wrong");
	if (c != 0 || entry_cs != 0x10) {
		printf("syscall: FAIL the entry runs at cpl %u (cs 0x%lx), not in the kernel\n", c,
		       entry_cs);
		debug_exit(9);
	}
	if (!rcx_ok) {
		puts("syscall: FAIL rcx does not hold the return address");
		debug_exit(9);
	}
	puts("syscall: OK");
	poweroff();
}

static uint64_t user_main(uint64_t arg)
{
	__asm__ volatile("syscall\n"
			 ".globl syscall_return_point\n"
			 "syscall_return_point:" ::
			     : "rcx", "r11", "memory");
	puts("syscall: FAIL syscall returned to ring 3 without running the entry");
	debug_exit(9);
}

int guest_main(const struct boot_params *bp)
{
	wrmsr(MSR_STAR, (0x18ull << 48) | (0x10ull << 32));
	wrmsr(MSR_LSTAR, (uint64_t)(uintptr_t)syscall_entry);
	wrmsr(MSR_SFMASK, 0x200);
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
	user_call(user_main, 0);
	puts("syscall: FAIL returned from ring 3");
	return 9;
}
