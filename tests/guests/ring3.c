/* ring3: runs a loop in ring 3 and in ring 0 and compares their speed.
 *
 * On a PVM host ring 0 is emulated instruction by instruction while ring 3 runs natively,
 * so this shows whether kvmini's guest really gets native user mode. The ring-0 loop runs
 * first (RING0_ITERS iterations), then user_call() switches to CPL 3 (own page tables with
 * the U bit, TSS.RSP0, IOPL 3) where the same dec/jnz loop runs RING3_ITERS times; ring 3
 * prints the result and powers off itself with an `outw` (allowed by IOPL 3).
 *
 * Expected output (numbers vary):
 *   ring3: ring0 iterations=100000 cycles/iter=1150.00
 *   ring3: cpl=3 iterations=1000000000 cycles/iter=1.00
 *   ring3: port I/O from ring 3 runs directly (IOPL 3)
 *     (or, on PVM hosts: "ring3: port I/O from ring 3 trapped (#GP, ...): N accesses done
 *     by the kit's #GP handler")
 *   ring3: OK
 * Exit: power-off from ring 3 (kvmini exits 0) if ring-3 cycles/iter < 20; otherwise
 * "ring3: FAIL <why>" and debug-exit 6 (kvmini exits 13). */
#include "kit.h"

#define RING0_ITERS 100000ull
#define RING3_ITERS 1000000000ull
#define LIMIT_CENTI 2000 /* 20.00 cycles per iteration */

/* TSC cycles for n iterations of dec/jnz. */
static uint64_t spin_loop(uint64_t n)
{
	uint64_t t0 = rdtsc();
	__asm__ volatile("1: dec %0\n\t"
			 "jnz 1b"
			 : "+r"(n)
			 :
			 : "cc");
	return rdtsc() - t0;
}

static void print_centi(const char *what, uint64_t iters, uint64_t cycles)
{
	uint64_t centi = cycles * 100 / iters;
	printf("ring3: %s iterations=%lu cycles/iter=%lu.%02lu\n", what, iters, centi / 100,
	       centi % 100);
}

static uint64_t user_main(uint64_t arg)
{
	unsigned level = cpl();
	uint64_t cycles = spin_loop(RING3_ITERS);
	uint64_t centi = cycles * 100 / RING3_ITERS;
	char what[16];
	snprintf(what, sizeof(what), "cpl=%u", level);
	print_centi(what, RING3_ITERS, cycles);
	if (level != 3) {
		printf("ring3: FAIL running at cpl %u, not 3\n", level);
		debug_exit(6);
	}
	if (centi >= LIMIT_CENTI) {
		printf("ring3: FAIL %lu.%02lu cycles/iter in ring 3 (limit %u.%02u): user mode is "
		       "not running natively\n",
		       centi / 100, centi % 100, LIMIT_CENTI / 100, LIMIT_CENTI % 100);
		debug_exit(6);
	}
	uint64_t emulated = user_io_emulated();
	if (emulated)
		printf(
		    "ring3: port I/O from ring 3 trapped (#GP, IOPL 3 not honoured by the host): "
		    "%lu accesses done by the kit's #GP handler\n",
		    emulated);
	else
		puts("ring3: port I/O from ring 3 runs directly (IOPL 3)");
	puts("ring3: OK");
	poweroff();
}

int guest_main(const struct boot_params *bp)
{
	print_centi("ring0", RING0_ITERS, spin_loop(RING0_ITERS));
	user_call(user_main, 0);
	puts("ring3: FAIL returned from ring 3");
	return 6;
}
