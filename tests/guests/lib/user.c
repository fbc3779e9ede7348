#include "cpu.h"
#include "io.h"

#define PTE_P   0x001ull
#define PTE_RW  0x002ull
#define PTE_US  0x004ull
#define PTE_PWT 0x008ull
#define PTE_PCD 0x010ull
#define PTE_PS  0x080ull

static uint64_t user_pml4[512] __attribute__((aligned(4096)));
static uint64_t user_pdpt[512] __attribute__((aligned(4096)));
static uint64_t user_pd[4][512] __attribute__((aligned(4096)));
static uint8_t user_stack[64 * 1024] __attribute__((aligned(16)));
static uint8_t ring0_stack[16 * 1024] __attribute__((aligned(16)));
static bool user_ready;

uint64_t user_call_asm(uint64_t (*fn)(uint64_t), uint64_t arg, uint64_t user_rsp,
		       uint64_t rflags);
void user_return_entry(void);

void user_init(void)
{
	if (user_ready)
		return;
	for (uint64_t i = 0; i < 4 * 512; i++) {
		uint64_t pte = (i << 21) | PTE_P | PTE_RW | PTE_US | PTE_PS;
		if (i >= 3 * 512)
			pte |= PTE_PCD | PTE_PWT; /* 3-4 GiB: LAPIC, IOAPIC, MMIO */
		user_pd[i / 512][i % 512] = pte;
	}
	for (unsigned j = 0; j < 4; j++)
		user_pdpt[j] = (uint64_t)(uintptr_t)user_pd[j] | PTE_P | PTE_RW | PTE_US;
	user_pml4[0] = (uint64_t)(uintptr_t)user_pdpt | PTE_P | PTE_RW | PTE_US;

	cpu_set_rsp0((uint64_t)(uintptr_t)(ring0_stack + sizeof(ring0_stack)));
	idt_set_entry(USER_RETURN_VECTOR, user_return_entry, 3);

	uint64_t cr4 = read_cr4();
	if (cr4 & CR4_PGE) { /* flush global TLB entries of the supervisor-only boot map */
		write_cr4(cr4 & ~CR4_PGE);
		write_cr4(cr4);
	}
	write_cr3((uint64_t)(uintptr_t)user_pml4);
	user_ready = true;
}

uint64_t user_call(uint64_t (*fn)(uint64_t arg), uint64_t arg)
{
	user_init();
	uint64_t flags = (read_rflags() & RFLAGS_IF) | RFLAGS_IOPL | 0x2;
	return user_call_asm(fn, arg, (uint64_t)(uintptr_t)(user_stack + sizeof(user_stack)),
			     flags);
}
