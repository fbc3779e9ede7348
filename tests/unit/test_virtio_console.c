/* virtio-console on a pipe backend, driven through its queues in fake guest memory: the
 * guest's output reaches the pipe, the pipe's input fills receive buffers only as the
 * guest provides them (the rest waits, nothing lost), a full backend stalls transmission
 * without losing bytes, EMERG_WRITE, config space, reset. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/virtio_console.h>
#include <linux/virtio_ring.h>

#include "core/power.h"
#include "virtio/console.h"

#define RXQ 0x1000u /* desc; avail +0x800, used +0xc00 */
#define TXQ 0x3000u
#define BUF 0x8000u

static uint8_t ram[1 << 16] __attribute__((aligned(4096)));
static struct guest_mem mem;
static struct event_loop loop;
static pthread_t loop_thread;
static int in_pipe[2], out_pipe[2];
static struct virtio_console *con;
static struct virtio_dev *d;
static unsigned queue_irqs[2], config_irqs;
static uint16_t avail_idx[2];
static struct vm_power power;
static bool power_in_use;

static void t_notify_queue(void *t, unsigned q)
{
	__atomic_fetch_add(&queue_irqs[q], 1, __ATOMIC_SEQ_CST);
}

static void t_notify_config(void *t)
{
	config_irqs++;
}

static const struct virtio_transport_ops t_ops = {t_notify_queue, t_notify_config};

static void *run_loop(void *arg)
{
	loop_run(&loop);
	return NULL;
}

static uint32_t qbase(unsigned q)
{
	return q ? TXQ : RXQ;
}

static void *gpa(uint64_t a)
{
	return ram + a;
}

static uint16_t used_idx(unsigned q)
{
	return __atomic_load_n((uint16_t *)gpa(qbase(q) + 0xc00 + 2), __ATOMIC_ACQUIRE);
}

static uint32_t used_len(unsigned q, unsigned i)
{
	uint32_t *e = gpa(qbase(q) + 0xc00 + 4 + 8 * (i % 16));
	return e[1];
}

/* One buffer as a one-descriptor chain (descriptor = the ring slot). */
static void offer(unsigned q, uint64_t addr, uint32_t len, bool writable)
{
	uint16_t slot = avail_idx[q] % 16;
	struct vring_desc *desc = gpa(qbase(q) + 16 * slot);
	desc->addr = addr;
	desc->len = len;
	desc->flags = writable ? VRING_DESC_F_WRITE : 0;
	desc->next = 0;
	uint16_t *avail = gpa(qbase(q) + 0x800);
	avail[2 + slot] = slot;
	avail_idx[q]++;
	__atomic_store_n(&avail[1], avail_idx[q], __ATOMIC_RELEASE);
	virtio_dev_queue_notify(d, q);
}

static void setup_queues(void)
{
	struct errbuf e = {{0}};
	virtio_dev_set_status(d, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	virtio_dev_set_driver_features(d, (1ull << VIRTIO_F_VERSION_1) |
					      (1ull << VIRTIO_CONSOLE_F_EMERG_WRITE));
	cr_assert(virtio_dev_set_status(d, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					       VIRTIO_CONFIG_S_FEATURES_OK) &
		  VIRTIO_CONFIG_S_FEATURES_OK);
	for (unsigned q = 0; q < 2; q++) {
		cr_assert_eq(virtqueue_set_size(&d->vqs[q], 16), 0);
		virtqueue_set_addrs(&d->vqs[q], qbase(q), qbase(q) + 0x800, qbase(q) + 0xc00);
		cr_assert_eq(virtqueue_enable(&d->vqs[q], &e), 0, "%s", e.msg);
	}
	virtio_dev_set_status(d, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				     VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
}

static void setup(void)
{
	memset(ram, 0, sizeof(ram));
	memset(&mem, 0, sizeof(mem));
	memset(queue_irqs, 0, sizeof(queue_irqs));
	memset(avail_idx, 0, sizeof(avail_idx));
	config_irqs = 0;
	cr_assert_eq(guest_mem_add_region(&mem, 0, sizeof(ram), ram), 0);
	cr_assert_eq(pipe2(in_pipe, O_CLOEXEC | O_NONBLOCK), 0);
	cr_assert_eq(pipe2(out_pipe, O_CLOEXEC | O_NONBLOCK), 0);
	cr_assert_eq(loop_init(&loop), 0);
	struct errbuf e = {{0}};
	cr_assert_eq(
	    virtio_console_new(&mem, &loop, NULL, "hvc0", in_pipe[0], out_pipe[1], &con, &e), 0,
	    "%s", e.msg);
	d = &con->dev;
	virtio_dev_attach(d, &t_ops, NULL);
	cr_assert_eq(pthread_create(&loop_thread, NULL, run_loop, NULL), 0);
}

static void teardown(void)
{
	loop_stop(&loop);
	pthread_join(loop_thread, NULL);
	if (power_in_use)
		power_destroy(&power);
	power_in_use = false;
	virtio_dev_destroy(d);
	free(con);
	loop_destroy(&loop);
	close(in_pipe[0]);
	close(in_pipe[1]);
	close(out_pipe[0]);
	close(out_pipe[1]);
}

/* Waits (bounded) for used->idx of q to reach n. */
static void wait_used(unsigned q, uint16_t n)
{
	for (int i = 0; i < 2000 && used_idx(q) != n; i++)
		usleep(1000);
	cr_assert_eq(used_idx(q), n, "queue %u: used idx %u, expected %u", q, used_idx(q), n);
}

static size_t read_out(char *buf, size_t len)
{
	size_t got = 0;
	for (int i = 0; i < 2000 && got < len; i++) {
		ssize_t r = read(out_pipe[0], buf + got, len - got);
		if (r > 0)
			got += (size_t)r;
		else
			usleep(1000);
	}
	return got;
}

TestSuite(virtio_console, .init = setup, .fini = teardown);

Test(virtio_console, identity_and_config)
{
	cr_assert_eq(d->ops->device_id, VIRTIO_ID_CONSOLE);
	cr_assert_eq(d->nqueues, 2, "one port, no MULTIPORT control queues");
	uint64_t f = virtio_dev_offered_features(d);
	cr_assert(f & (1ull << VIRTIO_CONSOLE_F_EMERG_WRITE));
	cr_assert_not(f & (1ull << VIRTIO_CONSOLE_F_MULTIPORT));
	cr_assert_not(f & (1ull << VIRTIO_CONSOLE_F_SIZE));
	uint8_t cfg[12];
	memset(cfg, 0xff, sizeof(cfg));
	virtio_dev_config_read(d, 0, cfg, sizeof(cfg));
	for (unsigned i = 0; i < sizeof(cfg); i++)
		cr_assert_eq(cfg[i], 0);
}

Test(virtio_console, guest_output_reaches_the_backend)
{
	setup_queues();
	memcpy(gpa(BUF), "hello from hvc0\n", 16);
	offer(1, BUF, 16, false);
	wait_used(1, 1);
	cr_assert_eq(used_len(1, 0), 0, "nothing written into a transmit buffer");
	char out[32] = {0};
	cr_assert_eq(read_out(out, 16), 16);
	cr_assert_str_eq(out, "hello from hvc0\n");
	cr_assert_geq(queue_irqs[1], 1);
	cr_assert_eq(con->tx_bytes, 16);
	struct virtio_stat vs[VIRTIO_STATS_MAX];
	cr_assert_eq(virtio_dev_stats(&con->dev, vs, VIRTIO_STATS_MAX), 2);
	cr_assert_str_eq(vs[0].name, "tx_bytes");
	cr_assert_eq(vs[0].value, 16);
	cr_assert_str_eq(vs[1].name, "rx_bytes");
}

Test(virtio_console, input_waits_for_receive_buffers)
{
	setup_queues();
	cr_assert_eq(write(in_pipe[1], "abcde", 5), 5);
	usleep(20000);
	cr_assert_eq(used_idx(0), 0, "no buffer, nothing delivered");
	offer(0, BUF, 2, true);
	wait_used(0, 1);
	cr_assert_eq(used_len(0, 0), 2);
	cr_assert_eq(memcmp(gpa(BUF), "ab", 2), 0);
	/* The rest was kept, not dropped: the next buffer gets it. */
	offer(0, BUF + 0x100, 16, true);
	wait_used(0, 2);
	cr_assert_eq(used_len(0, 1), 3);
	cr_assert_eq(memcmp(gpa(BUF + 0x100), "cde", 3), 0);
	cr_assert_geq(queue_irqs[0], 2);
	/* Later input goes straight into a waiting buffer. */
	offer(0, BUF + 0x200, 16, true);
	cr_assert_eq(write(in_pipe[1], "xyz\n", 4), 4);
	wait_used(0, 3);
	cr_assert_eq(used_len(0, 2), 4);
	cr_assert_eq(memcmp(gpa(BUF + 0x200), "xyz\n", 4), 0);
}

Test(virtio_console, input_before_driver_ok_is_kept)
{
	cr_assert_eq(write(in_pipe[1], "early", 5), 5);
	usleep(20000);
	setup_queues();
	offer(0, BUF, 16, true);
	wait_used(0, 1);
	cr_assert_eq(used_len(0, 0), 5);
	cr_assert_eq(memcmp(gpa(BUF), "early", 5), 0);
}

Test(virtio_console, full_backend_stalls_without_loss)
{
	setup_queues();
	/* Fill the pipe so the chardev has to buffer, then overflow its buffer too. */
	int cap = fcntl(out_pipe[1], F_GETPIPE_SZ);
	cr_assert_gt(cap, 0);
	size_t total = (size_t)cap + CHARDEV_OUT_BUF + 8192;
	cr_assert_lt(total, 0x8000 * 4);
	static uint8_t big[1 << 18];
	for (size_t i = 0; i < total; i++)
		big[i] = (uint8_t)(i * 7 + 1);
	/* 8 KiB requests; guest RAM is small, so four 8 KiB windows are reused in turn, a
	 * window only once the request that had it was used (at most 3 outstanding). */
	size_t chunk = 8192, nreq = (total + chunk - 1) / chunk;
	cr_assert_leq(nreq, 15);
	size_t off = 0, got = 0;
	static uint8_t out[1 << 18];
	for (size_t r = 0; r < nreq; r++) {
		size_t n = total - off < chunk ? total - off : chunk;
		uint64_t at = 0x8000 + (r % 4) * chunk;
		/* Drain a little while the device is stalled so requests can complete. */
		while (r >= 2 && used_idx(1) + 2 < (uint16_t)r) {
			ssize_t k = read(out_pipe[0], out + got, sizeof(out) - got);
			if (k > 0)
				got += (size_t)k;
			else
				usleep(1000);
		}
		memcpy(gpa(at), big + off, n);
		offer(1, at, (uint32_t)n, false);
		off += n;
	}
	/* Read everything: the stalled requests complete as room comes. */
	for (int i = 0; i < 5000 && got < total; i++) {
		ssize_t k = read(out_pipe[0], out + got, sizeof(out) - got);
		if (k > 0)
			got += (size_t)k;
		else
			usleep(1000);
	}
	cr_assert_eq(got, total);
	cr_assert_eq(memcmp(out, big, total), 0, "bytes in order, none lost");
	wait_used(1, (uint16_t)nreq);
}

Test(virtio_console, emergency_write)
{
	setup_queues();
	uint32_t c = 'E';
	virtio_dev_config_write(d, offsetof(struct virtio_console_config, emerg_wr), &c, 4);
	char out[2] = {0};
	cr_assert_eq(read_out(out, 1), 1);
	cr_assert_eq(out[0], 'E');
}

Test(virtio_console, reset_stops_and_restarts)
{
	setup_queues();
	virtio_dev_set_status(d, 0);
	cr_assert_eq(write(in_pipe[1], "q", 1), 1);
	usleep(20000);
	cr_assert_not(con->running);
	setup_queues();
	offer(0, BUF, 4, true);
	wait_used(0, 1);
	cr_assert_eq(*(char *)gpa(BUF), 'q');
}

/* On stdio the console has the serial console's way out: Ctrl-A x stops the VM, Ctrl-A
 * Ctrl-A sends one Ctrl-A, and the rest reaches the guest unchanged. */
Test(virtio_console, ctrl_a_escapes_on_stdio)
{
	cr_assert_eq(power_init(&power), 0);
	con->power = &power;
	setup_queues();
	offer(0, BUF, 16, true);
	cr_assert_eq(write(in_pipe[1],
			   "a\x01\x01"
			   "b",
			   4),
		     4);
	wait_used(0, 1);
	cr_assert_eq(used_len(0, 0), 3);
	cr_assert_eq(memcmp(gpa(BUF),
			    "a\x01"
			    "b",
			    3),
		     0);
	cr_assert_not(power_stop_requested(&power));
	offer(0, BUF + 0x100, 16, true);
	cr_assert_eq(write(in_pipe[1], "\x01x", 2), 2);
	for (int i = 0; i < 2000 && !power_stop_requested(&power); i++)
		usleep(1000);
	cr_assert(power_stop_requested(&power));
	cr_assert_eq(used_idx(0), 1, "the escape is not the guest's input");
	power_in_use = true; /* teardown frees it once the loop thread is gone */
}
