/* timer: checks the in-kernel PIT (through the PIC) and the LAPIC timer.
 *
 * 1. TSC frequency, the yardstick: `tsc_khz=N` on the command line if the test passes it
 *    (fast: ~0.5 s in all), otherwise measured against the RTC: the TSC and the PIT ticks
 *    between two changes of the CMOS seconds register (up to ~2 s).
 * 2. PIT: channel 0 in mode 2 with divisor 1193 (1000.15 Hz) on IRQ 0, the PIC remapped to
 *    vectors 0x20-0x2f with only IRQ 0 open, reaching the CPU through LAPIC LINT0 (ExtINT).
 *    Ticks over 200 ms (or over the RTC second) give the PIT rate.
 * 3. LAPIC timer: its count rate (divide by 16) measured against the TSC over ~50 ms, then
 *    periodic mode with an initial count for 1 kHz on vector 0x40; interrupts over 200 ms
 *    give its rate.
 * Both rates must be within +-20% of 1000 Hz. Handlers only count and EOI.
 *
 * Expected output:
 *   timer: tsc 2300 MHz (reference: rtc)         ("cmdline" with tsc_khz=)
 *   timer: lapic timer clock 62500 kHz (bus / 16)
 *   timer: pit 1000 Hz lapic 1000 Hz OK
 * Exit: power-off (kvmini exits 0); on failure "timer: FAIL <why>" and debug-exit 4
 * (kvmini exits 9). */
#include "kit.h"

#define PIT_DIVISOR   1193
#define PIT_VECTOR    (PIC_VECTOR_BASE + 0)
#define LAPIC_VECTOR  0x40
#define EXPECTED_HZ   1000
#define MEASURE_TICKS 200
#define LAPIC_DIV_16  0x3

static volatile uint32_t pit_ticks, lapic_ticks;

static void pit_irq(struct intr_frame *f)
{
	pit_ticks++;
	pic_eoi(0);
}

static void lapic_irq(struct intr_frame *f)
{
	lapic_ticks++;
	lapic_eoi();
}

static uint8_t rtc_seconds(void)
{
	outb(0x70, 0x00);
	return inb(0x71);
}

/* Sleeps until the counter changes; returns its new value. */
static uint32_t wait_change(volatile uint32_t *ticks)
{
	uint32_t t = *ticks;
	for (;;) {
		cli();
		if (*ticks != t)
			break;
		sti_hlt();
	}
	sti();
	return *ticks;
}

static bool within(uint64_t hz)
{
	return hz * 10 >= EXPECTED_HZ * 8 && hz * 10 <= EXPECTED_HZ * 12;
}

int guest_main(const struct boot_params *bp)
{
	const char *cmdline = bp_cmdline(bp);
	uint64_t tsc_khz = 0;
	bool tsc_from_cmdline = cmdline_get_u64(cmdline, "tsc_khz", &tsc_khz) && tsc_khz;

	idt_set_handler(PIT_VECTOR, pit_irq);
	idt_set_handler(LAPIC_VECTOR, lapic_irq);
	lapic_enable();
	lapic_route_pic();
	pic_remap(PIC_VECTOR_BASE);
	pic_set_mask((uint16_t)~1u); /* IRQ 0 only */
	pit_start_periodic(PIT_DIVISOR);
	sti();

	/* The first tick, polled with a deadline: if none comes, hlt would wait forever. */
	uint64_t t0 = rdtsc();
	while (!pit_ticks) {
		if (rdtsc() - t0 > 2 * TSC_HZ_MAX) {
			puts("timer: FAIL no PIT interrupt (IRQ 0 via PIC and LINT0) within 2 s");
			return 4;
		}
		cpu_relax();
	}

	uint64_t tsc_hz, pit_hz = 0;
	if (tsc_from_cmdline) {
		tsc_hz = tsc_khz * 1000;
		uint32_t first = wait_change(&pit_ticks);
		uint64_t a = rdtsc();
		while (pit_ticks - first < MEASURE_TICKS)
			wait_change(&pit_ticks);
		uint64_t b = rdtsc();
		uint32_t n = pit_ticks - first;
		pit_hz = n * tsc_hz / (b - a);
	} else {
		/* Ticks and TSC between two changes of the RTC seconds; we look at the RTC
		 * once per PIT tick. */
		uint8_t s = rtc_seconds();
		uint32_t start_ticks = pit_ticks, ta = 0;
		uint64_t a = 0, b = 0;
		int edges = 0;
		while (edges < 2) {
			uint32_t now = wait_change(&pit_ticks);
			uint8_t s2 = rtc_seconds();
			if (s2 != s) {
				s = s2;
				if (edges++ == 0) {
					a = rdtsc();
					ta = now;
				} else {
					b = rdtsc();
					pit_hz = now - ta;
				}
			}
			if (now - start_ticks > 3 * EXPECTED_HZ * 12 / 10) {
				puts(
				    "timer: FAIL the RTC seconds did not advance twice in 3.6 s of "
				    "PIT ticks (or the PIT runs fast)");
				return 4;
			}
		}
		tsc_hz = b - a;
	}
	printf("timer: tsc %lu MHz (reference: %s)\n", tsc_hz / 1000000,
	       tsc_from_cmdline ? "cmdline" : "rtc");
	if (tsc_hz < 100000000ull) {
		printf("timer: FAIL implausible TSC frequency %lu Hz\n", tsc_hz);
		return 4;
	}

	/* LAPIC timer count rate, one-shot and masked, against the TSC over ~50 PIT ticks. */
	lapic_timer_start(LAPIC_VECTOR, false, true, LAPIC_DIV_16, 0xffffffffu);
	uint32_t c0 = lapic_timer_current();
	uint64_t a = rdtsc();
	uint32_t first = pit_ticks;
	while (pit_ticks - first < 50)
		wait_change(&pit_ticks);
	uint32_t c1 = lapic_timer_current();
	uint64_t b = rdtsc();
	if (c1 >= c0) {
		printf("timer: FAIL the LAPIC timer does not count down (0x%x then 0x%x)\n", c0,
		       c1);
		return 4;
	}
	uint64_t lapic_clock = (uint64_t)(c0 - c1) * tsc_hz / (b - a);
	printf("timer: lapic timer clock %lu kHz (bus / 16)\n", lapic_clock / 1000);
	if (lapic_clock / EXPECTED_HZ == 0 || lapic_clock / EXPECTED_HZ > 0xffffffffu) {
		printf("timer: FAIL LAPIC timer clock %lu Hz is out of range\n", lapic_clock);
		return 4;
	}

	/* Periodic LAPIC timer at 1 kHz; PIT closed at the PIC. */
	cli();
	pic_set_mask(0xffff);
	lapic_timer_start(LAPIC_VECTOR, true, false, LAPIC_DIV_16,
			  (uint32_t)(lapic_clock / EXPECTED_HZ));
	sti();
	t0 = rdtsc();
	while (!lapic_ticks) {
		if (rdtsc() - t0 > tsc_hz) {
			puts("timer: FAIL no LAPIC timer interrupt within 1 s");
			return 4;
		}
		cpu_relax();
	}
	first = wait_change(&lapic_ticks);
	a = rdtsc();
	while (lapic_ticks - first < MEASURE_TICKS)
		wait_change(&lapic_ticks);
	b = rdtsc();
	uint64_t lapic_hz = (uint64_t)(lapic_ticks - first) * tsc_hz / (b - a);
	lapic_timer_stop();
	pit_stop();
	cli();

	if (!within(pit_hz) || !within(lapic_hz)) {
		printf("timer: FAIL pit %lu Hz lapic %lu Hz, expected %u Hz +-20%%\n", pit_hz,
		       lapic_hz, EXPECTED_HZ);
		return 4;
	}
	printf("timer: pit %lu Hz lapic %lu Hz OK\n", pit_hz, lapic_hz);
	return 0;
}
