#include "virtio/console.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_console.h>
#include <linux/virtio_ring.h>

#include "util/log.h"

static struct virtio_console *to_console(struct virtio_dev *d)
{
	return d->priv;
}

static uint64_t console_features(struct virtio_dev *d)
{
	return (1ull << VIRTIO_CONSOLE_F_EMERG_WRITE) | (1ull << VIRTIO_RING_F_EVENT_IDX) |
	       (1ull << VIRTIO_RING_F_INDIRECT_DESC);
}

static void console_config_read(struct virtio_dev *d, uint32_t offset, void *data, uint32_t len)
{
	/* cols, rows (no SIZE), max_nr_ports (no MULTIPORT) and emerg_wr all read 0. */
	struct virtio_console_config cfg = {0};
	memcpy(data, (uint8_t *)&cfg + offset, len);
}

static void console_config_write(struct virtio_dev *d, uint32_t offset, const void *data,
				 uint32_t len)
{
	struct virtio_console *c = to_console(d);
	/* emerg_wr: the low byte of a write to it is a character for the port. */
	if (offset == offsetof(struct virtio_console_config, emerg_wr) && len >= 1 &&
	    virtio_dev_has_feature(d, VIRTIO_CONSOLE_F_EMERG_WRITE)) {
		chardev_write(&c->chr, data, 1);
		atomic_fetch_add_explicit(&c->tx_bytes, 1, memory_order_relaxed);
	}
}

/* The queue broke: the driver learns it through NEEDS_RESET. c->lock held. */
static void console_broken(struct virtio_console *c, unsigned q)
{
	c->running = false;
	virtio_dev_needs_reset(&c->dev, c->dev.vqs[q].why.msg);
}

/* Moves the guest's output to the backend until the queue is empty or the backend's buffer
 * is full (then the chardev's writable callback comes back here). c->lock held. */
static void console_tx(struct virtio_console *c)
{
	struct virtqueue *vq = &c->dev.vqs[VIRTIO_CONSOLE_TX];
	bool used = false;
	uint8_t buf[1024];
	while (c->running) {
		if (!c->tx_pending) {
			int ret = virtqueue_pop(vq, c->tx_req);
			if (ret < 0) {
				console_broken(c, VIRTIO_CONSOLE_TX);
				break;
			}
			if (ret == 0)
				break;
			c->tx_pending = true;
			c->tx_off = 0;
		}
		size_t n = virtqueue_req_read(vq, c->tx_req, c->tx_off, buf, sizeof(buf));
		if (n == 0) {
			/* Nothing is written into a transmit buffer. */
			virtqueue_push(vq, c->tx_req->head, 0);
			c->tx_pending = false;
			used = true;
			continue;
		}
		size_t w = chardev_write(&c->chr, buf, n);
		c->tx_off += w;
		atomic_fetch_add_explicit(&c->tx_bytes, w, memory_order_relaxed);
		if (w < n)
			break; /* the backend is full: wait for its writable callback */
	}
	if (used)
		virtio_dev_used(&c->dev, VIRTIO_CONSOLE_TX);
}

/* The chardev has room again (loop thread). */
static void console_writable(void *opaque)
{
	struct virtio_console *c = opaque;
	pthread_mutex_lock(&c->lock);
	console_tx(c);
	pthread_mutex_unlock(&c->lock);
}

/* Input for the guest: as much as its receive buffers hold. */
static size_t console_deliver(struct virtio_console *c, const uint8_t *buf, size_t len)
{
	struct virtqueue *vq = &c->dev.vqs[VIRTIO_CONSOLE_RX];
	size_t taken = 0;
	pthread_mutex_lock(&c->lock);
	while (c->running && taken < len) {
		int ret = virtqueue_pop(vq, c->rx_req);
		if (ret < 0) {
			console_broken(c, VIRTIO_CONSOLE_RX);
			break;
		}
		if (ret == 0) {
			/* Ask for a kick when buffers come, unless some came meanwhile. */
			if (virtqueue_set_notification(vq, true))
				continue;
			break;
		}
		size_t n = virtqueue_req_write(vq, c->rx_req, 0, buf + taken, len - taken);
		virtqueue_push(vq, c->rx_req->head, (uint32_t)n);
		taken += n;
	}
	atomic_fetch_add_explicit(&c->rx_bytes, taken, memory_order_relaxed);
	pthread_mutex_unlock(&c->lock);
	if (taken)
		virtio_dev_used(&c->dev, VIRTIO_CONSOLE_RX);
	return taken;
}

#define CTRL_A 0x01

/* Input from the backend (loop thread); what is not taken stays in the chardev, which
 * reads no more until console_queue_notify resumes. On stdio, as on the serial console,
 * Ctrl-A x quits and Ctrl-A Ctrl-A sends one Ctrl-A (a terminal in raw mode has no other
 * way out). */
static size_t console_receive(void *opaque, const uint8_t *buf, size_t len)
{
	struct virtio_console *c = opaque;
	if (!c->power)
		return console_deliver(c, buf, len);
	/* The guest's bytes with the escapes taken out, delivered in one go (so they share
	 * receive buffers); for each, where it came from and the escape state before it, to
	 * give back exactly what the guest had no room for. */
	uint8_t out[CHARDEV_IN_BUF];
	size_t from[CHARDEV_IN_BUF];
	bool esc_before[CHARDEV_IN_BUF];
	size_t done = 0;
	while (done < len) {
		size_t chunk = len - done < CHARDEV_IN_BUF ? len - done : CHARDEV_IN_BUF;
		const uint8_t *in = buf + done;
		size_t n = 0;
		for (size_t i = 0; i < chunk; i++) {
			uint8_t b = in[i];
			bool was = c->escape;
			if (!c->escape && b == CTRL_A) {
				c->escape = true;
				continue;
			}
			c->escape = false;
			if (was && (b == 'x' || b == 'X')) {
				log_warn("terminated by Ctrl-A x");
				power_request_stop(c->power, STOP_SIGNAL, 0);
				continue;
			}
			if (was && b != CTRL_A) {
				log_warn("Ctrl-A 0x%02x is not a command on hvc0 (Ctrl-A x quits, "
					 "Ctrl-A Ctrl-A sends Ctrl-A); ignored",
					 b);
				continue;
			}
			out[n] = b;
			from[n] = i;
			esc_before[n] = was;
			n++;
		}
		size_t k = n ? console_deliver(c, out, n) : 0;
		if (k < n) {
			c->escape = esc_before[k];
			return done + from[k];
		}
		done += chunk;
	}
	return done;
}

static void console_queue_notify(struct virtio_dev *d, unsigned q)
{
	struct virtio_console *c = to_console(d);
	if (q == VIRTIO_CONSOLE_RX) {
		/* New receive buffers: let the chardev offer what it holds and read again. */
		chardev_input_resume(&c->chr);
		return;
	}
	pthread_mutex_lock(&c->lock);
	console_tx(c);
	pthread_mutex_unlock(&c->lock);
}

static int console_start(struct virtio_dev *d)
{
	struct virtio_console *c = to_console(d);
	pthread_mutex_lock(&c->lock);
	c->running = true;
	c->tx_pending = false;
	pthread_mutex_unlock(&c->lock);
	chardev_input_resume(&c->chr);
	return 0;
}

/* Called with d->lock held; the core resets the queues after. */
static void console_reset(struct virtio_dev *d)
{
	struct virtio_console *c = to_console(d);
	pthread_mutex_lock(&c->lock);
	c->running = false;
	c->tx_pending = false;
	pthread_mutex_unlock(&c->lock);
}

static int console_save(struct virtio_dev *d, struct state_writer *w)
{
	struct virtio_console *c = to_console(d);
	pthread_mutex_lock(&c->lock);
	/* A half-written transmit request is finished on the backend before the snapshot's
	 * queue positions mean anything; it is kept as "pending" with its offset. */
	state_put_u8(w, c->running);
	state_put_u8(w, c->tx_pending);
	state_put_u16(w, c->tx_pending ? c->tx_req->head : 0);
	state_put_u64(w, c->tx_off);
	pthread_mutex_unlock(&c->lock);
	return w->err;
}

static int console_load(struct virtio_dev *d, struct state_reader *r)
{
	struct virtio_console *c = to_console(d);
	uint8_t running = state_get_u8(r);
	uint8_t pending = state_get_u8(r);
	state_get_u16(r);
	uint64_t off = state_get_u64(r);
	if (state_reader_finish(r) < 0 || running > 1 || pending > 1)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	c->running = running;
	/* A request in flight is popped again: its used element was never written. */
	c->tx_pending = false;
	(void)off;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static void console_destroy(struct virtio_dev *d)
{
	struct virtio_console *c = to_console(d);
	if (c->chr_open) {
		chardev_flush(&c->chr, 500);
		chardev_close(&c->chr);
		c->chr_open = false;
	}
	free(c->rx_req);
	free(c->tx_req);
	pthread_mutex_destroy(&c->lock);
}

static unsigned console_stats(struct virtio_dev *d, struct virtio_stat *out, unsigned max)
{
	struct virtio_console *c = to_console(d);
	const struct virtio_stat all[] = {
	    {"tx_bytes", atomic_load_explicit(&c->tx_bytes, memory_order_relaxed)},
	    {"rx_bytes", atomic_load_explicit(&c->rx_bytes, memory_order_relaxed)},
	};
	unsigned n = max < 2 ? max : 2;
	memcpy(out, all, n * sizeof(*out));
	return n;
}

static const struct virtio_dev_ops console_ops = {
    .name = "virtio-console",
    .device_id = VIRTIO_ID_CONSOLE,
    .version = 1,
    .features = console_features,
    .config_read = console_config_read,
    .config_write = console_config_write,
    .start = console_start,
    .queue_notify = console_queue_notify,
    .reset = console_reset,
    .save = console_save,
    .load = console_load,
    .destroy = console_destroy,
    .stats = console_stats,
};

int virtio_console_new(const struct guest_mem *mem, struct event_loop *loop,
		       const struct chardev_cfg *cc, const char *label, int in_fd, int out_fd,
		       struct virtio_console **out, struct errbuf *e)
{
	struct virtio_console *c = calloc(1, sizeof(*c));
	if (!c)
		return errf(e, -ENOMEM, "out of memory");
	c->rx_req = malloc(sizeof(*c->rx_req));
	c->tx_req = malloc(sizeof(*c->tx_req));
	int ret = pthread_mutex_init(&c->lock, NULL);
	if (ret || !c->rx_req || !c->tx_req) {
		free(c->rx_req);
		free(c->tx_req);
		free(c);
		return errf(e, ret ? -ret : -ENOMEM, "out of memory");
	}
	ret = virtio_dev_init(&c->dev, &console_ops, c, mem, 2, VIRTIO_CONSOLE_QUEUE_SIZE,
			      sizeof(struct virtio_console_config));
	if (ret < 0) {
		console_destroy(&c->dev);
		free(c);
		return errf(e, ret, "virtio-console: %s", strerror(-ret));
	}
	ret = cc ? chardev_open(&c->chr, cc, label, e)
		 : chardev_open_fds(&c->chr, in_fd, out_fd, label, e);
	c->chr_open = true; /* closed by destroy even half-open */
	if (ret < 0) {
		virtio_dev_destroy(&c->dev);
		free(c);
		return ret;
	}
	chardev_set_receive(&c->chr, console_receive, c);
	chardev_set_writable(&c->chr, console_writable, c);
	if (loop && (ret = chardev_start(&c->chr, loop, e)) < 0) {
		virtio_dev_destroy(&c->dev);
		free(c);
		return ret;
	}
	*out = c;
	return 0;
}

static int console_create(const struct virtio_create_ctx *ctx, const struct keyed_opts *opts,
			  struct virtio_dev **out, struct errbuf *e)
{
	struct keyed_opts *o = (struct keyed_opts *)opts;
	const char *id = keyed_get(o, "chardev");
	int ret;
	/* QEMU's virtconsole also takes name= (the port's name for MULTIPORT guests). */
	keyed_get(o, "name");
	if ((ret = keyed_check_used(o, "chardev, name", e)) < 0)
		return ret;
	if (!id)
		return errf(e, -EINVAL, "invalid -device '%s': virtconsole needs chardev=ID",
			    opts->spec);
	struct chardev_cfg cc;
	if ((ret = config_chardev_lookup(ctx->cfg, id, &cc, e)) < 0)
		return ret;
	struct virtio_console *c;
	if ((ret = virtio_console_new(ctx->mem, ctx->loop, &cc, id, -1, -1, &c, e)) < 0)
		return ret;
	if (cc.backend == CHARDEV_STDIO)
		c->power = ctx->power;
	*out = &c->dev;
	return 0;
}

const struct virtio_dev_type virtio_console_type = {
    .name = "virtio-console",
    .create = console_create,
};
