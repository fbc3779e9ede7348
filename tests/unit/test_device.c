/* The device list, the state blobs devices save and load, and the park barrier vCPUs stop
 * at. No /dev/kvm. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/bus.h"
#include "core/device.h"
#include "core/power.h"
#include "devices/legacy.h"

Test(state, round_trip_little_endian)
{
	struct state_writer w = {0};
	state_put_u8(&w, 0x12);
	state_put_u16(&w, 0x3456);
	state_put_u32(&w, 0x789abcde);
	state_put_u64(&w, 0x0123456789abcdefull);
	state_put_bytes(&w, "xyz", 3);
	cr_assert_eq(w.err, 0);
	cr_assert_eq(w.len, 1 + 2 + 4 + 8 + 3);
	cr_assert_eq(w.buf[1], 0x56, "little-endian on the wire");
	cr_assert_eq(w.buf[2], 0x34);

	struct state_reader r = {.buf = w.buf, .len = w.len};
	cr_assert_eq(state_get_u8(&r), 0x12);
	cr_assert_eq(state_get_u16(&r), 0x3456);
	cr_assert_eq(state_get_u32(&r), 0x789abcde);
	cr_assert_eq(state_get_u64(&r), 0x0123456789abcdefull);
	char b[3];
	state_get_bytes(&r, b, 3);
	cr_assert_eq(memcmp(b, "xyz", 3), 0);
	cr_assert_eq(state_reader_finish(&r), 0);
	state_writer_free(&w);
}

Test(state, reading_past_the_end_fails_and_yields_zeros)
{
	uint8_t blob[3] = {1, 2, 3};
	struct state_reader r = {.buf = blob, .len = sizeof(blob)};
	cr_assert_eq(state_get_u16(&r), 0x0201);
	cr_assert_eq(state_get_u32(&r), 0, "short read yields zero");
	cr_assert_neq(r.err, 0);
	cr_assert_eq(state_get_u8(&r), 0, "sticky error");
	cr_assert_neq(state_reader_finish(&r), 0);
}

Test(state, trailing_bytes_are_an_error)
{
	uint8_t blob[2] = {1, 2};
	struct state_reader r = {.buf = blob, .len = sizeof(blob)};
	(void)state_get_u8(&r);
	cr_assert_neq(state_reader_finish(&r), 0, "a blob longer than its fields is malformed");
}

/* ---- the list ---- */

static char trace[64];

static void t_reset(void *dev)
{
	strcat(trace, "r");
	strcat(trace, dev);
}

static void t_destroy(void *dev)
{
	strcat(trace, "d");
	strcat(trace, dev);
}

static const struct device_ops t_ops = {
    .name = "t", .version = 1, .reset = t_reset, .destroy = t_destroy};

Test(device_list, resets_in_order_and_destroys_in_reverse)
{
	struct device_list l;
	device_list_init(&l);
	trace[0] = 0;
	cr_assert_eq(device_list_add(&l, &t_ops, "1", 0), 0);
	cr_assert_eq(device_list_add(&l, &t_ops, "2", 1), 0);
	cr_assert_eq(device_list_add(&l, &t_ops, "3", 2), 0);
	cr_assert_eq(l.count, 3);
	cr_assert_eq(device_list_find(&l, "t", 1)->dev, (void *)"2");
	cr_assert_null(device_list_find(&l, "t", 7));
	cr_assert_null(device_list_find(&l, "u", 0));
	device_list_reset(&l);
	cr_assert_str_eq(trace, "r1r2r3");
	device_list_destroy(&l);
	cr_assert_str_eq(trace, "r1r2r3d3d2d1");
	cr_assert_eq(l.count, 0);
	cr_assert_null(l.head);
}

/* ---- legacy devices: save -> load -> save is the identity; bad blobs are refused ---- */

static struct bus dev_bus;
static struct vm_power dev_power;
static struct device_list dev_list;
static struct timespec dev_start;

static void dev_setup(void)
{
	cr_assert_eq(bus_init(&dev_bus, "pio"), 0);
	cr_assert_eq(power_init(&dev_power), 0);
	device_list_init(&dev_list);
	clock_gettime(CLOCK_MONOTONIC, &dev_start);
	cr_assert_eq(i8042_create(&dev_list, &dev_bus, &dev_power), 0);
	cr_assert_eq(rtc_create(&dev_list, &dev_bus, 256u << 20, 0, 2), 0);
	cr_assert_eq(debug_exit_create(&dev_list, &dev_bus, &dev_power, DEBUG_EXIT_PORT, 4), 0);
	cr_assert_eq(boot_marker_create(&dev_list, &dev_bus, &dev_start), 0);
	cr_assert_eq(pm_create(&dev_list, &dev_bus, &dev_power, -1, NULL), 0);
	cr_assert_eq(reset_control_create(&dev_list, &dev_bus, &dev_power), 0);
}

static void dev_teardown(void)
{
	device_list_destroy(&dev_list);
	power_destroy(&dev_power);
	bus_destroy(&dev_bus);
}

TestSuite(legacy_state, .init = dev_setup, .fini = dev_teardown);

static void out8(uint16_t port, uint8_t v)
{
	cr_assert(bus_dispatch(&dev_bus, port, &v, 1, true), "port 0x%x", port);
}

static uint8_t in8(uint16_t port)
{
	uint8_t v = 0;
	cr_assert(bus_dispatch(&dev_bus, port, &v, 1, false), "port 0x%x", port);
	return v;
}

static uint8_t cmos_read(uint8_t index)
{
	out8(RTC_INDEX_PORT, index);
	return in8(RTC_DATA_PORT);
}

static void cmos_write(uint8_t index, uint8_t v)
{
	out8(RTC_INDEX_PORT, index);
	out8(RTC_DATA_PORT, v);
}

/* Puts every device in a state other than its power-on one. */
static void dirty_devices(void)
{
	out8(I8042_COMMAND_PORT, 0x60); /* write command byte ... */
	out8(I8042_DATA_PORT, 0x07);
	out8(I8042_COMMAND_PORT, 0xaa); /* self test: output 0x55 pending */
	cmos_write(0x40, 0xab);
	cmos_write(0x0b, 0x02 | 0x40); /* 24 h + periodic interrupt enable */
	uint8_t en[2] = {0x21, 0x01};
	cr_assert(bus_dispatch(&dev_bus, 0x602, en, 2, true));
	out8(BOOT_MARKER_PORT, 0x41);
}

Test(legacy_state, every_device_saves_loads_and_saves_the_same_bytes)
{
	dirty_devices();
	cr_assert_eq(dev_list.count, 6, "i8042, rtc, debug-exit, boot marker, pm, reset control");
	for (struct device *d = dev_list.head; d; d = d->next) {
		struct state_writer a = {0}, b = {0};
		cr_assert_eq(device_save(d, &a), 0, "%s", d->ops->name);
		cr_assert_geq(a.len, 4, "%s: at least the version", d->ops->name);
		cr_assert_eq(device_load(d, a.buf, a.len), 0, "%s", d->ops->name);
		cr_assert_eq(device_save(d, &b), 0);
		cr_assert_eq(a.len, b.len, "%s", d->ops->name);
		cr_assert_eq(memcmp(a.buf, b.buf, a.len), 0, "%s: identical bytes", d->ops->name);
		state_writer_free(&a);
		state_writer_free(&b);
	}
}

Test(legacy_state, load_restores_what_was_saved)
{
	struct device *rtc = device_list_find(&dev_list, "rtc", 0);
	cr_assert_not_null(rtc);
	cmos_write(0x41, 0x5a);
	struct state_writer w = {0};
	cr_assert_eq(device_save(rtc, &w), 0);
	cmos_write(0x41, 0x00);
	cr_assert_eq(device_load(rtc, w.buf, w.len), 0);
	cr_assert_eq(cmos_read(0x41), 0x5a);
	state_writer_free(&w);
}

Test(legacy_state, truncated_foreign_or_wrong_version_blobs_are_refused)
{
	for (struct device *d = dev_list.head; d; d = d->next) {
		struct state_writer w = {0};
		cr_assert_eq(device_save(d, &w), 0);
		if (w.len > 4)
			cr_assert_neq(device_load(d, w.buf, w.len - 1), 0, "%s: truncated",
				      d->ops->name);
		cr_assert_neq(device_load(d, w.buf, 3), 0, "%s: no version", d->ops->name);
		w.buf[0] ^= 0xff;
		cr_assert_neq(device_load(d, w.buf, w.len), 0, "%s: other version", d->ops->name);
		w.buf[0] ^= 0xff;
		state_put_u8(&w, 0);
		cr_assert_neq(device_load(d, w.buf, w.len), 0, "%s: trailing byte", d->ops->name);
		state_writer_free(&w);
	}
}

Test(legacy_state, reset_keeps_cmos_nvram_and_clears_the_rest)
{
	dirty_devices();
	device_list_reset(&dev_list);
	cr_assert_eq(cmos_read(0x40), 0xab, "CMOS RAM survives a reset, as on a PC");
	cr_assert_eq(cmos_read(0x0b) & 0x40, 0, "periodic interrupt enable cleared by reset");
	cr_assert_eq(in8(I8042_COMMAND_PORT) & 0x01, 0, "no pending i8042 output");
	out8(I8042_COMMAND_PORT, 0x20);
	cr_assert_eq(in8(I8042_DATA_PORT), 0x45, "i8042 command byte back to the BIOS default");
	uint8_t en[2];
	cr_assert(bus_dispatch(&dev_bus, 0x602, en, 2, false));
	cr_assert_eq(en[0] | en[1], 0, "PM1_EN cleared");
	/* The memory size CMOS bytes are NVRAM as well. */
	cr_assert_eq(cmos_read(0x5f), 1, "CPU count - 1 still there");
}

Test(legacy_state, reset_control_register_requests_a_reset)
{
	out8(RESET_CONTROL_PORT, 0x02); /* SYS_RST alone: nothing yet */
	cr_assert_not(power_take_reset(&dev_power));
	out8(RESET_CONTROL_PORT, 0x06);
	cr_assert(power_take_reset(&dev_power), "RST_CPU resets");
	int status;
	cr_assert_eq(power_stop_reason(&dev_power, &status), STOP_NONE, "a reset is not a stop");
}

/* ---- the park barrier ---- */

struct fake_vcpu {
	struct vm_power *p;
	atomic_ulong progress;
	atomic_bool quit;
	pthread_t t;
};

static void *fake_vcpu_thread(void *arg)
{
	struct fake_vcpu *v = arg;
	while (!power_stop_requested(v->p) && !atomic_load(&v->quit)) {
		if (power_park_requested(v->p)) {
			power_park(v->p);
			continue;
		}
		atomic_fetch_add(&v->progress, 1);
	}
	power_vcpu_ended(v->p);
	return NULL;
}

Test(park, pause_returns_only_when_every_vcpu_is_parked)
{
	struct vm_power p;
	struct fake_vcpu v[3];
	cr_assert_eq(power_init(&p), 0);
	for (int i = 0; i < 3; i++) {
		v[i] = (struct fake_vcpu){.p = &p};
		power_vcpu_started(&p);
		cr_assert_eq(pthread_create(&v[i].t, NULL, fake_vcpu_thread, &v[i]), 0);
	}
	for (int round = 0; round < 20; round++) {
		cr_assert(power_user_pause(&p));
		cr_assert_not(power_user_pause(&p), "stop is idempotent");
		power_wait_parked(&p);
		unsigned long before[3];
		for (int i = 0; i < 3; i++)
			before[i] = atomic_load(&v[i].progress);
		struct timespec ms = {0, 2000000};
		nanosleep(&ms, NULL);
		for (int i = 0; i < 3; i++)
			cr_assert_eq(atomic_load(&v[i].progress), before[i],
				     "vCPU %d ran while paused", i);
		cr_assert(power_user_resume(&p));
		cr_assert_not(power_user_resume(&p));
		while (atomic_load(&v[0].progress) == before[0])
			sched_yield();
	}
	/* A stop wakes parked threads so they can end. */
	power_user_pause(&p);
	power_wait_parked(&p);
	power_request_stop(&p, STOP_QUIT, 0);
	for (int i = 0; i < 3; i++)
		pthread_join(v[i].t, NULL);
	cr_assert_eq(p.running, 0);
	power_destroy(&p);
}

Test(park, a_reset_request_parks_until_resumed)
{
	struct vm_power p;
	struct fake_vcpu v = {.p = &p};
	cr_assert_eq(power_init(&p), 0);
	power_vcpu_started(&p);
	cr_assert_eq(pthread_create(&v.t, NULL, fake_vcpu_thread, &v), 0);
	power_request_reset(&p);
	power_request_reset(&p); /* a second request while one is pending is the same reset */
	power_wait_parked(&p);
	cr_assert(power_take_reset(&p));
	cr_assert_not(power_take_reset(&p));
	unsigned long before = atomic_load(&v.progress);
	power_resume(&p);
	while (atomic_load(&v.progress) == before)
		sched_yield();
	cr_assert_not(power_park_requested(&p));
	atomic_store(&v.quit, true);
	pthread_join(v.t, NULL);
	power_destroy(&p);
}
