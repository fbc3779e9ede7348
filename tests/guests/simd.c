/* simd: the SSE/FPU instructions Linux runs in ring 0 (ldmxcsr/stmxcsr, fxsave/fxrstor, SSE
 * moves and arithmetic, popcnt, crc32) give the same results in ring 0 as in ring 3. On a
 * PVM host ring 3 runs natively and ring 0 goes through the host's emulator and kvmini's
 * completions, so this compares kvmini against the CPU. Then the faults: MXCSR reserved
 * bits and a misaligned movaps raise #GP, CR0.TS raises #NM, each at the instruction.
 *
 * This guest is exempt from `make check`'s SSE rule: the instructions are the point. All
 * of them are in inline assembly; the C code stays general-register only.
 *
 * Expected output:
 *   simd: ring 0 and ring 3 agree on <n> bytes
 *   simd: ldmxcsr reserved bits #GP OK
 *   simd: misaligned movaps #GP OK
 *   simd: CR0.TS #NM OK
 *   simd: OK
 * Exit: power-off (kvmini exits 0); debug-exit 10 (kvmini exits 21) with "simd: FAIL". */
#include "kit.h"

#define CR0_EM	   (1ull << 2)
#define CR0_MP	   (1ull << 1)
#define CR0_TS	   (1ull << 3)
#define CR4_OSFXSR (1ull << 9)
#define CR4_OSXMM  (1ull << 10)

struct simd_in {
	uint8_t a[16] __attribute__((aligned(16)));
	uint8_t b[16] __attribute__((aligned(16)));
	uint8_t mask[16] __attribute__((aligned(16)));
	uint32_t f[4] __attribute__((aligned(16))); /* floats, as bits */
	uint64_t x;
	uint32_t mxcsr;
};

struct simd_out {
	uint8_t fx[512] __attribute__((aligned(16)));
	uint8_t fx2[512] __attribute__((aligned(16)));
	uint8_t v[4][16] __attribute__((aligned(16)));
	uint8_t unaligned[17];
	uint64_t popcnt, crc, cvt, flags;
	uint32_t mxcsr;
};

static struct simd_in in = {
    .a = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    .b = {0xff, 0xfe, 0x80, 0x7f, 1, 2, 3, 4, 0x10, 0x20, 0x30, 0x40, 0xaa, 0x55, 0, 0x99},
    .mask = {15, 14, 13, 12, 0x80, 3, 2, 1, 0, 0x81, 7, 6, 5, 4, 9, 8},
    .f = {0x3f800000, 0x40490fdb, 0xbf000000, 0x00800001}, /* 1, pi, -0.5, tiny */
    .x = 0xf00f00f00f00f001ull,
    .mxcsr = 0x9fc0 | (1u << 13), /* FTZ, DAZ, all masked, round down */
};
static struct simd_out out0, out3;

/* Everything in one asm block so the compiler never touches a vector register. */
static void simd_ops(struct simd_out *o)
{
	uint64_t pc = 0, crc = 0x12345678, cvt = 0, flags = 0;
	__asm__ volatile(
	    "fninit\n\t"
	    "ldmxcsr %[mxcsr]\n\t"
	    "movdqu %[a], %%xmm0\n\t"
	    "movdqu %[b], %%xmm1\n\t"
	    "movdqa %%xmm0, %%xmm2\n\t"
	    "pxor %%xmm1, %%xmm2\n\t"
	    "paddd %[b], %%xmm0\n\t"
	    "pshufb %[mask], %%xmm1\n\t"
	    "pshufd $0x1b, %%xmm2, %%xmm3\n\t"
	    "movaps %%xmm3, 0(%[v])\n\t"
	    "movups %%xmm0, 0(%[u])\n\t"
	    "movdqa %[f], %%xmm4\n\t"
	    "movaps %%xmm4, %%xmm5\n\t"
	    "mulps %%xmm4, %%xmm5\n\t"
	    "divps %[f], %%xmm5\n\t"
	    "addps %%xmm4, %%xmm5\n\t"
	    "sqrtps %%xmm5, %%xmm6\n\t"
	    "movaps %%xmm5, 16(%[v])\n\t"
	    "movdqa %%xmm6, 32(%[v])\n\t"
	    "cvtsi2sdq %[x], %%xmm7\n\t"
	    "sqrtsd %%xmm7, %%xmm7\n\t"
	    "cvttsd2si %%xmm7, %[cvt]\n\t"
	    "ucomisd %%xmm7, %%xmm7\n\t"
	    "pushfq\n\t"
	    "popq %[flags]\n\t"
	    "punpcklbw %%xmm1, %%xmm0\n\t"
	    "psrld $3, %%xmm0\n\t"
	    "movq %%xmm0, 48(%[v])\n\t"
	    "movd %%xmm1, %k[cvt2]\n\t"
	    "popcnt %[x], %[pc]\n\t"
	    "crc32q %[x], %[crc]\n\t"
	    "stmxcsr %[mxout]\n\t"
	    "fxsave64 %[fx]\n\t"
	    "fxrstor64 %[fx]\n\t"
	    "fxsave64 %[fx2]\n\t"
	    : [pc] "+r"(pc), [crc] "+r"(crc), [cvt] "+r"(cvt), [flags] "=&r"(flags),
	      [cvt2] "=&r"(o->cvt), [mxout] "=m"(o->mxcsr), [fx] "+m"(o->fx), [fx2] "=m"(o->fx2)
	    : [mxcsr] "m"(in.mxcsr), [a] "m"(in.a), [b] "m"(in.b), [mask] "m"(in.mask),
	      [f] "m"(in.f), [x] "m"(in.x), [v] "r"(o->v), [u] "r"(o->unaligned + 1)
	    : "memory", "cc"); /* no xmm clobbers: the compiler uses none here */
	o->popcnt = pc;
	o->crc = crc;
	o->cvt += cvt;
	o->flags = flags & 0x8d5;
}

static uint64_t user_ops(uint64_t arg)
{
	simd_ops(&out3);
	return 0;
}

/* The faults: the handler records the vector and steps over the instruction (skip bytes),
 * or for #NM clears CR0.TS so the instruction runs again. */
static volatile unsigned fault_vector;
static volatile uint64_t fault_rip;
static volatile unsigned skip;

static void on_fault(struct intr_frame *f)
{
	fault_vector = (unsigned)f->vector;
	fault_rip = f->rip;
	if (f->vector == 7)
		write_cr0(read_cr0() & ~CR0_TS);
	else
		f->rip += skip;
}

static int check_fault(const char *what, unsigned want, uint64_t rip)
{
	if (fault_vector != want || fault_rip != rip) {
		printf("simd: FAIL %s: vector %u at 0x%lx, want %u at 0x%lx\n", what, fault_vector,
		       fault_rip, want, rip);
		return 10;
	}
	printf("simd: %s OK\n", what);
	fault_vector = 0;
	return 0;
}

static int check_faults(void)
{
	static uint32_t bad_mxcsr = 0x1f80 | (1u << 31);
	static uint8_t buf[32] __attribute__((aligned(16)));
	uint64_t rip;
	int r;

	idt_set_handler(13, on_fault);
	idt_set_handler(7, on_fault);
	skip = 3; /* ldmxcsr (%rax) */
	__asm__ volatile("lea 0f(%%rip), %0\n\t"
			 "0: ldmxcsr (%1)\n\t"
			 : "=&r"(rip)
			 : "a"(&bad_mxcsr)
			 : "memory");
	if ((r = check_fault("ldmxcsr reserved bits #GP", 13, rip)))
		return r;
	skip = 4; /* movaps %xmm0, 1(%rax) */
	__asm__ volatile("lea 0f(%%rip), %0\n\t"
			 "0: movaps %%xmm0, 1(%1)\n\t"
			 : "=&r"(rip)
			 : "a"(buf)
			 : "memory");
	if ((r = check_fault("misaligned movaps #GP", 13, rip)))
		return r;
	write_cr0(read_cr0() | CR0_TS);
	__asm__ volatile("lea 0f(%%rip), %0\n\t"
			 "0: movaps %%xmm0, (%1)\n\t"
			 : "=&r"(rip)
			 : "a"(buf)
			 : "memory");
	if ((r = check_fault("CR0.TS #NM", 7, rip)))
		return r;
	idt_set_handler(13, NULL);
	idt_set_handler(7, NULL);
	return 0;
}

int guest_main(const struct boot_params *bp)
{
	write_cr0((read_cr0() & ~(CR0_EM | CR0_TS)) | CR0_MP);
	write_cr4(read_cr4() | CR4_OSFXSR | CR4_OSXMM);
	int r = check_faults();
	if (r)
		return r;
	user_init();
	simd_ops(&out0);
	user_call(user_ops, 0);
	const uint8_t *p0 = (const uint8_t *)&out0, *p3 = (const uint8_t *)&out3;
	for (size_t i = 0; i < sizeof(out0); i++) {
		if (p0[i] != p3[i]) {
			printf("simd: FAIL ring 0 and ring 3 differ at byte %lu of %lu: 0x%02x vs "
			       "0x%02x\n",
			       i, sizeof(out0), p0[i], p3[i]);
			return 10;
		}
	}
	printf("simd: ring 0 and ring 3 agree on %lu bytes\n", sizeof(out0));
	puts("simd: OK");
	return 0;
}
