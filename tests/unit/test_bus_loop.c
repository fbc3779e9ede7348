/* The trap bus (address ranges -> handlers) and the event loop, without /dev/kvm. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "core/bus.h"
#include "core/loop.h"

struct bl_dev {
	uint64_t last_offset;
	uint32_t last_len;
	unsigned calls;
	uint8_t value;
};

static void bl_handler(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct bl_dev *d = opaque;
	d->calls++;
	d->last_offset = offset;
	d->last_len = len;
	if (is_write)
		d->value = data[0];
	else
		memset(data, d->value, len);
}

Test(bus, dispatches_by_range_with_offsets)
{
	struct bus b;
	struct bl_dev a = {0}, c = {0};
	cr_assert_eq(bus_init(&b, "pio"), 0);
	cr_assert_eq(bus_register(&b, 0x3f8, 8, bl_handler, &a, "uart"), 0);
	cr_assert_eq(bus_register(&b, 0x70, 2, bl_handler, &c, "rtc"), 0);
	uint8_t v = 0x42;
	cr_assert(bus_dispatch(&b, 0x3fb, &v, 1, true));
	cr_assert_eq(a.last_offset, 3);
	cr_assert_eq(a.value, 0x42);
	uint8_t r[2];
	cr_assert(bus_dispatch(&b, 0x70, r, 2, false));
	cr_assert_eq(c.last_len, 2);
	cr_assert_eq(a.calls, 1);
	bus_destroy(&b);
}

Test(bus, unclaimed_and_straddling_accesses)
{
	struct bus b;
	struct bl_dev a = {.value = 7};
	cr_assert_eq(bus_init(&b, "mmio"), 0);
	cr_assert_eq(bus_register(&b, 0x1000, 4, bl_handler, &a, "dev"), 0);
	uint8_t r[4] = {0};
	cr_assert_not(bus_dispatch(&b, 0x0fff, r, 1, false));
	cr_assert_eq(r[0], 0xff, "an empty bus reads all-ones");
	/* An access that starts inside a range and runs past its end is not the device's. */
	cr_assert_not(bus_dispatch(&b, 0x1002, r, 4, false));
	cr_assert_not(bus_dispatch(&b, 0x1004, r, 1, false));
	cr_assert_not(bus_dispatch(&b, UINT64_MAX, r, 1, false));
	cr_assert_eq(a.calls, 0);
	uint8_t w = 1;
	cr_assert_not(bus_dispatch(&b, 0x2000, &w, 1, true), "writes to nothing are dropped");
	bus_destroy(&b);
}

Test(bus, overlaps_refused_and_ranges_removable)
{
	struct bus b;
	struct bl_dev a = {0};
	cr_assert_eq(bus_init(&b, "pio"), 0);
	cr_assert_eq(bus_register(&b, 0x100, 0x10, bl_handler, &a, "a"), 0);
	cr_assert_eq(bus_register(&b, 0x10f, 1, bl_handler, &a, "b"), -EEXIST);
	cr_assert_eq(bus_register(&b, 0xf0, 0x11, bl_handler, &a, "c"), -EEXIST);
	cr_assert_eq(bus_register(&b, 0x0, 0, bl_handler, &a, "empty"), -EINVAL);
	cr_assert_eq(bus_register(&b, UINT64_MAX, 2, bl_handler, &a, "wraps"), -EINVAL);
	cr_assert_eq(bus_register(&b, 0x110, 1, bl_handler, &a, "adjacent"), 0);
	/* Many ranges, registered out of order, still resolve. */
	for (uint64_t i = 40; i > 20; i--)
		cr_assert_eq(bus_register(&b, i * 0x100, 0x10, bl_handler, &a, "many"), 0);
	uint8_t r;
	cr_assert(bus_dispatch(&b, 25 * 0x100 + 3, &r, 1, false));
	cr_assert_eq(bus_unregister(&b, 0x100), 0);
	cr_assert_not(bus_dispatch(&b, 0x105, &r, 1, false));
	cr_assert_eq(bus_unregister(&b, 0x100), -ENOENT);
	cr_assert(bus_dispatch(&b, 0x110, &r, 1, false));
	bus_destroy(&b);
}

struct bl_reader {
	struct event_loop *loop;
	char got[64];
	size_t len;
	int fired;
};

static void bl_on_read(void *opaque, int fd, uint32_t events)
{
	struct bl_reader *r = opaque;
	ssize_t n = read(fd, r->got + r->len, sizeof(r->got) - 1 - r->len);
	if (n > 0)
		r->len += (size_t)n;
	if (strchr(r->got, '!'))
		loop_stop(r->loop);
}

Test(loop, runs_fd_callbacks_until_stopped)
{
	struct event_loop l;
	int p[2];
	cr_assert_eq(loop_init(&l), 0);
	cr_assert_eq(pipe(p), 0);
	struct bl_reader r = {.loop = &l};
	cr_assert_eq(loop_add_fd(&l, p[0], EPOLLIN, bl_on_read, &r), 0);
	cr_assert_eq(loop_add_fd(&l, p[0], EPOLLIN, bl_on_read, &r), -EEXIST);
	cr_assert_eq(write(p[1], "hello!", 6), 6);
	cr_assert_eq(loop_run(&l), 0);
	cr_assert_str_eq(r.got, "hello!");
	cr_assert_eq(loop_del_fd(&l, p[0]), 0);
	cr_assert_eq(loop_del_fd(&l, p[0]), -ENOENT);
	loop_destroy(&l);
	close(p[0]);
	close(p[1]);
}

static void bl_on_timer(void *opaque, int fd, uint32_t events)
{
	struct bl_reader *r = opaque;
	uint64_t expirations;
	cr_assert_eq(read(fd, &expirations, sizeof(expirations)), sizeof(expirations));
	if (++r->fired == 3) {
		/* Removing itself from inside its own callback is allowed. */
		cr_assert_eq(loop_del_fd(r->loop, fd), 0);
		close(fd);
		loop_stop(r->loop);
	}
}

Test(loop, periodic_timer_fires_and_can_remove_itself)
{
	struct event_loop l;
	cr_assert_eq(loop_init(&l), 0);
	struct bl_reader r = {.loop = &l};
	int fd = loop_add_timer(&l, 1000000, 1000000, bl_on_timer, &r);
	cr_assert_geq(fd, 0);
	cr_assert_eq(loop_run(&l), 0);
	cr_assert_eq(r.fired, 3);
	loop_destroy(&l);
}

static void *bl_stop_thread(void *loop)
{
	loop_stop(loop);
	return NULL;
}

/* A lost stop would leave loop_run waiting forever: the timeout turns that into a failure. */
Test(loop, stop_from_another_thread_before_run, .timeout = 10)
{
	struct event_loop l;
	pthread_t t;
	cr_assert_eq(loop_init(&l), 0);
	cr_assert_eq(pthread_create(&t, NULL, bl_stop_thread, &l), 0);
	cr_assert_eq(pthread_join(t, NULL), 0); /* the stop arrives before the loop runs */
	cr_assert_eq(loop_run(&l), 0);
	loop_destroy(&l);
}
