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

/* ---- SSE/FPU completions: decoded once, faults computed from the vCPU state, the
 * instruction itself run on the host against the guest's registers and a bounce copy of its
 * operand ---- */

#include "arch/x86/simd.h"

#define FX_MXCSR  24
#define FX_XMM(i) (160 + 16 * (i))

/* A 64-bit ring-0 vCPU with SSE enabled, the page tables of em_tables() and the host's own
 * FXSAVE image as a starting point (so MXCSR_MASK is the CPU's). */
static void em_vcpu(struct x86_simd_vcpu *v, uint64_t leaf)
{
	memset(v, 0, sizeof(*v));
	em_tables(EM_P | EM_RW, leaf);
	v->sregs.efer = (1ull << 10) | (1ull << 8);
	v->sregs.cs.l = 1;
	v->sregs.cs.selector = 0x10;
	v->sregs.cr0 = 0x80000033ull | EM_WP;			 /* PG PE MP ET NE WP */
	v->sregs.cr4 = (1ull << 5) | (1ull << 9) | (1ull << 10); /* PAE OSFXSR OSXMMEXCPT */
	v->sregs.cr3 = 0x1000;
	v->regs.rip = 0xffffffff81000000ull;
	v->regs.rflags = 2;
	__asm__ volatile("fxsave64 %0" : "=m"(v->fx));
	uint32_t mxcsr = 0x1f80;
	memcpy(v->fx + FX_MXCSR, &mxcsr, 4);
}

static enum x86_simd_outcome em_run(struct x86_simd_vcpu *v, const uint8_t *code, size_t n,
				    struct x86_fault *f)
{
	struct x86_simd_insn in;
	cr_assert(x86_simd_decode(code, n, &in), "decodes");
	return x86_simd_complete(&in, v, &em_mem, f, NULL);
}

static uint32_t em_mxcsr(const struct x86_simd_vcpu *v)
{
	uint32_t m;
	memcpy(&m, v->fx + FX_MXCSR, 4);
	return m;
}

Test(emulate, simd_decodes_what_linux_runs)
{
	struct x86_simd_insn in;
	/* ldmxcsr 0x4(%rsp): kernel_fpu_begin, where the Debian kernel stopped */
	const uint8_t ldmxcsr[] = {0x0f, 0xae, 0x54, 0x24, 0x04};
	cr_assert(x86_simd_decode(ldmxcsr, sizeof(ldmxcsr), &in));
	cr_assert_str_eq(x86_simd_kind_name(in.kind), "ldmxcsr");
	cr_assert_eq(in.length, 5);
	cr_assert(in.mem);
	cr_assert_eq(in.base, 4);
	cr_assert_eq(in.disp, 4);
	cr_assert_eq(in.mem_size, 4);
	cr_assert_not(in.mem_write);
	/* fxsave64 (%rdi): REX.W */
	const uint8_t fxsave[] = {0x48, 0x0f, 0xae, 0x07};
	cr_assert(x86_simd_decode(fxsave, sizeof(fxsave), &in));
	cr_assert_str_eq(x86_simd_kind_name(in.kind), "fxsave");
	cr_assert_eq(in.mem_size, 512);
	cr_assert_eq(in.align, 16);
	cr_assert(in.mem_write);
	/* pshufb 0x10(%rip), %xmm13 (66 44 0f 38 00 2d disp32) */
	const uint8_t pshufb[] = {0x66, 0x44, 0x0f, 0x38, 0x00, 0x2d, 0x10, 0, 0, 0};
	cr_assert(x86_simd_decode(pshufb, sizeof(pshufb), &in));
	cr_assert(in.rip_relative);
	cr_assert_eq(in.reg, 13);
	cr_assert_eq(in.length, 10);
	/* pshufd $0x93, %xmm1, %xmm1: register form with imm8 */
	const uint8_t pshufd[] = {0x66, 0x0f, 0x70, 0xc9, 0x93};
	cr_assert(x86_simd_decode(pshufd, sizeof(pshufd), &in));
	cr_assert_not(in.mem);
	cr_assert_eq(in.imm8, 0x93);
	cr_assert_eq(in.length, 5);
	/* popcnt %rdi, %rax */
	const uint8_t popcnt[] = {0xf3, 0x48, 0x0f, 0xb8, 0xc7};
	cr_assert(x86_simd_decode(popcnt, sizeof(popcnt), &in));
	cr_assert_str_eq(x86_simd_kind_name(in.kind), "popcnt");
}

Test(emulate, simd_refuses_what_it_does_not_know)
{
	struct x86_simd_insn in;
	const uint8_t vex[] = {0xc5, 0xf9, 0xef, 0xc0};		     /* vpxor: VEX */
	const uint8_t lock[] = {0xf0, 0x0f, 0xae, 0x54, 0x24, 0x04}; /* lock ldmxcsr: #UD */
	const uint8_t a32[] = {0x67, 0x0f, 0xae, 0x10};		     /* 32-bit addressing */
	const uint8_t psrlw_bad[] = {0x66, 0x0f, 0x71, 0xc8, 1};     /* 66 0f 71 /1: #UD */
	const uint8_t mmx[] = {0x0f, 0xef, 0xc0};		     /* pxor %mm0: MMX */
	const uint8_t rsp[] = {0xf3, 0x48, 0x0f, 0xb8, 0xe0};	     /* popcnt %rax, %rsp */
	const uint8_t maskmov[] = {0x66, 0x0f, 0xf7, 0xc1};	     /* implicit (%rdi) */
	const uint8_t cut[] = {0x0f, 0xae, 0x54, 0x24};
	const uint8_t xsaves[] = {0x48, 0x0f, 0xc7, 0x2f};
	cr_assert_not(x86_simd_decode(vex, sizeof(vex), &in));
	cr_assert_not(x86_simd_decode(lock, sizeof(lock), &in));
	cr_assert_not(x86_simd_decode(a32, sizeof(a32), &in));
	cr_assert_not(x86_simd_decode(psrlw_bad, sizeof(psrlw_bad), &in));
	cr_assert_not(x86_simd_decode(mmx, sizeof(mmx), &in));
	cr_assert_not(x86_simd_decode(rsp, sizeof(rsp), &in));
	cr_assert_not(x86_simd_decode(maskmov, sizeof(maskmov), &in));
	cr_assert_not(x86_simd_decode(cut, sizeof(cut), &in));
	cr_assert_not(x86_simd_decode(xsaves, sizeof(xsaves), &in));
}

Test(emulate, simd_ldmxcsr_and_stmxcsr)
{
	struct x86_simd_vcpu v;
	struct x86_fault f;
	em_vcpu(&v, EM_P | EM_RW);
	v.regs.rsp = EM_LINEAR + 0x100;
	uint32_t want = 0x9fc0; /* FTZ DAZ, all masked, RC = 00 */
	memcpy(em_ram + 0x7104, &want, 4);
	const uint8_t ld[] = {0x0f, 0xae, 0x54, 0x24, 0x04};
	cr_assert_eq(em_run(&v, ld, sizeof(ld), &f), X86_SIMD_DONE);
	cr_assert_eq(em_mxcsr(&v), want);
	cr_assert_eq(v.regs.rip, 0xffffffff81000005ull);
	cr_assert_eq(v.regs.rsp, EM_LINEAR + 0x100, "rsp untouched");
	cr_assert(*em_entry(0x4000, 1) & 0x20, "accessed set");
	cr_assert_not(*em_entry(0x4000, 1) & 0x40, "a read does not set dirty");
	/* stmxcsr 0x8(%rsp) */
	const uint8_t st[] = {0x0f, 0xae, 0x5c, 0x24, 0x08};
	cr_assert_eq(em_run(&v, st, sizeof(st), &f), X86_SIMD_DONE);
	uint32_t got;
	memcpy(&got, em_ram + 0x7108, 4);
	cr_assert_eq(got, want);
	cr_assert(*em_entry(0x4000, 1) & 0x40, "a write sets dirty");
}

Test(emulate, simd_faults_as_the_cpu_would)
{
	struct x86_simd_vcpu v;
	struct x86_fault f;
	const uint8_t ld[] = {0x0f, 0xae, 0x54, 0x24, 0x04};
	em_vcpu(&v, EM_P | EM_RW);
	v.regs.rsp = EM_LINEAR;
	uint32_t reserved = 0x1f80 | (1u << 20);
	memcpy(em_ram + 0x7004, &reserved, 4);
	cr_assert_eq(em_run(&v, ld, sizeof(ld), &f), X86_SIMD_FAULT);
	cr_assert_eq(f.vector, 13, "MXCSR reserved bits: #GP");
	cr_assert(f.has_error_code);
	cr_assert_eq(f.error_code, 0);
	cr_assert_eq(v.regs.rip, 0xffffffff81000000ull, "RIP stays on the faulting instruction");
	cr_assert_eq(em_mxcsr(&v), 0x1f80);

	em_vcpu(&v, EM_P | EM_RW);
	v.sregs.cr0 |= 8; /* TS */
	cr_assert_eq(em_run(&v, ld, sizeof(ld), &f), X86_SIMD_FAULT);
	cr_assert_eq(f.vector, 7, "CR0.TS: #NM");
	cr_assert_not(f.has_error_code);
	em_vcpu(&v, EM_P | EM_RW);
	v.sregs.cr4 &= ~(1ull << 9);
	cr_assert_eq(em_run(&v, ld, sizeof(ld), &f), X86_SIMD_FAULT);
	cr_assert_eq(f.vector, 6, "CR4.OSFXSR clear: #UD");

	/* movaps %xmm0, (%rax): misaligned, then not present, then read-only */
	const uint8_t movaps[] = {0x0f, 0x29, 0x00};
	em_vcpu(&v, EM_P | EM_RW);
	v.regs.rax = EM_LINEAR + 8;
	cr_assert_eq(em_run(&v, movaps, sizeof(movaps), &f), X86_SIMD_FAULT);
	cr_assert_eq(f.vector, 13, "misaligned movaps: #GP");
	em_vcpu(&v, EM_RW);
	v.regs.rax = EM_LINEAR + 0x40;
	cr_assert_eq(em_run(&v, movaps, sizeof(movaps), &f), X86_SIMD_FAULT);
	cr_assert_eq(f.vector, 14);
	cr_assert_eq(f.error_code, 2, "not present, write, supervisor");
	cr_assert(f.set_cr2);
	cr_assert_eq(f.cr2, EM_LINEAR + 0x40);
	em_vcpu(&v, EM_P);
	v.regs.rax = EM_LINEAR + 0x40;
	cr_assert_eq(em_run(&v, movaps, sizeof(movaps), &f), X86_SIMD_FAULT);
	cr_assert_eq(f.error_code, 3, "protection, write");
	/* a read of the read-only page is fine: movaps (%rax), %xmm3 */
	const uint8_t load[] = {0x0f, 0x28, 0x18};
	memset(em_ram + 0x7040, 0x5a, 16);
	cr_assert_eq(em_run(&v, load, sizeof(load), &f), X86_SIMD_DONE);
	cr_assert_eq(v.fx[FX_XMM(3)], 0x5a);
	cr_assert_eq(v.fx[FX_XMM(3) + 15], 0x5a);
	/* fxsave to a misaligned address */
	const uint8_t fxsave[] = {0x48, 0x0f, 0xae, 0x00};
	em_vcpu(&v, EM_P | EM_RW);
	v.regs.rax = EM_LINEAR + 0x108;
	cr_assert_eq(em_run(&v, fxsave, sizeof(fxsave), &f), X86_SIMD_FAULT);
	cr_assert_eq(f.vector, 13);
	/* a user page under SMAP */
	em_tables(EM_P | EM_RW | EM_US, EM_P | EM_RW | EM_US);
	v.sregs.cr4 |= 1ull << 21;
	v.regs.rax = EM_LINEAR;
	cr_assert_eq(em_run(&v, load, sizeof(load), &f), X86_SIMD_FAULT);
	cr_assert_eq(f.error_code, 1, "SMAP: protection, read");
}

Test(emulate, simd_arithmetic_and_general_registers)
{
	struct x86_simd_vcpu v;
	struct x86_fault f;
	em_vcpu(&v, EM_P | EM_RW);
	for (int i = 0; i < 16; i++) {
		v.fx[FX_XMM(1) + i] = (uint8_t)i;
		v.fx[FX_XMM(2) + i] = 0xf0;
	}
	/* pxor %xmm2, %xmm1 */
	const uint8_t pxor[] = {0x66, 0x0f, 0xef, 0xca};
	cr_assert_eq(em_run(&v, pxor, sizeof(pxor), &f), X86_SIMD_DONE);
	for (int i = 0; i < 16; i++)
		cr_assert_eq(v.fx[FX_XMM(1) + i], (uint8_t)(i ^ 0xf0));
	/* paddd 0x10(%rbx,%rcx,4), %xmm1 with a memory operand */
	uint32_t add[4] = {1, 2, 3, 4};
	memcpy(em_ram + 0x7020, add, 16);
	v.regs.rbx = EM_LINEAR;
	v.regs.rcx = 4;
	const uint8_t paddd[] = {0x66, 0x0f, 0xfe, 0x4c, 0x8b, 0x10};
	uint32_t before[4], after[4];
	memcpy(before, v.fx + FX_XMM(1), 16);
	cr_assert_eq(em_run(&v, paddd, sizeof(paddd), &f), X86_SIMD_DONE);
	memcpy(after, v.fx + FX_XMM(1), 16);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(after[i], before[i] + add[i]);
	cr_assert_eq(v.regs.rbx, EM_LINEAR, "base register untouched");
	/* popcnt %rdi, %r11 (r11 is the stub's scratch register otherwise) */
	v.regs.rdi = 0xf0f0000000000001ull;
	v.regs.rflags = 2 | 1; /* CF set: popcnt clears it */
	const uint8_t popcnt[] = {0xf3, 0x4c, 0x0f, 0xb8, 0xdf};
	cr_assert_eq(em_run(&v, popcnt, sizeof(popcnt), &f), X86_SIMD_DONE);
	cr_assert_eq(v.regs.r11, 9);
	cr_assert_eq(v.regs.rflags, 2);
	v.regs.rdi = 0;
	cr_assert_eq(em_run(&v, popcnt, sizeof(popcnt), &f), X86_SIMD_DONE);
	cr_assert_eq(v.regs.r11, 0);
	cr_assert_eq(v.regs.rflags, 2 | 0x40, "ZF for zero");
	/* movd %xmm1, %eax; movq (%rbx), %xmm4 (f3 0f 7e) */
	const uint8_t movd[] = {0x66, 0x0f, 0x7e, 0xc8};
	v.regs.rax = ~0ull;
	cr_assert_eq(em_run(&v, movd, sizeof(movd), &f), X86_SIMD_DONE);
	cr_assert_eq(v.regs.rax, after[0], "32-bit write zero-extends");
	const uint8_t movq[] = {0xf3, 0x0f, 0x7e, 0x23};
	cr_assert_eq(em_run(&v, movq, sizeof(movq), &f), X86_SIMD_DONE);
	cr_assert_eq(memcmp(v.fx + FX_XMM(4), em_ram + 0x7000, 8), 0);
	for (int i = 8; i < 16; i++)
		cr_assert_eq(v.fx[FX_XMM(4) + i], 0, "movq clears the high half");
}

Test(emulate, simd_fxsave_fxrstor_round_trip)
{
	struct x86_simd_vcpu v;
	struct x86_fault f;
	em_vcpu(&v, EM_P | EM_RW);
	for (int i = 0; i < 16 * 16; i++)
		v.fx[FX_XMM(0) + i] = (uint8_t)(i * 7);
	uint8_t want[512];
	memcpy(want, v.fx, 512);
	memset(em_ram + 0x7000, 0xee, 1024);
	/* fxsave64 (%rax) */
	v.regs.rax = EM_LINEAR + 0x200;
	const uint8_t fxsave[] = {0x48, 0x0f, 0xae, 0x00};
	cr_assert_eq(em_run(&v, fxsave, sizeof(fxsave), &f), X86_SIMD_DONE);
	cr_assert_eq(memcmp(em_ram + 0x7200 + FX_XMM(0), want + FX_XMM(0), 256), 0);
	cr_assert_eq(memcmp(em_ram + 0x7200, want, 32), 0, "x87 control words and MXCSR");
	cr_assert_eq(em_ram[0x7200 + 500], 0xee, "bytes 464-511 are left alone");
	/* change the guest state, then fxrstor64 (%rax) brings it back */
	memset(v.fx + FX_XMM(0), 0, 256);
	const uint8_t fxrstor[] = {0x48, 0x0f, 0xae, 0x08};
	cr_assert_eq(em_run(&v, fxrstor, sizeof(fxrstor), &f), X86_SIMD_DONE);
	cr_assert_eq(memcmp(v.fx + FX_XMM(0), want + FX_XMM(0), 256), 0);
	/* fxrstor with MXCSR reserved bits: #GP */
	uint32_t bad = 1u << 31;
	memcpy(em_ram + 0x7200 + FX_MXCSR, &bad, 4);
	cr_assert_eq(em_run(&v, fxrstor, sizeof(fxrstor), &f), X86_SIMD_FAULT);
	cr_assert_eq(f.vector, 13);
}

Test(emulate, simd_page_crossing_operand)
{
	struct x86_simd_vcpu v;
	struct x86_fault f;
	em_vcpu(&v, EM_P | EM_RW);
	*em_entry(0x4000, 2) = 0x9000 | EM_P | EM_RW; /* next page: 0x9000, not contiguous */
	memset(em_ram + 0x7ff8, 0x11, 8);
	memset(em_ram + 0x9000, 0x22, 8);
	/* movdqu -8(%rax), %xmm5 with rax at the next page */
	v.regs.rax = EM_LINEAR + 0x1000;
	const uint8_t movdqu[] = {0xf3, 0x0f, 0x6f, 0x68, 0xf8};
	cr_assert_eq(em_run(&v, movdqu, sizeof(movdqu), &f), X86_SIMD_DONE);
	cr_assert_eq(v.fx[FX_XMM(5)], 0x11);
	cr_assert_eq(v.fx[FX_XMM(5) + 15], 0x22);
	*em_entry(0x4000, 2) = 0; /* second page gone: #PF on its address */
	cr_assert_eq(em_run(&v, movdqu, sizeof(movdqu), &f), X86_SIMD_FAULT);
	cr_assert_eq(f.vector, 14);
	cr_assert_eq(f.cr2, EM_LINEAR + 0x1000);
	cr_assert_eq(f.error_code, 0);
	free(em_ram);
	em_ram = NULL;
}

Test(emulate, cmdline_for_emulated_ring0_appends_unless_the_user_chose)
{
	char buf[128];
	cr_assert_str_eq(x86_cmdline_for_emulated_ring0("console=ttyS0", buf, sizeof(buf)),
			 "console=ttyS0 " X86_EMULATED_RING0_PARAMS);
	cr_assert_str_eq(x86_cmdline_for_emulated_ring0("", buf, sizeof(buf)),
			 X86_EMULATED_RING0_PARAMS);
	const char *own = "console=ttyS0 clearcpuid=popcnt quiet";
	cr_assert_eq(x86_cmdline_for_emulated_ring0(own, buf, sizeof(buf)), own,
		     "the user's clearcpuid= wins");
	const char *first = "clearcpuid=pku";
	cr_assert_eq(x86_cmdline_for_emulated_ring0(first, buf, sizeof(buf)), first);
	cr_assert_str_eq(x86_cmdline_for_emulated_ring0("foo.clearcpuid=1", buf, sizeof(buf)),
			 "foo.clearcpuid=1 " X86_EMULATED_RING0_PARAMS, "only a whole word counts");
	cr_assert_null(x86_cmdline_for_emulated_ring0("console=ttyS0", buf, 10), "too long");
}

Test(emulate, simd_general_purpose_loads_in_a_run)
{
	struct x86_simd_vcpu v;
	struct x86_fault f;
	em_vcpu(&v, EM_P | EM_RW);
	em_ram[0x700e] = 0xfe;
	/* movzbl 0xe(%rcx), %eax: what blake2s interleaves with its movd loads */
	const uint8_t movzbl[] = {0x0f, 0xb6, 0x41, 0x0e};
	v.regs.rcx = EM_LINEAR;
	v.regs.rax = ~0ull;
	v.regs.rflags = 2 | 0x41; /* flags are left as they were */
	cr_assert_eq(em_run(&v, movzbl, sizeof(movzbl), &f), X86_SIMD_DONE);
	cr_assert_eq(v.regs.rax, 0xfe);
	cr_assert_eq(v.regs.rflags, 2 | 0x41);
	cr_assert_eq(v.regs.rip, 0xffffffff81000004ull);
	free(em_ram);
	em_ram = NULL;
}

Test(emulate, simd_loop_control_keeps_a_run_going)
{
	struct x86_simd_vcpu v;
	struct x86_fault f;
	em_vcpu(&v, EM_P | EM_RW);
	uint64_t rip0 = v.regs.rip;
	/* add $0x10, %r11 (a register the memory forms use as scratch) */
	const uint8_t add[] = {0x49, 0x83, 0xc3, 0x10};
	v.regs.r11 = 0xfffffffffffffff0ull;
	cr_assert_eq(em_run(&v, add, sizeof(add), &f), X86_SIMD_DONE);
	cr_assert_eq(v.regs.r11, 0);
	cr_assert_eq(v.regs.rflags & 0x41, 0x41, "CF and ZF from the addition");
	/* cmp %r8, %rcx; jne rel32 (back), taken and not taken */
	const uint8_t cmp[] = {0x4c, 0x39, 0xc1};
	const uint8_t jne[] = {0x0f, 0x85, 0x5a, 0xfe, 0xff, 0xff};
	v.regs.rcx = 5;
	v.regs.r8 = 6;
	cr_assert_eq(em_run(&v, cmp, sizeof(cmp), &f), X86_SIMD_DONE);
	uint64_t at = v.regs.rip;
	cr_assert_eq(em_run(&v, jne, sizeof(jne), &f), X86_SIMD_DONE);
	cr_assert_eq(v.regs.rip, at + 6 - 0x1a6, "taken");
	v.regs.r8 = 5;
	cr_assert_eq(em_run(&v, cmp, sizeof(cmp), &f), X86_SIMD_DONE);
	at = v.regs.rip;
	cr_assert_eq(em_run(&v, jne, sizeof(jne), &f), X86_SIMD_DONE);
	cr_assert_eq(v.regs.rip, at + 6, "not taken");
	/* jl rel8 with SF != OF; dec %rdx */
	const uint8_t jl[] = {0x7c, 0x10};
	v.regs.rflags = 2 | 0x80;
	at = v.regs.rip;
	cr_assert_eq(em_run(&v, jl, sizeof(jl), &f), X86_SIMD_DONE);
	cr_assert_eq(v.regs.rip, at + 2 + 0x10);
	const uint8_t dec[] = {0x48, 0xff, 0xca};
	v.regs.rdx = 1;
	cr_assert_eq(em_run(&v, dec, sizeof(dec), &f), X86_SIMD_DONE);
	cr_assert_eq(v.regs.rdx, 0);
	cr_assert(v.regs.rflags & 0x40);
	/* lea 0x1258e6a(%rip), %r8 and lea 0x8(%rsi,%rax,4), %ecx */
	const uint8_t lea[] = {0x4c, 0x8d, 0x05, 0x6a, 0x8e, 0x25, 0x01};
	at = v.regs.rip;
	cr_assert_eq(em_run(&v, lea, sizeof(lea), &f), X86_SIMD_DONE);
	cr_assert_eq(v.regs.r8, at + 7 + 0x1258e6a);
	const uint8_t lea32[] = {0x8d, 0x4c, 0x86, 0x08};
	v.regs.rsi = 0x100000000ull;
	v.regs.rax = 2;
	cr_assert_eq(em_run(&v, lea32, sizeof(lea32), &f), X86_SIMD_DONE);
	cr_assert_eq(v.regs.rcx, 0x10, "32-bit lea truncates");
	cr_assert_neq(v.regs.rip, rip0);
	/* add $1, %rsp is never run on the host */
	struct x86_simd_insn in;
	const uint8_t rsp[] = {0x48, 0x83, 0xc4, 0x01};
	cr_assert_not(x86_simd_decode(rsp, sizeof(rsp), &in));
	free(em_ram);
	em_ram = NULL;
}

Test(emulate, code_changed_under_the_emulator_is_run_again)
{
	/* Recorded on this host: Linux enabling a static key on vCPU 0 while vCPU 1 ran the
	 * site. KVM's emulator fetched the int3 text_poke_bp() had put there; by the time
	 * kvmini looked, the patch was finished (a 2-byte nop). */
	const uint8_t seen[] = {0xcc, 0x90, 0xe8, 0xc7, 0x2d, 0xf4, 0xff, 0x48};
	const uint8_t now[] = {0x66, 0x90, 0xe8, 0xc7, 0x2d, 0xf4, 0xff, 0x48, 0x03};
	cr_assert(x86_code_changed(seen, sizeof(seen), now, sizeof(now)));
	/* Only the first byte patched in: still changed. */
	const uint8_t tail[] = {0xcc, 0x90, 0xe8, 0x00, 0x2d, 0xf4, 0xff, 0x48};
	cr_assert(x86_code_changed(seen, sizeof(seen), tail, sizeof(tail)));
	/* The same bytes (an int3 that is really there), or nothing to compare: not changed,
	 * the instruction is completed as usual. */
	cr_assert_not(x86_code_changed(seen, sizeof(seen), seen, sizeof(seen)));
	cr_assert_not(x86_code_changed(seen, sizeof(seen), now, 0));
	cr_assert_not(x86_code_changed(seen, 0, now, sizeof(now)));
	/* Bytes past what KVM reported are not compared. */
	cr_assert_not(x86_code_changed(now, 2, (const uint8_t[]){0x66, 0x90, 0x11}, 3));
}
