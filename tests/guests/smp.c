/* smp: starts every CPU the MP table lists and checks they all run.
 *
 * Expected output for --cpus 4 (the "cpu N online" lines may come in any order):
 *   smp: 4 cpus in the MP table, bsp apic id 0
 *   cpu 1 online
 *   cpu 2 online
 *   cpu 3 online
 *   smp: 4 cpus OK
 * Each AP prints its line under the console spinlock, then takes part in a contended
 * counter test: every CPU (BSP included) does SMP_INCS `lock incl` on one shared counter.
 * The BSP waits (bounded) until all N-1 APs have checked in with `lock xadd` and the
 * counter reaches N * SMP_INCS.
 * Exit: power-off (kvmini exits 0); on any failure a line "smp: FAIL <why>" and
 * debug-exit 3 (kvmini exits 7). With 1 CPU it prints "smp: 1 cpus OK" and powers off. */
#include "kit.h"

#define SMP_INCS 2000 /* per CPU; ring 0 is emulated on PVM hosts, keep it small */

static volatile uint32_t online;  /* APs that reached their function (lock xadd) */
static volatile uint32_t go;	  /* set by the BSP once every AP is up */
static volatile uint32_t counter; /* the contended counter (lock incl) */
static volatile uint32_t done;	  /* CPUs that finished their increments */

static void hammer(void)
{
	for (unsigned i = 0; i < SMP_INCS; i++)
		atomic_inc32(&counter);
	atomic_fetch_add32(&done, 1);
}

static void ap_main(unsigned apic_id)
{
	printf("cpu %u online\n", apic_id);
	atomic_fetch_add32(&online, 1);
	while (!atomic_read32(&go))
		cpu_relax();
	hammer();
}

/* Waits until *p == want, at most seconds (assuming a TSC no faster than TSC_HZ_MAX). */
static bool wait_for(volatile uint32_t *p, uint32_t want, unsigned seconds)
{
	uint64_t t0 = rdtsc();
	while (atomic_read32(p) != want) {
		if (rdtsc() - t0 > seconds * TSC_HZ_MAX)
			return false;
		cpu_relax();
	}
	return true;
}

int guest_main(const struct boot_params *bp)
{
	struct mp_info mp;
	const char *why;
	if (!mp_read(&mp, &why)) {
		printf("smp: FAIL %s\n", why);
		return 3;
	}
	lapic_enable();
	uint32_t self = lapic_id();
	printf("smp: %u cpus in the MP table, bsp apic id %u\n", mp.ncpus, self);
	if (self != mp.bsp_apic_id) {
		printf("smp: FAIL running on apic id %u but the MP table says the BSP is %u\n",
		       self, mp.bsp_apic_id);
		return 3;
	}

	unsigned aps = 0;
	for (unsigned i = 0; i < mp.ncpus; i++) {
		unsigned id = mp.apic_id[i];
		if (id == self)
			continue;
		int rc = ap_start(id, ap_main, 2 * TSC_HZ_MAX);
		if (rc) {
			printf("smp: FAIL cpu %u did not start (%s)\n", id,
			       rc == -1	  ? "no check-in within the timeout"
			       : rc == -2 ? "apic id out of range"
					  : "IPI not delivered");
			return 3;
		}
		aps++;
	}
	if (!wait_for(&online, aps, 10)) {
		printf("smp: FAIL only %u of %u APs came online\n", atomic_read32(&online), aps);
		return 3;
	}
	atomic_write32(&go, 1);
	hammer();
	if (!wait_for(&done, aps + 1, 20)) {
		printf("smp: FAIL only %u of %u cpus finished the counter test\n",
		       atomic_read32(&done), aps + 1);
		return 3;
	}
	if (atomic_read32(&counter) != (aps + 1) * SMP_INCS) {
		printf("smp: FAIL counter %u, expected %u: lock incl is not atomic\n",
		       atomic_read32(&counter), (aps + 1) * SMP_INCS);
		return 3;
	}
	printf("smp: %u cpus OK\n", aps + 1);
	return 0;
}
