/* The character layer (core/chardev) and the console's escapes and monitor (vmm/console),
 * on pipes, files and a fake VM control table: no /dev/kvm. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/chardev.h"
#include "core/control.h"
#include "core/loop.h"
#include "core/power.h"
#include "devices/serial.h"
#include "vmm/console.h"

struct loop_thread {
	struct event_loop loop;
	pthread_t thread;
	bool running;
};

static void *loop_main(void *arg)
{
	struct loop_thread *t = arg;
	loop_run(&t->loop);
	return NULL;
}

static void lt_start(struct loop_thread *t)
{
	cr_assert_eq(loop_init(&t->loop), 0);
	cr_assert_eq(pthread_create(&t->thread, NULL, loop_main, t), 0);
	t->running = true;
}

static void lt_stop(struct loop_thread *t)
{
	if (!t->running)
		return;
	loop_stop(&t->loop);
	pthread_join(t->thread, NULL);
	t->running = false;
}

/* Waits (bounded) for cond to hold, polling. */
#define WAIT_FOR(cond)                                           \
	do {                                                     \
		for (int w_ = 0; !(cond) && w_ < 50000; w_++)    \
			usleep(100);                             \
		cr_assert(cond, "timed out waiting for " #cond); \
	} while (0)

/* ---- output ---- */

struct notify_count {
	atomic_int n;
};

static void count_writable(void *opaque)
{
	struct notify_count *c = opaque;
	atomic_fetch_add(&c->n, 1);
}

Test(chardev, write_never_blocks_on_a_pipe_nobody_reads)
{
	int p[2];
	struct chardev c;
	struct errbuf e;
	struct loop_thread lt;
	struct notify_count nc = {0};
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	/* kvmini's caller left the write end blocking; the chardev must not care. */
	cr_assert_eq(chardev_open_fds(&c, -1, p[1], "t", &e), 0, "%s", e.msg);
	chardev_set_writable(&c, count_writable, &nc);
	lt_start(&lt);
	cr_assert_eq(chardev_start(&c, &lt.loop, &e), 0, "%s", e.msg);

	static uint8_t chunk[4096];
	size_t total = 0, taken;
	unsigned calls = 0;
	do {
		memset(chunk, (int)(calls & 0xff), sizeof(chunk));
		taken = chardev_write(&c, chunk, sizeof(chunk));
		total += taken;
		calls++;
		cr_assert_lt(calls, 10000, "the buffer never filled");
	} while (taken == sizeof(chunk));
	cr_assert_eq(chardev_out_pending(&c), CHARDEV_OUT_BUF, "a bounded buffer, full");
	cr_assert_eq(chardev_write(&c, chunk, 1), 0, "a full buffer takes nothing more");
	cr_assert_eq(atomic_load(&nc.n), 0);

	/* The reader drains: everything arrives in order, and the writer hears about room. */
	static uint8_t got[1 << 20];
	size_t n = 0;
	int fl = fcntl(p[0], F_GETFL);
	fcntl(p[0], F_SETFL, fl | O_NONBLOCK);
	for (int spins = 0; n < total && spins < 50000; spins++) {
		ssize_t r = read(p[0], got + n, sizeof(got) - n);
		if (r > 0)
			n += (size_t)r;
		else
			usleep(100);
	}
	cr_assert_eq(n, total);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(got[i], (uint8_t)((i / sizeof(chunk)) & 0xff), "byte %zu", i);
	WAIT_FOR(atomic_load(&nc.n) == 1);
	WAIT_FOR(chardev_out_pending(&c) == 0);
	cr_assert_eq(fcntl(p[1], F_GETFL) & O_NONBLOCK, 0,
		     "the caller's descriptor stays blocking (kvmini writes its own)");
	lt_stop(&lt);
	chardev_close(&c);
	loop_destroy(&lt.loop);
	close(p[0]);
	close(p[1]);
}

Test(chardev, flush_writes_what_is_left_and_gives_up_on_a_stuck_reader)
{
	int p[2];
	struct chardev c;
	struct errbuf e;
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	cr_assert_eq(chardev_open_fds(&c, -1, p[1], "t", &e), 0, "%s", e.msg);
	static uint8_t big[200000];
	memset(big, 'z', sizeof(big));
	size_t taken = chardev_write(&c, big, sizeof(big));
	cr_assert_lt(taken, sizeof(big));
	cr_assert_gt(chardev_out_pending(&c), 0);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	chardev_flush(&c, 200);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_assert_lt(s, 2.0, "a reader that never reads does not hold kvmini (%.2f s)", s);
	chardev_close(&c);
	close(p[0]);
	close(p[1]);
}

Test(chardev, closed_reader_means_output_is_dropped)
{
	int p[2];
	struct chardev c;
	struct errbuf e;
	signal(SIGPIPE, SIG_IGN);
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	cr_assert_eq(chardev_open_fds(&c, -1, p[1], "t", &e), 0, "%s", e.msg);
	close(p[0]);
	cr_assert_eq(chardev_write(&c, (const uint8_t *)"abc", 3), 3);
	cr_assert_eq(chardev_write(&c, (const uint8_t *)"def", 3), 3);
	cr_assert_eq(chardev_out_pending(&c), 0);
	chardev_close(&c);
	close(p[1]);
}

/* ---- input ---- */

struct sink {
	pthread_mutex_t lock;
	uint8_t buf[65536];
	size_t len;
	size_t limit; /* takes at most this many in total until raised */
};

static size_t sink_receive(void *opaque, const uint8_t *buf, size_t len)
{
	struct sink *s = opaque;
	pthread_mutex_lock(&s->lock);
	size_t room = s->limit > s->len ? s->limit - s->len : 0;
	size_t n = len < room ? len : room;
	memcpy(s->buf + s->len, buf, n);
	s->len += n;
	pthread_mutex_unlock(&s->lock);
	return n;
}

static size_t sink_len(struct sink *s)
{
	pthread_mutex_lock(&s->lock);
	size_t n = s->len;
	pthread_mutex_unlock(&s->lock);
	return n;
}

Test(chardev, input_backpressure_loses_nothing)
{
	int p[2];
	struct chardev c;
	struct errbuf e;
	struct loop_thread lt;
	static struct sink sk = {.lock = PTHREAD_MUTEX_INITIALIZER};
	sk.len = 0;
	sk.limit = 1000;
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	cr_assert_eq(chardev_open_fds(&c, p[0], -1, "t", &e), 0, "%s", e.msg);
	chardev_set_receive(&c, sink_receive, &sk);
	lt_start(&lt);
	cr_assert_eq(chardev_start(&c, &lt.loop, &e), 0, "%s", e.msg);
	static uint8_t data[20000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 13);
	cr_assert_eq(write(p[1], data, sizeof(data)), (ssize_t)sizeof(data));
	WAIT_FOR(sink_len(&sk) == 1000);
	usleep(20000);
	cr_assert_eq(sink_len(&sk), 1000, "a full frontend is not offered more");
	pthread_mutex_lock(&sk.lock);
	sk.limit = sizeof(sk.buf);
	pthread_mutex_unlock(&sk.lock);
	chardev_input_resume(&c);
	WAIT_FOR(sink_len(&sk) == sizeof(data));
	cr_assert_arr_eq(sk.buf, data, sizeof(data));
	lt_stop(&lt);
	chardev_close(&c);
	loop_destroy(&lt.loop);
	close(p[0]);
	close(p[1]);
}

Test(chardev, regular_file_input_is_delivered)
{
	/* epoll refuses regular files (EPERM): QEMU still delivers them, and so must we. */
	char path[] = "/tmp/kvmini-chardev-in-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	static uint8_t data[10000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 3 + 1);
	cr_assert_eq(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
	lseek(fd, 0, SEEK_SET);
	unlink(path);

	struct chardev c;
	struct errbuf e;
	struct loop_thread lt;
	static struct sink sk = {.lock = PTHREAD_MUTEX_INITIALIZER};
	sk.len = 0;
	sk.limit = 3000;
	cr_assert_eq(chardev_open_fds(&c, fd, -1, "t", &e), 0, "%s", e.msg);
	chardev_set_receive(&c, sink_receive, &sk);
	lt_start(&lt);
	cr_assert_eq(chardev_start(&c, &lt.loop, &e), 0, "%s", e.msg);
	WAIT_FOR(sink_len(&sk) == 3000);
	pthread_mutex_lock(&sk.lock);
	sk.limit = sizeof(sk.buf);
	pthread_mutex_unlock(&sk.lock);
	chardev_input_resume(&c);
	WAIT_FOR(sink_len(&sk) == sizeof(data));
	cr_assert_arr_eq(sk.buf, data, sizeof(data));
	lt_stop(&lt);
	chardev_close(&c);
	loop_destroy(&lt.loop);
	close(fd);
}

/* ---- the console: escapes and the monitor ---- */

struct fake_vm {
	int paused, resumed, resets, quits;
	enum vm_run_status status;
};

static int fake_pause(void *o)
{
	struct fake_vm *v = o;
	v->paused++;
	v->status = VM_STATUS_PAUSED;
	return 0;
}

static int fake_resume(void *o)
{
	struct fake_vm *v = o;
	v->resumed++;
	v->status = VM_STATUS_RUNNING;
	return 0;
}

static void fake_reset(void *o)
{
	((struct fake_vm *)o)->resets++;
}

static void fake_quit(void *o)
{
	((struct fake_vm *)o)->quits++;
}

static enum vm_run_status fake_status(void *o)
{
	return ((struct fake_vm *)o)->status;
}

static const struct vm_control_ops fake_ops = {
    .pause = fake_pause,
    .resume = fake_resume,
    .reset = fake_reset,
    .quit = fake_quit,
    .status = fake_status,
};

struct con_fixture {
	struct console con;
	struct serial ser;
	struct irq_line irq;
	struct vm_power power;
	struct fake_vm vm;
	struct vm_control ctl;
	char out_path[64];
};

static struct con_fixture cf;

/* A console on a "stdio" backend whose output goes to a file the test reads back. */
static void con_setup(bool mux)
{
	memset(&cf, 0, sizeof(cf));
	snprintf(cf.out_path, sizeof(cf.out_path), "/tmp/kvmini-con-%d", getpid());
	struct chardev_cfg cfg = {.backend = CHARDEV_FILE, .path = cf.out_path};
	struct errbuf e;
	cr_assert_eq(console_open(&cf.con, &cfg, "serial0", &e), 0, "%s", e.msg);
	/* What console_open does for stdio, on a file backend the test can read. */
	cf.con.escapes = true;
	cf.con.mux = mux;
	irq_line_init(&cf.irq, -1, 4);
	cr_assert_eq(serial_init(&cf.ser, &cf.irq, &cf.con.chr), 0);
	cr_assert_eq(power_init(&cf.power), 0);
	cf.ctl = (struct vm_control){.ops = &fake_ops, .opaque = &cf.vm};
	cf.con.serial = &cf.ser;
	cf.con.power = &cf.power;
	cf.con.control = &cf.ctl;
}

static void con_teardown(void)
{
	console_close(&cf.con);
	serial_destroy(&cf.ser);
	power_destroy(&cf.power);
	unlink(cf.out_path);
}

static char *con_output(void)
{
	static char buf[8192];
	FILE *f = fopen(cf.out_path, "r");
	cr_assert_not_null(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void feed(const char *s)
{
	size_t len = strlen(s);
	cr_assert_eq(console_feed(&cf.con, (const uint8_t *)s, len), len);
}

static uint8_t uart_rx(void)
{
	uint8_t v = 0;
	size_t space = serial_rx_space(&cf.ser);
	cr_assert_lt(space, SERIAL_RX_BUF, "nothing queued for the guest");
	/* Read RBR through the device's own port handler. */
	struct bus b;
	cr_assert_eq(bus_init(&b, "pio"), 0);
	cr_assert_eq(serial_attach(&cf.ser, &b, 0x3f8), 0);
	cr_assert(bus_dispatch(&b, 0x3f8, &v, 1, false));
	bus_destroy(&b);
	return v;
}

static uint8_t uart_lsr(void)
{
	uint8_t v = 0;
	struct bus b;
	cr_assert_eq(bus_init(&b, "pio"), 0);
	cr_assert_eq(serial_attach(&cf.ser, &b, 0x3f8), 0);
	cr_assert(bus_dispatch(&b, 0x3f8 + 5, &v, 1, false));
	bus_destroy(&b);
	return v;
}

Test(console, plain_bytes_and_ctrl_a_ctrl_a_reach_the_guest, .fini = con_teardown)
{
	con_setup(false);
	feed("ab\x01\x01"
	     "c");
	cr_assert_eq(uart_rx(), 'a');
	cr_assert_eq(uart_rx(), 'b');
	cr_assert_eq(uart_rx(), 0x01, "Ctrl-A Ctrl-A sends one Ctrl-A");
	cr_assert_eq(uart_rx(), 'c');
	cr_assert_eq(serial_rx_space(&cf.ser), SERIAL_RX_BUF);
}

Test(console, ctrl_a_b_sends_a_break, .fini = con_teardown)
{
	con_setup(false);
	feed("\x01"
	     "b");
	cr_assert_eq(uart_lsr() & 0x11, 0x11, "LSR.BI and DR");
	cr_assert_eq(uart_rx(), 0);
	cr_assert_eq(uart_lsr() & 0x11, 0);
}

Test(console, ctrl_a_x_stops_the_vm, .fini = con_teardown)
{
	con_setup(false);
	feed("\x01x"
	     "more");
	int status = -1;
	cr_assert_eq(power_stop_reason(&cf.power, &status), STOP_SIGNAL);
	cr_assert_eq(status, 0);
	cr_assert_eq(serial_rx_space(&cf.ser), SERIAL_RX_BUF, "nothing after it reached the guest");
}

Test(console, ctrl_a_h_prints_help_and_unknown_keys_are_swallowed, .fini = con_teardown)
{
	con_setup(false);
	feed("\x01h"
	     "\x01z");
	char *out = con_output();
	cr_assert(strstr(out, "C-a x"), "%s", out);
	cr_assert(strstr(out, "C-a b"), "%s", out);
	cr_assert_null(strstr(out, "C-a c"), "no monitor without mux: %s", out);
	cr_assert_eq(serial_rx_space(&cf.ser), SERIAL_RX_BUF, "neither key reached the guest");
	cr_assert_not(power_stop_requested(&cf.power));
}

Test(console, ctrl_a_c_without_mux_stays_on_the_console, .fini = con_teardown)
{
	con_setup(false);
	feed("\x01"
	     "cq");
	cr_assert_not(cf.con.in_monitor);
	cr_assert_eq(uart_rx(), 'q');
}

Test(console, escape_split_across_reads, .fini = con_teardown)
{
	con_setup(false);
	feed("\x01");
	feed("\x01");
	cr_assert_eq(uart_rx(), 0x01);
}

Test(console, full_uart_keeps_the_rest_for_later, .fini = con_teardown)
{
	con_setup(false);
	static uint8_t big[SERIAL_RX_BUF + 10];
	memset(big, 'k', sizeof(big));
	cr_assert_eq(console_feed(&cf.con, big, sizeof(big)), SERIAL_RX_BUF);
	/* A pending escape is not lost either when the UART is full. */
	cr_assert_eq(console_feed(&cf.con, (const uint8_t *)"\x01\x01", 2), 1);
	cr_assert(cf.con.escape);
}

Test(console, monitor_info_status_stop_cont_reset_quit, .fini = con_teardown)
{
	con_setup(true);
	feed("\x01"
	     "c");
	cr_assert(cf.con.in_monitor);
	feed("info status\r");
	feed("stop\n");
	feed("info status\n");
	feed("cont\n");
	feed("system_reset\n");
	feed("bogus\n");
	feed("help\n");
	cr_assert_eq(serial_rx_space(&cf.ser), SERIAL_RX_BUF, "monitor input is not the guest's");
	char *out = con_output();
	cr_assert(strstr(out, "(kvmini) "), "%s", out);
	const char *first = strstr(out, "VM status: running");
	cr_assert_not_null(first, "%s", out);
	cr_assert(strstr(first, "VM status: paused"), "%s", out);
	cr_assert_eq(cf.vm.paused, 1);
	cr_assert_eq(cf.vm.resumed, 1);
	cr_assert_eq(cf.vm.resets, 1);
	cr_assert(strstr(out, "unknown command: 'bogus'"), "%s", out);
	cr_assert(strstr(out, "system_reset"), "%s", out);
	feed("quit\n");
	cr_assert_eq(cf.vm.quits, 1);
	/* Ctrl-A c again: back to the guest. */
	feed("\x01"
	     "cz");
	cr_assert_not(cf.con.in_monitor);
	cr_assert_eq(uart_rx(), 'z');
}

Test(console, monitor_without_pause_support_says_so, .fini = con_teardown)
{
	con_setup(true);
	static const struct vm_control_ops none = {0};
	cf.ctl.ops = &none;
	feed("\x01"
	     "cstop\ninfo status\n");
	char *out = con_output();
	cr_assert(strstr(out, "stop is not supported"), "%s", out);
	cr_assert(strstr(out, "VM status: running"), "%s", out);
}

Test(console, monitor_line_editing, .fini = con_teardown)
{
	con_setup(true);
	feed("\x01"
	     "cinfo statux\x7fs\n");
	char *out = con_output();
	cr_assert(strstr(out, "VM status: running"), "backspace edits the line: %s", out);
}
