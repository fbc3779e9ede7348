/* Decoding the instructions kvmini completes for hosts that cannot emulate them: the
 * memory operand of cmpxchg8b/16b, in the forms compilers emit. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "arch/x86/emulate.h"

static struct x86_cmpxchg_insn em_decode(const uint8_t *code, size_t n)
{
	struct x86_cmpxchg_insn in;
	cr_assert(x86_decode_cmpxchg(code, n, &in), "failed to decode");
	return in;
}

Test(emulate, lock_cmpxchg16b_base_disp8)
{
	/* lock cmpxchg16b 0x20(%rbp): what Linux's slab allocator executed here. */
	const uint8_t code[] = {0xf0, 0x48, 0x0f, 0xc7, 0x4d, 0x20, 0x74, 0x66};
	struct x86_cmpxchg_insn in = em_decode(code, sizeof(code));
	cr_assert_eq(in.length, 6);
	cr_assert(in.wide);
	cr_assert_eq(in.base, 5);
	cr_assert_eq(in.index, -1);
	cr_assert_eq(in.disp, 0x20);
	struct kvm_regs r = {.rbp = 0x1000};
	struct kvm_sregs s = {0};
	cr_assert_eq(x86_cmpxchg_address(&in, &r, &s), 0x1020);
}

Test(emulate, gs_prefix_sib_and_extended_registers)
{
	/* cmpxchg16b %gs:-0x10(%r12,%r13,8): REX.W|X|B = 0x4b. */
	const uint8_t code[] = {0x65, 0x4b, 0x0f, 0xc7, 0x4c, 0xec, 0xf0};
	struct x86_cmpxchg_insn in = em_decode(code, sizeof(code));
	cr_assert_eq(in.length, 7);
	cr_assert_eq(in.base, 12);
	cr_assert_eq(in.index, 13);
	cr_assert_eq(in.scale, 8);
	cr_assert_eq(in.disp, -0x10);
	cr_assert_eq(in.segment, 5);
	struct kvm_regs r = {.r12 = 0x100, .r13 = 2};
	struct kvm_sregs s = {.gs = {.base = 0xffff888000000000ull}};
	cr_assert_eq(x86_cmpxchg_address(&in, &r, &s), 0xffff888000000000ull + 0x100 + 16 - 0x10);
}

Test(emulate, rip_relative_and_disp32_forms)
{
	/* lock cmpxchg16b 0x1234(%rip) */
	const uint8_t rip[] = {0xf0, 0x48, 0x0f, 0xc7, 0x0d, 0x34, 0x12, 0x00, 0x00};
	struct x86_cmpxchg_insn in = em_decode(rip, sizeof(rip));
	cr_assert(in.rip_relative);
	cr_assert_eq(in.length, 9);
	struct kvm_regs r = {.rip = 0x5000};
	struct kvm_sregs s = {0};
	cr_assert_eq(x86_cmpxchg_address(&in, &r, &s), 0x5000 + 9 + 0x1234);
	/* cmpxchg8b 0x2000 (SIB with no base and no index: absolute disp32) */
	const uint8_t abs[] = {0x0f, 0xc7, 0x0c, 0x25, 0x00, 0x20, 0x00, 0x00};
	in = em_decode(abs, sizeof(abs));
	cr_assert_not(in.wide);
	cr_assert_eq(in.base, -1);
	cr_assert_eq(in.index, -1);
	cr_assert_eq(x86_cmpxchg_address(&in, &r, &s), 0x2000);
}

Test(emulate, refuses_what_it_does_not_complete)
{
	struct x86_cmpxchg_insn in;
	const uint8_t regform[] = {0x48, 0x0f, 0xc7, 0xc8};	    /* mod 3: not a cmpxchg */
	const uint8_t rdrand[] = {0x48, 0x0f, 0xc7, 0xf0};	    /* 0f c7 /6 */
	const uint8_t addr32[] = {0x67, 0x48, 0x0f, 0xc7, 0x0e};    /* 32-bit addressing */
	const uint8_t cut[] = {0xf0, 0x48, 0x0f, 0xc7, 0x8d, 0x00}; /* disp32 cut short */
	const uint8_t popcnt[] = {0xf3, 0x48, 0x0f, 0xb8, 0xc7};
	cr_assert_not(x86_decode_cmpxchg(regform, sizeof(regform), &in));
	cr_assert_not(x86_decode_cmpxchg(rdrand, sizeof(rdrand), &in));
	cr_assert_not(x86_decode_cmpxchg(addr32, sizeof(addr32), &in));
	cr_assert_not(x86_decode_cmpxchg(cut, sizeof(cut), &in));
	cr_assert_not(x86_decode_cmpxchg(popcnt, sizeof(popcnt), &in));
	cr_assert_not(x86_decode_cmpxchg(popcnt, 0, &in));
}

/* ---- the page walk behind a completed write ---- */

#include <stdlib.h>

#include "core/guest_mem.h"

#define EM_P  1ull
#define EM_RW 2ull
#define EM_US 4ull
#define EM_PS 0x80ull
#define EM_WP (1ull << 16)

static struct guest_mem em_mem;
static uint8_t *em_ram;

static uint64_t *em_entry(uint64_t table, unsigned index)
{
	return (uint64_t *)(em_ram + table + index * 8);
}

/* PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000; linear 0x40201000 (PML4 0, PDPT 1,
 * PD 1, PT 1) maps to 0x7000, with `leaf` flags on the PT entry. */
static void em_tables(uint64_t upper, uint64_t leaf)
{
	memset(&em_mem, 0, sizeof(em_mem));
	free(em_ram);
	em_ram = calloc(1, 1 << 20);
	cr_assert_eq(guest_mem_add_region(&em_mem, 0, 1 << 20, em_ram), 0);
	*em_entry(0x1000, 0) = 0x2000 | upper;
	*em_entry(0x2000, 1) = 0x3000 | upper;
	*em_entry(0x3000, 1) = 0x4000 | upper;
	*em_entry(0x4000, 1) = 0x7000 | leaf;
}

#define EM_LINEAR 0x40201000ull

Test(emulate, walk_finds_the_page_and_sets_accessed_dirty)
{
	em_tables(EM_P | EM_RW, EM_P | EM_RW);
	uint64_t phys = 0;
	cr_assert_eq(
	    x86_walk_for_supervisor_write(&em_mem, EM_WP, 0x1000, 0, 0, EM_LINEAR + 0x30, &phys),
	    0);
	cr_assert_eq(phys, 0x7030);
	cr_assert(*em_entry(0x4000, 1) & 0x60, "accessed and dirty set on the leaf");
	cr_assert(*em_entry(0x1000, 0) & 0x20, "accessed set on the upper levels");
}

Test(emulate, walk_refuses_what_the_cpu_would_fault)
{
	uint64_t phys;
	em_tables(EM_P | EM_RW, EM_P); /* read-only page */
	cr_assert_eq(x86_walk_for_supervisor_write(&em_mem, EM_WP, 0x1000, 0, 0, EM_LINEAR, &phys),
		     -EFAULT);
	cr_assert_eq(x86_walk_for_supervisor_write(&em_mem, 0, 0x1000, 0, 0, EM_LINEAR, &phys), 0,
		     "without CR0.WP ring 0 may write read-only pages");
	em_tables(EM_P, EM_P | EM_RW); /* read-only above the leaf */
	cr_assert_eq(x86_walk_for_supervisor_write(&em_mem, EM_WP, 0x1000, 0, 0, EM_LINEAR, &phys),
		     -EFAULT);
	em_tables(EM_P | EM_RW, EM_RW); /* not present */
	cr_assert_eq(x86_walk_for_supervisor_write(&em_mem, 0, 0x1000, 0, 0, EM_LINEAR, &phys),
		     -EFAULT);
	em_tables(EM_P | EM_RW | EM_US, EM_P | EM_RW | EM_US); /* a user page */
	uint64_t smap = 1ull << 21, ac = 1ull << 18;
	cr_assert_eq(
	    x86_walk_for_supervisor_write(&em_mem, EM_WP, 0x1000, smap, 0, EM_LINEAR, &phys),
	    -EFAULT, "SMAP forbids ring 0 writes to user pages");
	cr_assert_eq(
	    x86_walk_for_supervisor_write(&em_mem, EM_WP, 0x1000, smap, ac, EM_LINEAR, &phys), 0,
	    "unless RFLAGS.AC is set");
	cr_assert_eq(x86_walk_for_supervisor_write(&em_mem, EM_WP, 0x1000, 0, 0, EM_LINEAR, &phys),
		     0);
	cr_assert_eq(x86_walk_for_supervisor_write(&em_mem, EM_WP, 0x1000, 0, 0,
						   0x0000800000000000ull, &phys),
		     -EFAULT, "non-canonical");
	cr_assert_eq(
	    x86_walk_for_supervisor_write(&em_mem, EM_WP, 0x1000, 1ull << 12, 0, EM_LINEAR, &phys),
	    -ENOTSUP, "5-level paging is not walked");
	cr_assert_eq(
	    x86_walk_for_supervisor_write(&em_mem, EM_WP, 0x200000, 0, 0, EM_LINEAR, &phys),
	    -EFAULT, "tables outside RAM");
}

Test(emulate, walk_large_pages)
{
	uint64_t phys;
	em_tables(EM_P | EM_RW, EM_P | EM_RW);
	*em_entry(0x3000, 1) = 0x600000 | EM_P | EM_RW | EM_PS; /* 2 MiB page */
	cr_assert_eq(
	    x86_walk_for_supervisor_write(&em_mem, EM_WP, 0x1000, 0, 0, EM_LINEAR + 0x12345, &phys),
	    0);
	cr_assert_eq(phys, 0x600000 + 0x1000 + 0x12345);
	*em_entry(0x2000, 1) = 0x80000000ull | EM_P | EM_RW | EM_PS; /* 1 GiB page */
	cr_assert_eq(x86_walk_for_supervisor_write(&em_mem, EM_WP, 0x1000, 0, 0, EM_LINEAR, &phys),
		     0);
	cr_assert_eq(phys, 0x80000000ull + (EM_LINEAR & 0x3fffffff));
	free(em_ram);
	em_ram = NULL;
}
