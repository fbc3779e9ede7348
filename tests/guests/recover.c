/* recover: the ring-0 instructions kvmini completes in user space on hosts whose KVM cannot
 * emulate them (PVM): stac/clac and [lock] cmpxchg8b/16b. Elsewhere the CPU runs them
 * natively; either way the architectural results must be exact.
 *
 * Expected output:
 *   recover: stac/clac OK            (or "recover: stac/clac skipped: no SMAP")
 *   recover: cmpxchg16b OK
 *   recover: cmpxchg8b OK
 *   recover: fwait OK
 * Exit: power-off (kvmini exits 0); debug-exit 9 (kvmini exits 19) with a "recover: FAIL"
 * line if a result is wrong. */
#include "kit.h"

#define RFLAGS_AC (1ull << 18)

static bool cpu_has_smap(void)
{
	uint32_t a = 7, b, c = 0, d;
	__asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
	return b & (1u << 20);
}

static int check_stac_clac(void)
{
	if (!cpu_has_smap()) {
		puts("recover: stac/clac skipped: no SMAP");
		return 0;
	}
	__asm__ volatile("stac" ::: "memory", "cc");
	uint64_t after_stac = read_rflags();
	__asm__ volatile("clac" ::: "memory", "cc");
	uint64_t after_clac = read_rflags();
	if (!(after_stac & RFLAGS_AC) || (after_clac & RFLAGS_AC)) {
		printf("recover: FAIL stac/clac: rflags 0x%lx then 0x%lx\n", after_stac,
		       after_clac);
		return 9;
	}
	puts("recover: stac/clac OK");
	return 0;
}

static volatile uint64_t pair[2] __attribute__((aligned(16)));

static bool cmpxchg16b(volatile uint64_t *p, uint64_t *lo, uint64_t *hi, uint64_t new_lo,
		       uint64_t new_hi)
{
	bool ok;
	__asm__ volatile("lock cmpxchg16b %[m]"
			 : [m] "+m"(*(volatile __int128 *)p), "+a"(*lo), "+d"(*hi), "=@ccz"(ok)
			 : "b"(new_lo), "c"(new_hi)
			 : "memory");
	return ok;
}

static int check_cmpxchg16b(void)
{
	pair[0] = 0x1111111111111111ull;
	pair[1] = 0x2222222222222222ull;
	uint64_t lo = 0x1111111111111111ull, hi = 0x2222222222222222ull;
	bool ok = cmpxchg16b(pair, &lo, &hi, 0xaaaaaaaaaaaaaaaaull, 0xbbbbbbbbbbbbbbbbull);
	if (!ok || pair[0] != 0xaaaaaaaaaaaaaaaaull || pair[1] != 0xbbbbbbbbbbbbbbbbull) {
		printf("recover: FAIL cmpxchg16b (equal): zf %d, memory 0x%lx 0x%lx\n", ok, pair[0],
		       pair[1]);
		return 9;
	}
	lo = 1, hi = 2; /* does not match: memory must be loaded into rdx:rax */
	ok = cmpxchg16b(pair, &lo, &hi, 5, 6);
	if (ok || lo != 0xaaaaaaaaaaaaaaaaull || hi != 0xbbbbbbbbbbbbbbbbull ||
	    pair[0] != 0xaaaaaaaaaaaaaaaaull) {
		printf("recover: FAIL cmpxchg16b (different): zf %d, rdx:rax 0x%lx:0x%lx\n", ok, hi,
		       lo);
		return 9;
	}
	puts("recover: cmpxchg16b OK");
	return 0;
}

static int check_cmpxchg8b(void)
{
	static volatile uint64_t word __attribute__((aligned(8))) = 0x0000000500000004ull;
	uint32_t lo = 4, hi = 5;
	bool ok;
	__asm__ volatile("lock cmpxchg8b %[m]"
			 : [m] "+m"(word), "+a"(lo), "+d"(hi), "=@ccz"(ok)
			 : "b"(7u), "c"(8u)
			 : "memory");
	if (!ok || word != 0x0000000800000007ull) {
		printf("recover: FAIL cmpxchg8b: zf %d word 0x%lx\n", ok, word);
		return 9;
	}
	puts("recover: cmpxchg8b OK");
	return 0;
}

static int check_fwait(void)
{
	/* With no x87 exception pending and CR0.TS clear, fwait does nothing; a sentinel
	 * around it shows execution continued right after it. */
	uint64_t sentinel = 0x5a5a;
	__asm__ volatile("fwait\n\tincq %0" : "+r"(sentinel)::"memory");
	if (sentinel != 0x5a5b) {
		printf("recover: FAIL fwait: sentinel 0x%lx\n", sentinel);
		return 9;
	}
	puts("recover: fwait OK");
	return 0;
}

int guest_main(const struct boot_params *bp)
{
	(void)bp;
	int r = check_stac_clac();
	if (!r)
		r = check_cmpxchg16b();
	if (!r)
		r = check_cmpxchg8b();
	if (!r)
		r = check_fwait();
	return r;
}
