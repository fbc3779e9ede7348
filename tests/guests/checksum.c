/* checksum: a ring-3 running checksum, deterministic whatever the timing, for snapshot
 * tests. The boot CPU mixes a 64-bit state (an LCG step and a rotate-xor) 2^22 times per
 * step and prints "checksum: step N 0x<state>" after each, for N = 1..200; then it powers
 * off (kvmini exits 0). A run snapshotted and restored in the middle prints exactly the
 * lines an uninterrupted run prints.
 *
 * Options (for bench/snapshot; the defaults are what the tests expect):
 *   touch=half   before the first step, write a non-zero word to every 4 KiB page of the
 *                usable RAM (e820) in the upper half of RAM, from ring 3, and print
 *                "checksum: touched N pages"
 *   shift=S      2^S mixing rounds per step (default 22, 0..30)
 *   steps=N      N steps (default 200; 0: no end) */
#include "kit.h"

static unsigned steps = 200, shift = 22;
static const struct boot_params *boot;

static uint64_t touch_user(uint64_t arg)
{
	uint64_t top = 0, pages = 0;
	unsigned n = bp_e820_count(boot);
	for (unsigned i = 0; i < n; i++) {
		struct e820_entry e = bp_e820_entry(boot, i);
		if (e.type == 1 && e.addr + e.size > top && e.addr < (4ull << 30))
			top = e.addr + e.size;
	}
	if (top > (4ull << 30))
		top = 4ull << 30; /* the kit's ring-3 tables map 0-4 GiB */
	for (unsigned i = 0; i < n; i++) {
		struct e820_entry e = bp_e820_entry(boot, i);
		uint64_t lo = e.addr, hi = e.addr + e.size;
		if (e.type != 1)
			continue;
		if (lo < top / 2)
			lo = top / 2;
		if (hi > top)
			hi = top;
		lo = (lo + 4095) & ~4095ull;
		for (uint64_t a = lo; a + 4096 <= hi; a += 4096, pages++)
			*(volatile uint64_t *)a = 0x5a5a5a5a00000000ull | pages;
	}
	printf("checksum: touched %lu pages\n", (unsigned long)pages);
	return 0;
}

static uint64_t checksum_user(uint64_t arg)
{
	uint64_t x = 0x243f6a8885a308d3ull;
	for (unsigned n = 1; !steps || n <= steps; n++) {
		for (unsigned i = 0; i < (1u << shift); i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			x ^= x >> 29 | x << 35;
		}
		printf("checksum: step %u 0x%lx\n", n, (unsigned long)x);
	}
	poweroff();
	return 0;
}

int guest_main(const struct boot_params *bp)
{
	const char *cmdline = bp_cmdline(bp);
	char buf[16];
	uint64_t v;
	boot = bp;
	if (cmdline_get_u64(cmdline, "shift", &v) && v <= 30)
		shift = (unsigned)v;
	if (cmdline_get_u64(cmdline, "steps", &v) && v <= 0xffffffffu)
		steps = (unsigned)v;
	printf("checksum: start\n");
	user_init();
	if (cmdline_get(cmdline, "touch", buf, sizeof(buf)) && !strcmp(buf, "half"))
		user_call(touch_user, 0);
	user_call(checksum_user, 0);
	return 0;
}
