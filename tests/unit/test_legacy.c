#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>
#include <time.h>

#include "devices/legacy.h"
#include "util/log.h"
#include "core/bus.h"
#include "core/power.h"

static struct bus leg_bus;
static struct vm_power leg_power;
static struct i8042 leg_kbd;
static struct rtc leg_rtc;
static struct boot_marker leg_marker;
static struct pm leg_pm;

static void leg_setup(void)
{
	cr_assert_eq(bus_init(&leg_bus, "pio"), 0);
	cr_assert_eq(power_init(&leg_power), 0);
	cr_assert_eq(i8042_init(&leg_kbd, &leg_power), 0);
	cr_assert_eq(i8042_attach(&leg_kbd, &leg_bus), 0);
	cr_assert_eq(rtc_init(&leg_rtc), 0);
	cr_assert_eq(rtc_attach(&leg_rtc, &leg_bus), 0);
	cr_assert_eq(debug_exit_attach(&leg_power, &leg_bus), 0);
	cr_assert_eq(pm_init(&leg_pm, &leg_power, -1), 0);
	cr_assert_eq(pm_attach(&leg_pm, &leg_bus), 0);
	/* Started 10 ms ago, so a marker's time is measurably positive. */
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	if (start.tv_nsec >= 10000000) {
		start.tv_nsec -= 10000000;
	} else {
		start.tv_sec--;
		start.tv_nsec += 990000000;
	}
	cr_assert_eq(boot_marker_init(&leg_marker, &start), 0);
	cr_assert_eq(boot_marker_attach(&leg_marker, &leg_bus), 0);
}

static void leg_teardown(void)
{
	boot_marker_destroy(&leg_marker);
	rtc_destroy(&leg_rtc);
	i8042_destroy(&leg_kbd);
	power_destroy(&leg_power);
	bus_destroy(&leg_bus);
}

TestSuite(legacy, .init = leg_setup, .fini = leg_teardown);

static unsigned leg_sci_raises(void)
{
	return atomic_load(&leg_pm.sci.raises);
}

static void leg_outn(uint16_t port, uint32_t v, uint32_t len)
{
	uint8_t b[4];
	for (uint32_t i = 0; i < len; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	cr_assert(bus_dispatch(&leg_bus, port, b, len, true), "port 0x%x", port);
}

static void leg_outb(uint16_t port, uint8_t v)
{
	leg_outn(port, v, 1);
}

static uint8_t leg_inb(uint16_t port)
{
	uint8_t v = 0xaa;
	cr_assert(bus_dispatch(&leg_bus, port, &v, 1, false), "port 0x%x", port);
	return v;
}

static enum stop_reason leg_stop(int *status)
{
	*status = -1;
	return power_stop_reason(&leg_power, status);
}

/* ---- i8042 ---- */

Test(legacy, i8042_idle_status)
{
	uint8_t st = leg_inb(I8042_COMMAND_PORT);
	cr_assert_eq(st & 0x01, 0, "nothing to read");
	cr_assert_eq(st & 0x04, 0x04, "system flag");
	cr_assert_eq(st & 0x02, 0, "input buffer never busy");
}

Test(legacy, i8042_reset_command)
{
	int status;
	cr_assert_not(power_take_reset(&leg_power));
	leg_outb(I8042_COMMAND_PORT, 0xfe);
	/* A reset reboots the VM; it is not a stop. */
	cr_assert_eq(leg_stop(&status), STOP_NONE);
	cr_assert(power_park_requested(&leg_power), "vCPUs park until the reboot is done");
	cr_assert(power_take_reset(&leg_power));
}

Test(legacy, i8042_output_port_reset)
{
	int status;
	leg_outb(I8042_COMMAND_PORT, 0xd1);
	leg_outb(I8042_DATA_PORT, 0xdf); /* A20 on, reset line high: harmless */
	cr_assert_eq(leg_stop(&status), STOP_NONE);
	cr_assert_not(power_take_reset(&leg_power));
	leg_outb(I8042_COMMAND_PORT, 0xd1);
	leg_outb(I8042_DATA_PORT, 0xde);
	cr_assert_eq(leg_stop(&status), STOP_NONE);
	cr_assert(power_take_reset(&leg_power));
}

Test(legacy, i8042_command_byte_round_trip)
{
	leg_outb(I8042_COMMAND_PORT, 0x20);
	cr_assert_eq(leg_inb(I8042_COMMAND_PORT) & 0x01, 0x01);
	uint8_t initial = leg_inb(I8042_DATA_PORT);
	cr_assert_eq(leg_inb(I8042_COMMAND_PORT) & 0x01, 0x00, "reading empties the buffer");

	uint8_t want = (uint8_t)(initial ^ 0x13);
	leg_outb(I8042_COMMAND_PORT, 0x60);
	leg_outb(I8042_DATA_PORT, want);
	leg_outb(I8042_COMMAND_PORT, 0x20);
	cr_assert_eq(leg_inb(I8042_DATA_PORT), want);

	/* Without a pending command, data writes change nothing. */
	leg_outb(I8042_DATA_PORT, 0x00);
	leg_outb(I8042_COMMAND_PORT, 0x20);
	cr_assert_eq(leg_inb(I8042_DATA_PORT), want);
}

Test(legacy, i8042_self_test)
{
	leg_outb(I8042_COMMAND_PORT, 0xaa);
	cr_assert_eq(leg_inb(I8042_COMMAND_PORT) & 0x01, 0x01);
	cr_assert_eq(leg_inb(I8042_DATA_PORT), 0x55);
}

Test(legacy, i8042_harmless_commands)
{
	int status;
	leg_outb(I8042_COMMAND_PORT, 0xad);
	leg_outb(I8042_COMMAND_PORT, 0xae);
	leg_outb(I8042_COMMAND_PORT, 0xff); /* pulse nothing */
	leg_outb(I8042_COMMAND_PORT, 0x42);
	leg_outb(I8042_DATA_PORT, 0xf4);
	cr_assert_eq(leg_stop(&status), STOP_NONE);
	cr_assert_eq(leg_inb(I8042_COMMAND_PORT) & 0x01, 0x00);
}

Test(legacy, i8042_no_aux_port)
{
	/* Linux's AUX loop test must fail without a timeout: data comes back, but not
	 * flagged as AUX data (status bit 5). */
	leg_outb(I8042_COMMAND_PORT, 0xd3);
	leg_outb(I8042_DATA_PORT, 0x5a);
	uint8_t st = leg_inb(I8042_COMMAND_PORT);
	cr_assert_eq(st & 0x21, 0x01);
	leg_outb(I8042_COMMAND_PORT, 0xa9);
	uint8_t r = leg_inb(I8042_DATA_PORT);
	cr_assert(r != 0x00 && r != 0xfa && r != 0xff, "AUX test result 0x%x", r);
}

/* ---- RTC ---- */

static uint8_t leg_cmos(uint8_t index)
{
	leg_outb(RTC_INDEX_PORT, index);
	return leg_inb(RTC_DATA_PORT);
}

static unsigned leg_from_bcd(uint8_t v)
{
	cr_assert((v & 0x0f) <= 9 && (v >> 4) <= 9, "0x%02x is not BCD", v);
	return (v >> 4) * 10 + (v & 0x0f);
}

static void leg_check_near_now(const struct tm *tm)
{
	struct tm copy = *tm;
	time_t t = timegm(&copy);
	time_t now = time(NULL);
	cr_assert(t != (time_t)-1);
	cr_assert(t <= now && now - t <= 5, "RTC %lld vs host %lld", (long long)t, (long long)now);
}

/* Reads the clock registers, retrying if the seconds turned over meanwhile (a minute or
 * hour may have turned with them). */
static unsigned leg_read_clock(struct tm *tm, bool binary)
{
	unsigned wday;
	uint8_t sec;
	for (int tries = 0;; tries++) {
		cr_assert_lt(tries, 5);
		sec = leg_cmos(0x00);
		uint8_t raw[7] = {leg_cmos(0x02), leg_cmos(0x04), leg_cmos(0x06), leg_cmos(0x07),
				  leg_cmos(0x08), leg_cmos(0x09), leg_cmos(0x32)};
		if (leg_cmos(0x00) != sec)
			continue;
		unsigned v[8];
		v[0] = binary ? sec : leg_from_bcd(sec);
		for (int i = 0; i < 7; i++)
			v[i + 1] = binary ? raw[i] : leg_from_bcd(raw[i]);
		memset(tm, 0, sizeof(*tm));
		tm->tm_sec = (int)v[0];
		tm->tm_min = (int)v[1];
		tm->tm_hour = (int)v[2];
		wday = v[3];
		tm->tm_mday = (int)v[4];
		tm->tm_mon = (int)v[5] - 1;
		tm->tm_year = (int)(v[7] * 100 + v[6]) - 1900;
		break;
	}
	cr_assert(tm->tm_sec < 60 && tm->tm_min < 60 && tm->tm_hour < 24);
	cr_assert(wday >= 1 && wday <= 7);
	cr_assert(tm->tm_mday >= 1 && tm->tm_mday <= 31);
	cr_assert(tm->tm_mon >= 0 && tm->tm_mon < 12);
	return wday;
}

Test(legacy, rtc_bcd_time_matches_host)
{
	cr_assert_eq(leg_cmos(0x0b), 0x02);
	cr_assert_eq(leg_cmos(0x0a) & 0x80, 0, "no update in progress");
	struct tm tm;
	unsigned wday = leg_read_clock(&tm, false);
	leg_check_near_now(&tm);
	cr_assert_eq(leg_cmos(0x32), 0x20);

	struct tm check = tm;
	cr_assert(timegm(&check) != (time_t)-1);
	cr_assert_eq((unsigned)check.tm_wday + 1, wday, "Sunday is 1");
}

Test(legacy, rtc_binary_mode)
{
	leg_outb(RTC_INDEX_PORT, 0x0b);
	leg_outb(RTC_DATA_PORT, 0x06); /* 24h, binary */
	cr_assert_eq(leg_cmos(0x0b), 0x06);
	cr_assert_eq(leg_cmos(0x32), 20);
	struct tm tm;
	leg_read_clock(&tm, true);
	leg_check_near_now(&tm);
}

Test(legacy, rtc_12_hour_mode)
{
	leg_outb(RTC_INDEX_PORT, 0x0b);
	leg_outb(RTC_DATA_PORT, 0x04); /* 12h, binary */
	time_t before = time(NULL);
	uint8_t h = leg_cmos(0x04);
	time_t after = time(NULL);
	bool matched = false;
	for (time_t t = before; t <= after; t++) {
		struct tm tm;
		gmtime_r(&t, &tm);
		unsigned h12 = (unsigned)tm.tm_hour % 12;
		if ((h & 0x7f) == (h12 ? h12 : 12) && !!(h & 0x80) == (tm.tm_hour >= 12))
			matched = true;
	}
	cr_assert(matched, "12-hour reading 0x%02x", h);
}

Test(legacy, rtc_status_registers)
{
	cr_assert_eq(leg_cmos(0x0a), 0x26);
	cr_assert_eq(leg_cmos(0x0c), 0x00);
	cr_assert_eq(leg_cmos(0x0d), 0x80);
	leg_outb(RTC_INDEX_PORT, 0x0d);
	leg_outb(RTC_DATA_PORT, 0x00);
	cr_assert_eq(leg_cmos(0x0d), 0x80, "status D is read-only");
}

Test(legacy, rtc_nmi_bit_stripped_and_cmos_ram)
{
	leg_outb(RTC_INDEX_PORT, 0x80 | 0x40);
	leg_outb(RTC_DATA_PORT, 0x5a);
	cr_assert_eq(leg_cmos(0x40), 0x5a);
	cr_assert_eq(leg_cmos(0x80 | 0x40), 0x5a);
	leg_outb(RTC_INDEX_PORT, 0xff);
	leg_outb(RTC_DATA_PORT, 0x77);
	cr_assert_eq(leg_cmos(0x7f), 0x77);
	/* Alarm registers are plain storage. */
	leg_outb(RTC_INDEX_PORT, 0x01);
	leg_outb(RTC_DATA_PORT, 0x12);
	cr_assert_eq(leg_cmos(0x01), 0x12);
}

/* ---- debug exit ---- */

Test(legacy, debug_exit_zero_byte)
{
	int status;
	leg_outn(DEBUG_EXIT_PORT, 0, 1);
	cr_assert_eq(leg_stop(&status), STOP_DEBUG_EXIT);
	cr_assert_eq(status, 1);
}

Test(legacy, debug_exit_value_byte)
{
	int status;
	leg_outn(DEBUG_EXIT_PORT, 0x21, 1);
	cr_assert_eq(leg_stop(&status), STOP_DEBUG_EXIT);
	cr_assert_eq(status, 0x43);
}

Test(legacy, debug_exit_value_dword_first_wins)
{
	int status;
	leg_outn(DEBUG_EXIT_PORT, 0x21, 4);
	leg_outn(DEBUG_EXIT_PORT, 0x05, 2);
	power_request_stop(&leg_power, STOP_POWEROFF, 0);
	cr_assert_eq(leg_stop(&status), STOP_DEBUG_EXIT);
	cr_assert_eq(status, 0x43);
}

Test(legacy, debug_exit_huge_value_stays_non_negative)
{
	int status;
	leg_outn(DEBUG_EXIT_PORT, 0xffffffffu, 4);
	cr_assert_eq(leg_stop(&status), STOP_DEBUG_EXIT);
	cr_assert_geq(status, 0);
	cr_assert_eq(status & 0xff, 0xff);
}

Test(legacy, debug_exit_read_is_zero)
{
	int status;
	uint8_t b[4] = {1, 2, 3, 4};
	cr_assert(bus_dispatch(&leg_bus, DEBUG_EXIT_PORT, b, 4, false));
	cr_assert_eq(b[0] | b[1] | b[2] | b[3], 0);
	cr_assert_eq(leg_stop(&status), STOP_NONE);
}

/* ---- ACPI PM1a control ---- */

Test(legacy, pm_slp_en_powers_off)
{
	int status;
	leg_outn(PM1A_CNT_PORT, 0x2000, 2);
	cr_assert_eq(leg_stop(&status), STOP_POWEROFF);
	cr_assert_eq(status, 0);
}

Test(legacy, pm_high_byte_write)
{
	int status;
	leg_outn(PM1A_CNT_PORT + 1, 0x34, 1); /* SLP_TYP 5 | SLP_EN */
	cr_assert_eq(leg_stop(&status), STOP_POWEROFF);
}

Test(legacy, pm_without_slp_en_does_nothing)
{
	int status;
	leg_outn(PM1A_CNT_PORT, 0, 2);
	leg_outn(PM1A_CNT_PORT, 0x1c01, 2);
	leg_outn(PM1A_CNT_PORT, 0xff, 1);
	cr_assert_eq(leg_stop(&status), STOP_NONE);
	/* The last 16-bit value written stays (SCI_EN always reads set, SLP_EN never). */
	uint8_t b[2] = {0, 0};
	cr_assert(bus_dispatch(&leg_bus, PM1A_CNT_PORT, b, 2, false));
	cr_assert_eq(b[0] | (b[1] << 8), 0x1cff);
}

Test(legacy, pm_reads_acpi_mode_and_keeps_enable_and_status)
{
	uint8_t b[2] = {0, 0};
	cr_assert(bus_dispatch(&leg_bus, PM1A_CNT_PORT, b, 2, false));
	cr_assert_eq(b[0] & 1, 1, "SCI_EN must read 1: the machine is always in ACPI mode");
	/* PM1_EN is read/write (ACPICA's global-lock probe writes and reads it back). */
	leg_outn(PM1A_EVT_PORT + 2, 0x0120, 2);
	cr_assert(bus_dispatch(&leg_bus, PM1A_EVT_PORT + 2, b, 2, false));
	cr_assert_eq(b[0] | (b[1] << 8), 0x0120);
	/* PM1_STS is write-one-to-clear and nothing sets it: it stays 0. */
	leg_outn(PM1A_EVT_PORT, 0xffff, 2);
	cr_assert(bus_dispatch(&leg_bus, PM1A_EVT_PORT, b, 2, false));
	cr_assert_eq(b[0] | b[1], 0);
	int status;
	cr_assert_eq(leg_stop(&status), STOP_NONE);
}

static uint16_t leg_in16(uint16_t port)
{
	uint8_t b[2] = {0, 0};
	cr_assert(bus_dispatch(&leg_bus, port, b, 2, false));
	return (uint16_t)(b[0] | b[1] << 8);
}

Test(legacy, pm_power_button_status_is_write_one_to_clear_and_gates_the_sci)
{
	/* Pressed with PWRBTN_EN clear: the status shows it, the SCI stays low. */
	pm_power_button(&leg_pm);
	cr_assert_eq(leg_in16(PM1A_EVT_PORT), PM1_PWRBTN);
	cr_assert_not(pm_sci_level(&leg_pm), "SCI raised with PWRBTN_EN clear");
	/* Enabling it raises the SCI for the pending status. */
	leg_outn(PM1A_EVT_PORT + 2, PM1_PWRBTN, 2);
	cr_assert(pm_sci_level(&leg_pm), "SCI low with PWRBTN_STS and PWRBTN_EN set");
	cr_assert_eq(leg_sci_raises(), 1);
	/* Writing 0, or 1 to other bits, clears nothing. */
	leg_outn(PM1A_EVT_PORT, 0, 2);
	leg_outn(PM1A_EVT_PORT, 0xfeff, 2);
	leg_outn(PM1A_EVT_PORT, 0xff, 1); /* the low byte only: bit 8 untouched */
	cr_assert_eq(leg_in16(PM1A_EVT_PORT), PM1_PWRBTN);
	cr_assert(pm_sci_level(&leg_pm));
	/* Writing 1 to bit 8 (the high byte alone) clears it and lowers the SCI. */
	leg_outn(PM1A_EVT_PORT + 1, 0x01, 1);
	cr_assert_eq(leg_in16(PM1A_EVT_PORT), 0);
	cr_assert_not(pm_sci_level(&leg_pm), "SCI still up after PWRBTN_STS was cleared");
	/* Disabling with a press pending keeps the status and lowers the line. */
	pm_power_button(&leg_pm);
	cr_assert(pm_sci_level(&leg_pm));
	cr_assert_eq(leg_sci_raises(), 2);
	leg_outn(PM1A_EVT_PORT + 2, 0, 2);
	cr_assert_not(pm_sci_level(&leg_pm));
	cr_assert_eq(leg_in16(PM1A_EVT_PORT), PM1_PWRBTN);
	int status;
	cr_assert_eq(leg_stop(&status), STOP_NONE, "a button press alone never stops the VM");
}

Test(legacy, pm_gpe0_status_and_enable)
{
	pm_gpe0_raise(&leg_pm, 0);
	pm_gpe0_raise(&leg_pm, 16); /* out of range: ignored */
	cr_assert_eq(leg_in16(PM_GPE0_PORT), 1);
	cr_assert_not(pm_sci_level(&leg_pm));
	leg_outn(PM_GPE0_PORT + 2, 0x0001, 2);
	cr_assert_eq(leg_in16(PM_GPE0_PORT + 2), 1);
	cr_assert(pm_sci_level(&leg_pm));
	leg_outn(PM_GPE0_PORT, 0x0002, 2); /* another bit: nothing */
	cr_assert(pm_sci_level(&leg_pm));
	leg_outn(PM_GPE0_PORT, 0x0001, 1);
	cr_assert_eq(leg_in16(PM_GPE0_PORT), 0);
	cr_assert_not(pm_sci_level(&leg_pm));
}

Test(legacy, pm_state_round_trips_and_reset_lowers_the_sci)
{
	leg_outn(PM1A_EVT_PORT + 2, PM1_PWRBTN, 2);
	pm_power_button(&leg_pm);
	cr_assert(pm_sci_level(&leg_pm));
	struct state_writer w = {0};
	struct device d = {.ops = &pm_device_ops, .dev = &leg_pm};
	cr_assert_eq(device_save(&d, &w), 0);
	pm_device_ops.reset(&leg_pm);
	cr_assert_not(pm_sci_level(&leg_pm), "reset left the SCI up");
	cr_assert_eq(leg_in16(PM1A_EVT_PORT), 0);
	cr_assert_eq(device_load(&d, w.buf, w.len), 0);
	cr_assert_eq(leg_in16(PM1A_EVT_PORT), PM1_PWRBTN);
	cr_assert_eq(leg_in16(PM1A_EVT_PORT + 2), PM1_PWRBTN);
	cr_assert(pm_sci_level(&leg_pm), "load did not drive the SCI from the loaded state");
	/* A truncated blob changes nothing. */
	pm_device_ops.reset(&leg_pm);
	cr_assert_eq(device_load(&d, w.buf, w.len - 1), -EINVAL);
	cr_assert_eq(leg_in16(PM1A_EVT_PORT), 0);
	state_writer_free(&w);
}

/* ---- boot marker ---- */

Test(legacy, boot_marker_records_code)
{
	leg_outb(BOOT_MARKER_PORT, 0x41);
	cr_assert_eq(leg_marker.count, 1);
	cr_assert_eq(leg_marker.last_code, 0x41);
	cr_assert_geq(leg_marker.last_ms, 10.0);
	cr_assert_lt(leg_marker.last_ms, 60000.0);
	cr_assert_eq(leg_inb(BOOT_MARKER_PORT), 0);
}

Test(legacy, boot_marker_ignores_other_codes)
{
	leg_outb(BOOT_MARKER_PORT, 0x00);
	leg_outb(BOOT_MARKER_PORT, 0x3f);
	leg_outb(BOOT_MARKER_PORT, 0x80);
	cr_assert_eq(leg_marker.count, 0);
	cr_assert_eq(leg_marker.last_code, 0);
	leg_outb(BOOT_MARKER_PORT, 0x7f);
	cr_assert_eq(leg_marker.count, 1);
	cr_assert_eq(leg_marker.last_code, 0x7f);
}

Test(legacy, boot_marker_count_capped)
{
	log_set_level(LOG_ERROR); /* this process only: criterion forks per test */
	for (int i = 0; i < BOOT_MARKER_MAX + 10; i++)
		leg_outb(BOOT_MARKER_PORT, (uint8_t)(0x40 + i % 0x40));
	cr_assert_eq(leg_marker.count, BOOT_MARKER_MAX);
	cr_assert_eq(leg_marker.last_code, (uint8_t)(0x40 + (BOOT_MARKER_MAX + 9) % 0x40));
}

Test(legacy, rtc_cmos_reports_memory_and_cpus_as_pc_firmware_does)
{
	/* 5 GiB with 3 GiB below the hole, 4 CPUs. */
	rtc_set_machine_info(&leg_rtc, 3ull << 30, 2ull << 30, 4);
	uint8_t lo = leg_cmos(0x15), hi = leg_cmos(0x16);
	cr_assert_eq(lo | hi << 8, 640);
	cr_assert_eq(leg_cmos(0x17) | leg_cmos(0x18) << 8, 0xffff, "capped at 64 MiB - 1 KiB");
	cr_assert_eq(leg_cmos(0x34) | leg_cmos(0x35) << 8, ((3u << 30) - (16u << 20)) >> 16);
	cr_assert_eq(leg_cmos(0x5b) | leg_cmos(0x5c) << 8 | leg_cmos(0x5d) << 16, (2u << 30) >> 16);
	cr_assert_eq(leg_cmos(0x5f), 3);
	rtc_set_machine_info(&leg_rtc, 32 << 20, 0, 1);
	cr_assert_eq(leg_cmos(0x30) | leg_cmos(0x31) << 8, 31 * 1024);
	cr_assert_eq(leg_cmos(0x34) | leg_cmos(0x35) << 8, (16u << 20) >> 16);
}
