/* Decoding the instructions kvmini completes for hosts that cannot emulate them: the
 * memory operand of cmpxchg8b/16b, in the forms compilers emit. */
#include <criterion/criterion.h>
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
