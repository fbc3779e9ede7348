/* count: every CPU counts forever, for tests that pause and resume the VM.
 *
 * The boot CPU starts the others, prints "count: counters at 0x<address> for N cpus" (one
 * 64-bit counter per CPU, indexed by APIC ID, in guest-physical memory: the guest's page
 * tables identity-map it) and then every CPU increments its own counter in a loop: the BSP
 * in ring 3 (native speed on PVM hosts), the APs in ring 0. The BSP also prints
 * "count: tick N" (N = 1, 2, ...) about every 0.1-0.25 s of TSC time, so a test that only
 * sees the console can tell whether the guest is running. It never exits: the test stops
 * kvmini. "count: FAIL <why>" and debug-exit 3 (kvmini exits 7) if a CPU does not start. */
#include "kit.h"

#define COUNT_MAX_CPUS 8

static volatile uint64_t counters[COUNT_MAX_CPUS];

static __attribute__((noreturn)) void count_forever(volatile uint64_t *c)
{
	for (;;)
		(*c)++;
}

static void ap_main(unsigned apic_id)
{
	count_forever(&counters[apic_id]);
}

/* TSC cycles between ticks: 0.1 s at TSC_HZ_MAX, longer on a slower TSC. */
#define TICK_CYCLES (TSC_HZ_MAX / 10)

static uint64_t bsp_user(uint64_t arg)
{
	volatile uint64_t *c = &counters[0];
	uint64_t last = rdtsc(), ticks = 0;
	for (;;) {
		(*c)++;
		if ((*c & 0xfffff) == 0 && rdtsc() - last >= TICK_CYCLES) {
			last = rdtsc();
			printf("count: tick %lu\n", (unsigned long)++ticks);
		}
	}
	return 0;
}

int guest_main(const struct boot_params *bp)
{
	struct mp_info mp;
	const char *why;
	if (!mp_read(&mp, &why)) {
		printf("count: FAIL %s\n", why);
		return 3;
	}
	lapic_enable();
	unsigned n = mp.ncpus < COUNT_MAX_CPUS ? mp.ncpus : COUNT_MAX_CPUS;
	for (unsigned id = 1; id < n; id++) {
		if (ap_start(id, ap_main, 2 * TSC_HZ_MAX) != 0) {
			printf("count: FAIL cpu %u did not start\n", id);
			return 3;
		}
	}
	printf("count: counters at %p for %u cpus\n", (void *)counters, n);
	user_init();
	user_call(bsp_user, 0);
	return 0;
}
