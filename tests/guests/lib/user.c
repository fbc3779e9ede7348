#include "cpu.h"
#include "io.h"
#include "kit.h"

#define PTE_P	0x001ull
#define PTE_RW	0x002ull
#define PTE_US	0x004ull
#define PTE_PWT 0x008ull
#define PTE_PCD 0x010ull
#define PTE_PS	0x080ull

#define USER_HIGH_PDS 8 /* GiB-sized windows above 4 GiB that kit_map_mmio can add */

static uint64_t user_pml4[512] __attribute__((aligned(4096)));
static uint64_t user_pdpt[512] __attribute__((aligned(4096)));
static uint64_t user_pd[4][512] __attribute__((aligned(4096)));
static uint64_t user_pd_high[USER_HIGH_PDS][512] __attribute__((aligned(4096)));
static unsigned user_pd_high_used;
static uint8_t user_stack[64 * 1024] __attribute__((aligned(16)));
static uint8_t ring0_stack[16 * 1024] __attribute__((aligned(16)));
static bool user_ready;
static uint64_t io_emulated;

/* #GP from ring 3 on an in/out instruction: do the access here (see cpu.h). Handles the
 * forms the compiler and the kit emit: E4/E5/E6/E7 ib (port immediate) and EC/ED/EE/EF
 * (port in DX), with an optional 0x66 operand-size prefix. */
static void user_gp(struct intr_frame *f)
{
	if ((f->cs & 3) != 3 || f->error != 0)
		intr_report_and_exit(f);
	const uint8_t *ip = phys(f->rip);
	unsigned len = 0, size = 4;
	if (ip[0] == 0x66) {
		size = 2;
		len = 1;
	}
	uint8_t op = ip[len++];
	uint16_t port;
	if (op >= 0xe4 && op <= 0xe7) {
		port = ip[len++];
	} else if (op >= 0xec && op <= 0xef) {
		port = (uint16_t)f->rdx;
	} else {
		intr_report_and_exit(f);
	}
	if (!(op & 1))
		size = 1;
	bool out = op & 2;
	if (out) {
		if (size == 1)
			outb(port, (uint8_t)f->rax);
		else if (size == 2)
			outw(port, (uint16_t)f->rax);
		else
			outl(port, (uint32_t)f->rax);
	} else {
		if (size == 1)
			f->rax = (f->rax & ~0xffull) | inb(port);
		else if (size == 2)
			f->rax = (f->rax & ~0xffffull) | inw(port);
		else
			f->rax = inl(port); /* 32-bit results zero-extend */
	}
	f->rip += len;
	io_emulated++;
}

uint64_t user_io_emulated(void)
{
	return io_emulated;
}

uint64_t user_call_asm(uint64_t (*fn)(uint64_t), uint64_t arg, uint64_t user_rsp, uint64_t rflags);
void user_ud_entry(void);

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
	idt_set_entry(6, user_ud_entry, 0);
	idt_set_handler(13, user_gp);

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

bool kit_map_mmio(uint64_t addr, uint64_t len)
{
	if (!len)
		return true;
	uint64_t last = addr + len - 1;
	if (last < addr || (last >> 30) >= 512)
		return false;
	if (!user_ready) {
		if (cpl() != 0)
			return false;
		user_init();
	}
	for (uint64_t g = addr >> 30; g <= last >> 30; g++) {
		if (g < 4 || (user_pdpt[g] & PTE_P))
			continue;
		if (user_pd_high_used == USER_HIGH_PDS)
			return false;
		uint64_t *pd = user_pd_high[user_pd_high_used++];
		for (uint64_t i = 0; i < 512; i++)
			pd[i] = (g << 30) | (i << 21) | PTE_P | PTE_RW | PTE_US | PTE_PS | PTE_PCD |
				PTE_PWT;
		barrier();
		/* a not-present entry is never cached, so no TLB flush is needed (ring 3 can
		 * add a window too: the tables are in the kit's U-mapped memory) */
		user_pdpt[g] = (uint64_t)(uintptr_t)pd | PTE_P | PTE_RW | PTE_US;
	}
	return true;
}
