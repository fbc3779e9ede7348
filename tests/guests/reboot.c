/* reboot: resets the VM twice and checks each boot starts afresh.
 *
 * The boot count lives in CMOS RAM byte 0x50 (battery-backed on a PC, so it survives a
 * reset). Each boot prints "reboot: boot N", checks that the kernel image was loaded again
 * (an initialised variable the previous boot overwrote has its initial value back), that
 * the zero page carries the command line again, and, with more than one CPU, that CPU 1 is
 * back waiting for INIT/SIPI (it starts again). Boots 1 and 2 reset the machine the way the
 * command line names: "reset=kbd" (i8042 0xfe, the default), "reset=cf9" (port 0xcf9, RST_CPU),
 * on boot 3 it prints "reboot: 3 boots OK" and powers off (kvmini exits 0).
 * With -no-reboot kvmini ends at the first reset with status 0, after "reboot: boot 1".
 * Failures print "reboot: FAIL <why>" and debug-exit 3 (kvmini exits 7); a reset that does
 * not happen debug-exits 4 (kvmini exits 9). */
#include "kit.h"

#define CMOS_INDEX 0x70
#define CMOS_DATA  0x71
#define BOOT_COUNT 0x50

static volatile uint32_t image_marker = 0x1badb002;
static volatile uint32_t ap_ran;

static uint8_t cmos_read(uint8_t index)
{
	outb(CMOS_INDEX, index);
	return inb(CMOS_DATA);
}

static void cmos_write(uint8_t index, uint8_t v)
{
	outb(CMOS_INDEX, index);
	outb(CMOS_DATA, v);
}

static void ap_main(unsigned apic_id)
{
	atomic_write32(&ap_ran, apic_id);
}

int guest_main(const struct boot_params *bp)
{
	unsigned boot = cmos_read(BOOT_COUNT) + 1u;
	cmos_write(BOOT_COUNT, (uint8_t)boot);
	const char *cmdline = bp_cmdline(bp);
	printf("reboot: boot %u\n", boot);
	if (image_marker != 0x1badb002) {
		printf("reboot: FAIL the image was not loaded again (marker 0x%x)\n", image_marker);
		return 3;
	}
	image_marker = 0xdeadbeef;
	if (!strstr(cmdline, "reset=")) {
		printf("reboot: FAIL the command line is '%s'\n", cmdline);
		return 3;
	}
	struct mp_info mp;
	const char *why;
	if (!mp_read(&mp, &why)) {
		printf("reboot: FAIL %s\n", why);
		return 3;
	}
	if (mp.ncpus > 1) {
		lapic_enable();
		if (ap_start(1, ap_main, 2 * TSC_HZ_MAX) != 0) {
			printf("reboot: FAIL cpu 1 did not start on boot %u\n", boot);
			return 3;
		}
		uint64_t t0 = rdtsc();
		while (atomic_read32(&ap_ran) != 1 && rdtsc() - t0 < 5 * TSC_HZ_MAX)
			cpu_relax();
		if (atomic_read32(&ap_ran) != 1) {
			printf("reboot: FAIL cpu 1 did not run on boot %u\n", boot);
			return 3;
		}
		printf("reboot: cpu 1 started on boot %u\n", boot);
	}
	if (boot >= 3) {
		printf("reboot: %u boots OK\n", boot);
		return 0;
	}
	if (strstr(cmdline, "reset=cf9"))
		outb(0xcf9, 0x06);
	else
		outb(0x64, 0xfe);
	/* A reset stops this CPU at once; give kvmini a moment. */
	tsc_delay(TSC_HZ_MAX);
	printf("reboot: FAIL still running after the reset request\n");
	return 4;
}
