/* checksum: a ring-3 running checksum, deterministic whatever the timing, for snapshot
 * tests. The boot CPU mixes a 64-bit state (an LCG step and a rotate-xor) 2^22 times per
 * step and prints "checksum: step N 0x<state>" after each, for N = 1..200; then it powers
 * off (kvmini exits 0). A run snapshotted and restored in the middle prints exactly the
 * lines an uninterrupted run prints. */
#include "kit.h"

#define STEPS	 200
#define PER_STEP (1u << 22)

static uint64_t checksum_user(uint64_t arg)
{
	uint64_t x = 0x243f6a8885a308d3ull;
	for (unsigned n = 1; n <= STEPS; n++) {
		for (unsigned i = 0; i < PER_STEP; i++) {
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
	printf("checksum: start\n");
	user_init();
	user_call(checksum_user, 0);
	return 0;
}
