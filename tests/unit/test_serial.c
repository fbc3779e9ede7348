#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/serial.h"
#include "core/bus.h"
#include "core/chardev.h"
#include "core/irq.h"
#include "core/loop.h"

#define COM1 SERIAL_COM1_BASE

enum { THR = 0, RBR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4 };
enum { LSR = 5, MSR = 6, SCR = 7 };

static struct bus ser_bus;
static struct irq_line ser_irq;
static struct serial ser;
static struct chardev ser_chr;
static int ser_pipe[2];
static unsigned ser_notified;

static void ser_setup(void)
{
	cr_assert_eq(bus_init(&ser_bus, "pio"), 0);
	irq_line_init(&ser_irq, -1, SERIAL_COM1_IRQ);
	cr_assert_eq(pipe2(ser_pipe, O_CLOEXEC), 0);
	/* Only the read end is non-blocking, so the test can see "nothing was sent". */
	cr_assert_eq(fcntl(ser_pipe[0], F_SETFL, O_NONBLOCK), 0);
	struct errbuf e;
	cr_assert_eq(chardev_open_fds(&ser_chr, -1, ser_pipe[1], "test", &e), 0, "%s", e.msg);
	cr_assert_eq(serial_init(&ser, &ser_irq, &ser_chr), 0);
	cr_assert_eq(serial_attach(&ser, &ser_bus, COM1), 0);
	ser_notified = 0;
}

static void ser_teardown(void)
{
	serial_destroy(&ser);
	chardev_close(&ser_chr);
	bus_destroy(&ser_bus);
	close(ser_pipe[0]);
	close(ser_pipe[1]);
}

TestSuite(serial, .init = ser_setup, .fini = ser_teardown);

static void ser_out(unsigned reg, uint8_t v)
{
	cr_assert(bus_dispatch(&ser_bus, COM1 + reg, &v, 1, true));
}

static uint8_t ser_in(unsigned reg)
{
	uint8_t v = 0xaa;
	cr_assert(bus_dispatch(&ser_bus, COM1 + reg, &v, 1, false));
	return v;
}

/* Reads what the UART transmitted so far; returns the byte count. */
static size_t ser_drain(uint8_t *buf, size_t cap)
{
	ssize_t n = read(ser_pipe[0], buf, cap);
	if (n < 0) {
		cr_assert(errno == EAGAIN, "read: %s", strerror(errno));
		return 0;
	}
	return (size_t)n;
}

static void ser_count_notify(void *opaque)
{
	unsigned *count = opaque;
	(*count)++;
}

Test(serial, thr_bytes_reach_fd_in_order)
{
	const char *msg = "hello, kvmini\r\n";
	for (const char *p = msg; *p; p++)
		ser_out(THR, (uint8_t)*p);
	uint8_t buf[64];
	size_t n = ser_drain(buf, sizeof(buf));
	cr_assert_eq(n, strlen(msg));
	cr_assert_arr_eq(buf, msg, n);
}

Test(serial, lsr_reports_transmitter_empty)
{
	cr_assert_eq(ser_in(LSR) & 0x61, 0x60);
	ser_out(THR, 'x');
	cr_assert_eq(ser_in(LSR) & 0x61, 0x60);
}

Test(serial, iir_idle_and_line_low)
{
	cr_assert_eq(ser_in(IIR), 0x01);
	cr_assert_not(ser_irq.level);
}

Test(serial, thre_interrupt_on_ier_enable_cleared_by_iir_read)
{
	ser_out(MCR, 0x0b); /* DTR | RTS | OUT2 */
	ser_out(IER, 0x02);
	cr_assert(ser_irq.level);
	cr_assert_eq(ser_irq.edges, 1);
	cr_assert_eq(ser_in(IIR), 0x02);
	cr_assert_not(ser_irq.level);
	cr_assert_eq(ser_in(IIR), 0x01);

	ser_out(THR, 'a');
	cr_assert(ser_irq.level);
	cr_assert_eq(ser_irq.edges, 2);
	cr_assert_eq(ser_in(IIR), 0x02);
	cr_assert_not(ser_irq.level);
}

Test(serial, thre_reenabled_raises_again)
{
	ser_out(MCR, 0x08);
	ser_out(IER, 0x02);
	cr_assert_eq(ser_in(IIR), 0x02);
	ser_out(IER, 0x00);
	ser_out(IER, 0x02);
	cr_assert(ser_irq.level);
	cr_assert_eq(ser_in(IIR), 0x02);
}

Test(serial, line_gated_by_out2)
{
	ser_out(IER, 0x02);
	cr_assert_eq(ser_in(IIR), 0x02, "IIR reports the interrupt regardless of OUT2");
	ser_out(IER, 0x00);
	ser_out(IER, 0x02);
	cr_assert_not(ser_irq.level);
	ser_out(MCR, 0x08);
	cr_assert(ser_irq.level);
	ser_out(MCR, 0x00);
	cr_assert_not(ser_irq.level);
}

Test(serial, receive_sets_dr_and_interrupt)
{
	ser_out(MCR, 0x08);
	ser_out(IER, 0x01);
	cr_assert_not(ser_irq.level);
	cr_assert_eq(serial_receive(&ser, (const uint8_t *)"abc", 3), 3);
	cr_assert_eq(ser_in(LSR) & 0x01, 0x01);
	cr_assert_eq(ser_in(IIR), 0x04);
	cr_assert(ser_irq.level);
	cr_assert_eq(ser_in(RBR), 'a');
	cr_assert_eq(ser_in(RBR), 'b');
	cr_assert(ser_irq.level);
	cr_assert_eq(ser_in(RBR), 'c');
	cr_assert_not(ser_irq.level);
	cr_assert_eq(ser_in(LSR) & 0x01, 0x00);
	cr_assert_eq(ser_in(IIR), 0x01);
}

Test(serial, rx_has_priority_over_thre)
{
	ser_out(MCR, 0x08);
	ser_out(IER, 0x03);
	cr_assert_eq(serial_receive(&ser, (const uint8_t *)"z", 1), 1);
	cr_assert_eq(ser_in(IIR), 0x04);
	cr_assert_eq(ser_in(IIR), 0x04, "an RDA report must not consume the THRE interrupt");
	cr_assert_eq(ser_in(RBR), 'z');
	cr_assert(ser_irq.level, "THRE still pending");
	cr_assert_eq(ser_in(IIR), 0x02);
	cr_assert_eq(ser_in(IIR), 0x01);
	cr_assert_not(ser_irq.level);
}

Test(serial, rx_without_erbfi_sets_dr_only)
{
	ser_out(MCR, 0x08);
	cr_assert_eq(serial_receive(&ser, (const uint8_t *)"q", 1), 1);
	cr_assert_eq(ser_in(LSR) & 0x01, 0x01);
	cr_assert_eq(ser_in(IIR), 0x01);
	cr_assert_not(ser_irq.level);
}

Test(serial, dlab_selects_divisor_latch)
{
	ser_out(IER, 0x05);
	ser_out(LCR, 0x83);
	ser_out(DLL, 0x01);
	ser_out(DLM, 0x00);
	cr_assert_eq(ser_in(DLL), 0x01);
	cr_assert_eq(ser_in(DLM), 0x00);
	uint8_t buf[8];
	cr_assert_eq(ser_drain(buf, sizeof(buf)), 0, "a DLL write must not transmit");
	ser_out(LCR, 0x03);
	cr_assert_eq(ser_in(LCR), 0x03);
	cr_assert_eq(ser_in(IER), 0x05, "a DLM write must not change IER");
	ser_out(THR, 'k');
	cr_assert_eq(ser_drain(buf, sizeof(buf)), 1);
	cr_assert_eq(buf[0], 'k');
}

Test(serial, ier_keeps_low_nibble)
{
	ser_out(IER, 0x00);
	cr_assert_eq(ser_in(IER), 0x00);
	ser_out(IER, 0xff);
	cr_assert_eq(ser_in(IER), 0x0f);
}

Test(serial, loopback_as_linux_probes)
{
	cr_assert_eq(ser_in(MSR) & 0xf0, 0xb0);
	ser_out(MCR, 0x1a); /* LOOP | OUT2 | RTS */
	cr_assert_eq(ser_in(MSR) & 0xf0, 0x90);
	ser_out(MCR, 0x1f);
	cr_assert_eq(ser_in(MSR) & 0xf0, 0xf0);
	ser_out(MCR, 0x10);
	cr_assert_eq(ser_in(MSR) & 0xf0, 0x00);
	ser_out(MCR, 0x00);
	cr_assert_eq(ser_in(MSR) & 0xf0, 0xb0);
}

Test(serial, loopback_routes_thr_to_rbr)
{
	ser_out(MCR, 0x1b);
	ser_out(IER, 0x01);
	ser_out(THR, 0x55);
	uint8_t buf[8];
	cr_assert_eq(ser_drain(buf, sizeof(buf)), 0);
	cr_assert_eq(ser_in(LSR) & 0x01, 0x01);
	cr_assert_eq(ser_in(IIR), 0x04);
	cr_assert_not(ser_irq.level, "loopback disconnects OUT2 from the IRQ");
	cr_assert_eq(ser_in(RBR), 0x55);
	cr_assert_eq(ser_in(LSR) & 0x01, 0x00);
}

Test(serial, fifo_identification)
{
	cr_assert_eq(ser_in(IIR) & 0xc0, 0x00);
	ser_out(FCR, 0xe7);
	cr_assert_eq(ser_in(IIR) & 0xc0, 0xc0);
	ser_out(FCR, 0x00);
	cr_assert_eq(ser_in(IIR) & 0xc0, 0x00);
}

Test(serial, fifo_reset_keeps_type_ahead_input)
{
	/* Input that arrived before the guest's driver reset the FIFO is still delivered. */
	cr_assert_eq(serial_receive(&ser, (const uint8_t *)"abc", 3), 3);
	ser_out(FCR, 0x07);
	cr_assert_eq(ser_in(IIR) & 0xc0, 0xc0, "the reset keeps the FIFOs enabled");
	cr_assert_eq(ser_in(LSR) & 0x01, 0x01);
	cr_assert_eq(ser_in(RBR), 'a');
	cr_assert_eq(ser_in(RBR), 'b');
	cr_assert_eq(ser_in(RBR), 'c');
	cr_assert_eq(ser_in(LSR) & 0x01, 0x00);
}

Test(serial, full_rx_buffer_short_count_and_space_callback)
{
	static uint8_t big[SERIAL_RX_BUF + 100];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)i;
	serial_set_rx_space_notify(&ser, ser_count_notify, &ser_notified);

	cr_assert_eq(serial_receive(&ser, big, sizeof(big)), SERIAL_RX_BUF);
	cr_assert_eq(serial_rx_space(&ser), 0);
	cr_assert_eq(serial_receive(&ser, big, 10), 0);
	cr_assert_eq(ser_notified, 0);

	cr_assert_eq(ser_in(RBR), 0);
	cr_assert_eq(ser_notified, 1);
	cr_assert_eq(serial_rx_space(&ser), 1);
	cr_assert_eq(ser_in(RBR), 1);
	cr_assert_eq(ser_notified, 1, "only the read that ends the full state notifies");

	/* The ring wraps correctly. */
	cr_assert_eq(serial_receive(&ser, (const uint8_t *)"\xf0\xf1", 2), 2);
	for (size_t i = 2; i < SERIAL_RX_BUF; i++)
		cr_assert_eq(ser_in(RBR), (uint8_t)i);
	cr_assert_eq(ser_in(RBR), 0xf0);
	cr_assert_eq(ser_in(RBR), 0xf1);
	cr_assert_eq(ser_in(LSR) & 0x01, 0x00);
	cr_assert_eq(serial_rx_space(&ser), SERIAL_RX_BUF);
}

Test(serial, partial_fit_after_room_made)
{
	static uint8_t big[SERIAL_RX_BUF];
	memset(big, 'x', sizeof(big));
	cr_assert_eq(serial_receive(&ser, big, SERIAL_RX_BUF - 2), SERIAL_RX_BUF - 2);
	cr_assert_eq(serial_receive(&ser, (const uint8_t *)"abcd", 4), 2);
	serial_set_rx_space_notify(&ser, ser_count_notify, &ser_notified);
	cr_assert_eq(ser_in(RBR), 'x');
	cr_assert_eq(ser_notified, 1, "a guest read after a short count makes space");
}

Test(serial, scratch_register)
{
	ser_out(SCR, 0x5a);
	cr_assert_eq(ser_in(SCR), 0x5a);
	ser_out(SCR, 0xa5);
	cr_assert_eq(ser_in(SCR), 0xa5);
}

Test(serial, rbr_read_when_empty)
{
	for (int i = 0; i < 3; i++)
		cr_assert_eq(ser_in(RBR), 0);
	cr_assert_eq(ser_in(LSR) & 0x01, 0x00);
	cr_assert_eq(serial_rx_space(&ser), SERIAL_RX_BUF);
	cr_assert_eq(serial_receive(&ser, (const uint8_t *)"m", 1), 1);
	cr_assert_eq(ser_in(RBR), 'm');
}

Test(serial, wide_access_is_bytewise_and_bounded)
{
	uint8_t v[2] = {0x11, 0x22};
	ser_out(LCR, 0x03);
	/* A 16-bit write at MSR is MSR (ignored) then SCR. */
	cr_assert(bus_dispatch(&ser_bus, COM1 + MSR, v, 2, true));
	cr_assert_eq(ser_in(SCR), 0x22);
	uint8_t r[2];
	cr_assert(bus_dispatch(&ser_bus, COM1 + MSR, r, 2, false));
	cr_assert_eq(r[0], 0xb0);
	cr_assert_eq(r[1], 0x22);
	/* Runs off the end of the 8 ports: not ours. */
	cr_assert_not(bus_dispatch(&ser_bus, COM1 + SCR, r, 2, false));
}

Test(serial, discards_output_without_fd)
{
	struct serial quiet;
	struct irq_line line;
	irq_line_init(&line, -1, 3);
	cr_assert_eq(serial_init(&quiet, &line, NULL), 0);
	cr_assert_eq(serial_attach(&quiet, &ser_bus, 0x2f8), 0);
	uint8_t v = 'x';
	cr_assert(bus_dispatch(&ser_bus, 0x2f8, &v, 1, true));
	cr_assert(bus_dispatch(&ser_bus, 0x2f8 + LSR, &v, 1, false));
	cr_assert_eq(v & 0x60, 0x60);
	serial_destroy(&quiet);
}

Test(serial, closed_reader_drops_output_quietly)
{
	signal(SIGPIPE, SIG_IGN);
	close(ser_pipe[0]);
	ser_pipe[0] = open("/dev/null", O_RDONLY);
	ser_out(THR, 'a');
	ser_out(THR, 'b');
	cr_assert_eq(ser_in(LSR) & 0x60, 0x60);
}

/* ---- break, transmitter stall, device state ---- */

Test(serial, break_sets_bi_with_a_nul_and_a_line_status_interrupt)
{
	ser_out(MCR, 0x08);
	ser_out(IER, 0x05); /* received data + receiver line status, as Linux enables */
	cr_assert(serial_send_break(&ser));
	cr_assert(ser_irq.level, "a break interrupts the guest");
	cr_assert_eq(ser_in(IIR), 0x06, "receiver line status has the highest priority");
	cr_assert_eq(ser_in(LSR) & 0x11, 0x11, "LSR: break indicator and data ready");
	cr_assert_eq(ser_in(RBR), 0x00, "the break reads as a NUL");
	cr_assert_eq(ser_in(LSR) & 0x11, 0x00);
	cr_assert_not(ser_irq.level);
}

Test(serial, break_behind_queued_input_is_reported_in_its_place)
{
	cr_assert_eq(serial_receive(&ser, (const uint8_t *)"ab", 2), 2);
	cr_assert(serial_send_break(&ser));
	cr_assert_eq(serial_receive(&ser, (const uint8_t *)"c", 1), 1);
	cr_assert_eq(ser_in(LSR) & 0x10, 0x00, "the break is not at the head yet");
	cr_assert_eq(ser_in(RBR), 'a');
	cr_assert_eq(ser_in(LSR) & 0x10, 0x00);
	cr_assert_eq(ser_in(RBR), 'b');
	cr_assert_eq(ser_in(LSR) & 0x11, 0x11);
	cr_assert_eq(ser_in(RBR), 0);
	cr_assert_eq(ser_in(LSR) & 0x11, 0x01);
	cr_assert_eq(ser_in(RBR), 'c');
}

struct loop_thread {
	struct event_loop loop;
	pthread_t thread;
};

static void *loop_thread_main(void *arg)
{
	struct loop_thread *t = arg;
	loop_run(&t->loop);
	return NULL;
}

Test(serial, full_backend_stalls_the_transmitter_and_thre_returns_with_room)
{
	struct loop_thread lt;
	struct errbuf e;
	cr_assert_eq(loop_init(&lt.loop), 0);
	cr_assert_eq(chardev_start(&ser_chr, &lt.loop, &e), 0, "%s", e.msg);
	cr_assert_eq(pthread_create(&lt.thread, NULL, loop_thread_main, &lt), 0);

	ser_out(MCR, 0x08);
	/* Nobody reads the pipe: the guest writes while THRE says it may, as a driver does. */
	size_t sent = 0;
	for (;;) {
		if (!(ser_in(LSR) & 0x20))
			break;
		for (int i = 0; i < 16; i++, sent++)
			ser_out(THR, (uint8_t)(sent * 7));
		cr_assert_lt(sent, 4u << 20, "the transmitter never stalled");
	}
	cr_assert_eq(ser_in(LSR) & 0x60, 0x00, "THRE and TEMT read 0 while the backend is full");
	cr_assert_geq(sent, CHARDEV_OUT_BUF, "the buffer takes bytes before the stall");
	cr_assert_eq(chardev_out_pending(&ser_chr), CHARDEV_OUT_BUF);
	ser_out(IER, 0x02);
	cr_assert_not(ser_irq.level, "no THRE interrupt while stalled");

	/* The reader comes back: every byte arrives, in order, and THRE rises with its
	 * interrupt. */
	static uint8_t got[4u << 20];
	size_t n = 0;
	for (int spins = 0; n < sent && spins < 20000; spins++) {
		ssize_t r = read(ser_pipe[0], got + n, sizeof(got) - n);
		if (r > 0)
			n += (size_t)r;
		else
			usleep(100);
	}
	cr_assert_eq(n, sent, "bytes lost: sent %zu, received %zu", sent, n);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(got[i], (uint8_t)(i * 7), "byte %zu", i);
	for (int spins = 0; !(ser_in(LSR) & 0x20) && spins < 20000; spins++)
		usleep(100);
	cr_assert_eq(ser_in(LSR) & 0x60, 0x60);
	cr_assert(ser_irq.level, "THRE interrupt once there is room");
	cr_assert_eq(ser_in(IIR), 0x02);

	loop_stop(&lt.loop);
	pthread_join(lt.thread, NULL);
	chardev_close(&ser_chr);
	loop_destroy(&lt.loop);
}

static size_t ser_save(struct state_writer *w)
{
	*w = (struct state_writer){0};
	const struct device d = {.ops = &serial_device_ops, .dev = &ser};
	cr_assert_eq(device_save(&d, w), 0);
	return w->len;
}

Test(serial, save_load_save_gives_identical_bytes)
{
	ser_out(LCR, 0x83);
	ser_out(DLL, 0x01);
	ser_out(LCR, 0x03);
	ser_out(MCR, 0x0b);
	ser_out(IER, 0x07);
	ser_out(FCR, 0xc7);
	ser_out(SCR, 0x42);
	static uint8_t big[SERIAL_RX_BUF];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i ^ 0x5a);
	/* Wrap the ring so the saved queue must come out oldest first. */
	cr_assert_eq(serial_receive(&ser, big, 100), 100);
	for (int i = 0; i < 90; i++)
		(void)ser_in(RBR);
	cr_assert_eq(serial_receive(&ser, big, SERIAL_RX_BUF - 12), SERIAL_RX_BUF - 12);
	cr_assert(serial_send_break(&ser));
	cr_assert_eq(serial_receive(&ser, (const uint8_t *)"q", 1), 1, "one slot is left");

	struct state_writer a, b;
	ser_save(&a);
	struct serial other;
	struct irq_line line;
	irq_line_init(&line, -1, 3);
	cr_assert_eq(serial_init(&other, &line, NULL), 0);
	const struct device d2 = {.ops = &serial_device_ops, .dev = &other};
	cr_assert_eq(device_load(&d2, a.buf, a.len), 0);
	b = (struct state_writer){0};
	cr_assert_eq(device_save(&d2, &b), 0);
	cr_assert_eq(a.len, b.len);
	cr_assert_arr_eq(a.buf, b.buf, a.len, "save -> load -> save differs");
	cr_assert(line.level, "the loaded UART raises its interrupt as the saved one did");

	/* What the guest sees matches too. */
	cr_assert_eq(serial_rx_space(&other), 0);
	uint8_t v;
	struct bus b2;
	cr_assert_eq(bus_init(&b2, "pio"), 0);
	cr_assert_eq(serial_attach(&other, &b2, 0x2f8), 0);
	cr_assert(bus_dispatch(&b2, 0x2f8 + SCR, &v, 1, false));
	cr_assert_eq(v, 0x42);
	cr_assert(bus_dispatch(&b2, 0x2f8 + RBR, &v, 1, false));
	cr_assert_eq(v, (uint8_t)(90 ^ 0x5a));
	bus_destroy(&b2);
	serial_destroy(&other);
	state_writer_free(&a);
	state_writer_free(&b);
}

Test(serial, truncated_or_bad_state_is_refused_without_change)
{
	cr_assert_eq(serial_receive(&ser, (const uint8_t *)"xyz", 3), 3);
	ser_out(SCR, 0x11);
	struct state_writer w;
	size_t len = ser_save(&w);
	const struct device d = {.ops = &serial_device_ops, .dev = &ser};
	ser_out(SCR, 0x22);
	for (size_t cut = 0; cut < len; cut++)
		cr_assert_eq(device_load(&d, w.buf, cut), -EINVAL, "a blob cut at %zu loaded", cut);
	cr_assert_eq(ser_in(SCR), 0x22, "a refused load changes nothing");
	/* One byte too many, another version, an impossible queue length. */
	uint8_t *copy = malloc(len + 1);
	memcpy(copy, w.buf, len);
	copy[len] = 0;
	cr_assert_eq(device_load(&d, copy, len + 1), -EINVAL);
	copy[0] ^= 0xff;
	cr_assert_eq(device_load(&d, copy, len), -EINVAL, "another version");
	copy[0] ^= 0xff;
	/* u32 version, 7 registers, flags, u32 break offset, u8 FIFO count, u32 rx count */
	size_t rx_count_at = 4 + 7 + 1 + 4 + 1;
	copy[rx_count_at + 2] = 0x10; /* 1 MiB queue */
	cr_assert_eq(device_load(&d, copy, len), -EINVAL);
	free(copy);
	cr_assert_eq(device_load(&d, w.buf, len), 0);
	cr_assert_eq(ser_in(SCR), 0x11);
	cr_assert_eq(ser_in(RBR), 'x');
	state_writer_free(&w);
}

Test(serial, reset_returns_to_power_on_and_keeps_queued_input)
{
	cr_assert_eq(serial_receive(&ser, (const uint8_t *)"typed", 5), 5);
	ser_out(MCR, 0x0b);
	ser_out(IER, 0x03);
	ser_out(SCR, 0x99);
	ser_out(LCR, 0x83);
	ser_out(DLL, 0x01);
	cr_assert(ser_irq.level);
	serial_reset(&ser);
	cr_assert_eq(ser_in(LCR), 0);
	cr_assert_eq(ser_in(IER), 0);
	cr_assert_eq(ser_in(MCR), 0);
	cr_assert_eq(ser_in(SCR), 0);
	cr_assert_eq(ser_in(IIR), 0x01);
	cr_assert_not(ser_irq.level, "no interrupt until the guest enables one again");
	ser_out(LCR, 0x80);
	cr_assert_eq(ser_in(DLL), 0x0c, "9600 baud, as a PC BIOS leaves it");
	ser_out(LCR, 0x03);
	cr_assert_eq(ser_in(LSR), 0x61, "THRE, TEMT and the input still queued");
	cr_assert_eq(ser_in(RBR), 't', "input typed before the reset reaches the guest after it");
}
