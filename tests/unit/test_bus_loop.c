/* The trap bus (address ranges -> handlers) and the event loop, without /dev/kvm. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
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

/* --- the copy-on-write range table --------------------------------------------------- */

struct bl_mover {
	struct bus *bus;
	struct bl_dev moved;
	int move_ret, register_ret, unregister_ret;
	bool synced;
};

static void bl_mover_handler(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			     bool is_write)
{
	struct bl_mover *m = opaque;
	/* What a PCI config write that moves a BAR does, from inside a handler. */
	m->move_ret = bus_move(m->bus, 0x1000, 0x2000);
	m->register_ret = bus_register(m->bus, 0x3000, 4, bl_handler, &m->moved, "new");
	m->unregister_ret = bus_unregister(m->bus, 0xcf8); /* the range running this handler */
	bus_synchronize(m->bus);			   /* must not wait for itself */
	m->synced = true;
}

static void *bl_mover_dispatch(void *arg)
{
	struct bl_mover *m = arg;
	uint8_t v[4] = {0};
	return bus_dispatch(m->bus, 0xcf8, v, 4, true) ? arg : NULL;
}

/* The new tests below avoid Criterion's .timeout: several of them in one run leak 48
 * bytes in Criterion's runner under LeakSanitizer. A watchdog join does the same job. */
static void *bl_join_within(pthread_t t, int seconds)
{
	struct timespec deadline;
	void *ret = NULL;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += seconds;
	int err = pthread_timedjoin_np(t, &ret, &deadline);
	cr_assert_eq(err, 0, "the dispatch did not return within %d s: deadlock", seconds);
	return ret;
}

Test(bus, handler_moves_and_registers_ranges_on_its_own_bus)
{
	struct bus b;
	struct bl_mover m = {.bus = &b, .moved = {.value = 9}};
	cr_assert_eq(bus_init(&b, "pio"), 0);
	cr_assert_eq(bus_register(&b, 0xcf8, 4, bl_mover_handler, &m, "pci-config"), 0);
	cr_assert_eq(bus_register(&b, 0x1000, 0x10, bl_handler, &m.moved, "bar"), 0);
	uint8_t v[4] = {0};
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, bl_mover_dispatch, &m), 0);
	cr_assert_not_null(bl_join_within(t, 10), "the write to 0xcf8 was not dispatched");
	cr_assert(m.synced);
	cr_assert_eq(m.move_ret, 0);
	cr_assert_eq(m.register_ret, 0);
	cr_assert_eq(m.unregister_ret, 0);
	cr_assert_not(bus_dispatch(&b, 0x1004, v, 1, false), "the old place of the BAR is empty");
	cr_assert(bus_dispatch(&b, 0x2004, v, 1, false));
	cr_assert_eq(v[0], 9);
	cr_assert_eq(m.moved.last_offset, 4);
	cr_assert(bus_dispatch(&b, 0x3000, v, 4, false));
	cr_assert_not(bus_dispatch(&b, 0xcf8, v, 4, true), "the handler removed its own range");
	/* bus_move keeps the rules of bus_register. */
	cr_assert_eq(bus_register(&b, 0x4000, 0x10, bl_handler, &m.moved, "other"), 0);
	cr_assert_eq(bus_move(&b, 0x2000, 0x4008), -EEXIST);
	cr_assert_eq(bus_move(&b, 0x2000, UINT64_MAX - 4), -EINVAL);
	cr_assert_eq(bus_move(&b, 0x2001, 0x5000), -ENOENT);
	cr_assert_eq(bus_move(&b, 0x2000, 0x2008), 0, "a range may overlap its own old place");
	cr_assert(bus_dispatch(&b, 0x2008 + 0xf, v, 1, false));
	bus_destroy(&b);
}

struct bl_slow {
	atomic_int entered, finished;
	struct bus *bus;
};

static void bl_slow_handler(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			    bool is_write)
{
	struct bl_slow *s = opaque;
	atomic_store(&s->entered, 1);
	usleep(200 * 1000);
	atomic_store(&s->finished, 1);
}

static void *bl_slow_dispatch(void *arg)
{
	struct bl_slow *s = arg;
	uint8_t v = 0;
	bus_dispatch(s->bus, 0x10, &v, 1, true);
	return NULL;
}

Test(bus, synchronize_waits_for_a_running_handler_of_a_removed_range)
{
	struct bus b;
	cr_assert_eq(bus_init(&b, "mmio"), 0);
	struct bl_slow *s = calloc(1, sizeof(*s));
	s->bus = &b;
	cr_assert_eq(bus_register(&b, 0x10, 1, bl_slow_handler, s, "slow"), 0);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, bl_slow_dispatch, s), 0);
	while (!atomic_load(&s->entered))
		usleep(1000);
	/* Registering elsewhere does not wait for the slow handler. */
	struct bl_dev d = {0};
	cr_assert_eq(bus_register(&b, 0x20, 1, bl_handler, &d, "fast"), 0);
	cr_assert_eq(atomic_load(&s->finished), 0);
	cr_assert_eq(bus_unregister(&b, 0x10), 0);
	bus_synchronize(&b);
	cr_assert_eq(atomic_load(&s->finished), 1, "synchronize returned while the handler ran");
	free(s); /* ASan: the handler touches s no more */
	pthread_join(t, NULL);
	bus_destroy(&b);
}

#define BL_MAGIC 0x5ca1ab1eu

struct bl_churn {
	struct bus bus;
	atomic_bool stop;
	atomic_uint misses_of_fixed, bad_dev, bad_offset, churn_hits, dispatches;
};

struct bl_churn_dev {
	unsigned magic;
	struct bl_churn *ctx;
};

static void bl_churn_handler(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			     bool is_write)
{
	struct bl_churn_dev *d = opaque;
	struct bl_churn *c = d->ctx;
	if (d->magic != BL_MAGIC)
		atomic_fetch_add(&c->bad_dev, 1);
	if (offset >= 0x100)
		atomic_fetch_add(&c->bad_offset, 1);
	atomic_fetch_add(&c->churn_hits, 1);
	usleep(1); /* widen the window in which the range can be removed under us */
}

static void bl_count_handler(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			     bool is_write)
{
	if (!is_write)
		memset(data, 0x5a, len);
}

static void *bl_churn_reader(void *arg)
{
	struct bl_churn *c = arg;
	uint8_t v[4];
	for (uint64_t i = 0; !atomic_load(&c->stop); i++) {
		if (!bus_dispatch(&c->bus, 0x10 + (i & 7), v, 1, false) || v[0] != 0x5a)
			atomic_fetch_add(&c->misses_of_fixed, 1);
		if (!bus_dispatch(&c->bus, 0xfff0, v, 4, false) || v[3] != 0x5a)
			atomic_fetch_add(&c->misses_of_fixed, 1);
		bus_dispatch(&c->bus, 0x1000 + (i & 0xff), v, 1, false);
		bus_dispatch(&c->bus, 0x2000 + (i & 0xff), v, 1, true);
		atomic_fetch_add(&c->dispatches, 4);
	}
	return NULL;
}

Test(bus, concurrent_dispatch_while_ranges_come_and_go)
{
	struct bl_churn *c = calloc(1, sizeof(*c));
	cr_assert_eq(bus_init(&c->bus, "mmio"), 0);
	cr_assert_eq(bus_register(&c->bus, 0x10, 8, bl_count_handler, NULL, "fixed-lo"), 0);
	cr_assert_eq(bus_register(&c->bus, 0xfff0, 4, bl_count_handler, NULL, "fixed-hi"), 0);
	pthread_t readers[4];
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pthread_create(&readers[i], NULL, bl_churn_reader, c), 0);
	unsigned rounds = 0;
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		/* A device appears, its BAR moves, it goes away and is freed at once. */
		struct bl_churn_dev *d = calloc(1, sizeof(*d));
		d->magic = BL_MAGIC;
		d->ctx = c;
		cr_assert_eq(bus_register(&c->bus, 0x1000, 0x100, bl_churn_handler, d, "churn"), 0);
		usleep(50);
		cr_assert_eq(bus_move(&c->bus, 0x1000, 0x2000), 0);
		usleep(50);
		cr_assert_eq(bus_unregister(&c->bus, 0x2000), 0);
		bus_synchronize(&c->bus);
		d->magic = 0;
		free(d);
		/* Unrelated ranges churn too, so tables are replaced while readers hold them. */
		cr_assert_eq(bus_register(&c->bus, 0x8000 + (rounds % 16) * 0x10, 0x10,
					  bl_count_handler, NULL, "extra"),
			     0);
		if (rounds % 16 == 15)
			for (unsigned k = 0; k < 16; k++)
				cr_assert_eq(bus_unregister(&c->bus, 0x8000 + k * 0x10), 0);
		rounds++;
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((now.tv_sec - t0.tv_sec) * 1000000000ll + (now.tv_nsec - t0.tv_nsec) <
		 1500000000ll);
	atomic_store(&c->stop, true);
	for (int i = 0; i < 4; i++)
		pthread_join(readers[i], NULL);
	cr_log_info("bus churn: %u rounds, %u dispatches, %u hits on the moving range", rounds,
		    atomic_load(&c->dispatches), atomic_load(&c->churn_hits));
	cr_assert_eq(atomic_load(&c->misses_of_fixed), 0, "a fixed range was missing");
	cr_assert_eq(atomic_load(&c->bad_dev), 0, "a handler ran on a freed device");
	cr_assert_eq(atomic_load(&c->bad_offset), 0);
	cr_assert_gt(rounds, 10);
	cr_assert_gt(atomic_load(&c->churn_hits), 0, "the moving range was never hit");
	bus_destroy(&c->bus);
	free(c);
}

/* --- the loop: removal waits for a running callback ---------------------------------- */

struct bl_sleepy {
	atomic_int entered;
	int finished;
	char scratch[64];
};

struct bl_loop_ctx {
	struct event_loop loop;
	struct bl_sleepy *data;
};

static void bl_sleepy_cb(void *opaque, int fd, uint32_t events)
{
	struct bl_sleepy *d = opaque;
	char c;
	ssize_t n = read(fd, &c, 1);
	(void)n;
	atomic_store(&d->entered, 1);
	usleep(200 * 1000);
	/* Touches its data after the other thread has asked to remove the fd. */
	memset(d->scratch, 1, sizeof(d->scratch));
	d->finished = 1;
}

static void *bl_loop_thread(void *arg)
{
	struct bl_loop_ctx *c = arg;
	loop_run(&c->loop);
	return NULL;
}

Test(loop, del_fd_from_another_thread_waits_for_the_running_callback)
{
	struct bl_loop_ctx c;
	int p[2];
	cr_assert_eq(loop_init(&c.loop), 0);
	cr_assert_eq(pipe(p), 0);
	c.data = calloc(1, sizeof(*c.data));
	cr_assert_eq(loop_add_fd(&c.loop, p[0], EPOLLIN, bl_sleepy_cb, c.data), 0);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, bl_loop_thread, &c), 0);
	cr_assert_eq(write(p[1], "x", 1), 1);
	while (!atomic_load(&c.data->entered))
		usleep(1000);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(loop_del_fd(&c.loop, p[0]), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_eq(c.data->finished, 1, "loop_del_fd returned while the callback ran");
	free(c.data); /* ASan would catch the callback touching it after this */
	long waited_ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	cr_assert_gt(waited_ms, 50, "waited %ld ms", waited_ms);
	/* Removing an fd whose callback is not running does not wait. */
	cr_assert_eq(write(p[1], "y", 1), 1);
	loop_stop(&c.loop);
	pthread_join(t, NULL);
	loop_destroy(&c.loop);
	close(p[0]);
	close(p[1]);
}
