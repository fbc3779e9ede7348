#include "virtio/mmio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "util/log.h"

#define VIRTIO_MMIO_MAGIC 0x74726976u /* "virt" */

static const unsigned virtio_mmio_gsis[VIRTIO_MMIO_MAX_DEVICES] = {
    5, 6, 7, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
};

unsigned virtio_mmio_gsi(unsigned n)
{
	return n < VIRTIO_MMIO_MAX_DEVICES ? virtio_mmio_gsis[n] : 0;
}

int virtio_mmio_cmdline(char *buf, size_t size, uint64_t base, unsigned gsi)
{
	return snprintf(buf, size, "virtio_mmio.device=4K@0x%llx:%u", (unsigned long long)base,
			gsi);
}

/* InterruptStatus |= bits and the line up; under irq_lock so that an acknowledgement
 * racing with a new interrupt never leaves the line down with a bit set. */
static void virtio_mmio_interrupt(struct virtio_mmio *m, uint32_t bits)
{
	pthread_mutex_lock(&m->irq_lock);
	m->interrupt_status |= bits;
	if (!atomic_load(&m->irq.level))
		irq_raise(&m->irq);
	pthread_mutex_unlock(&m->irq_lock);
}

static void virtio_mmio_ack(struct virtio_mmio *m, uint32_t bits)
{
	pthread_mutex_lock(&m->irq_lock);
	m->interrupt_status &= ~bits;
	if (!m->interrupt_status && atomic_load(&m->irq.level))
		irq_lower(&m->irq);
	pthread_mutex_unlock(&m->irq_lock);
}

static void virtio_mmio_notify_queue(void *transport, unsigned q)
{
	virtio_mmio_interrupt(transport, VIRTIO_MMIO_INT_VRING);
}

static void virtio_mmio_notify_config(void *transport)
{
	virtio_mmio_interrupt(transport, VIRTIO_MMIO_INT_CONFIG);
}

static const struct virtio_transport_ops virtio_mmio_transport_ops = {
    .notify_queue = virtio_mmio_notify_queue,
    .notify_config = virtio_mmio_notify_config,
};

/* The register file's own state back to power-on; m->lock held. The device's reset is
 * the caller's. */
static void virtio_mmio_reset_regs(struct virtio_mmio *m)
{
	m->device_features_sel = 0;
	m->driver_features_sel = 0;
	m->queue_sel = 0;
	m->driver_features = 0;
	for (unsigned i = 0; i < m->dev->nqueues; i++)
		m->queues[i] = (struct virtio_mmio_queue){0};
	virtio_mmio_ack(m, ~0u);
}

void virtio_mmio_reset(struct virtio_mmio *m)
{
	pthread_mutex_lock(&m->lock);
	virtio_dev_reset(m->dev);
	virtio_mmio_reset_regs(m);
	pthread_mutex_unlock(&m->lock);
}

static struct virtqueue *selected_vq(struct virtio_mmio *m)
{
	return m->queue_sel < m->dev->nqueues ? &m->dev->vqs[m->queue_sel] : NULL;
}

/* QueueReady = 1: the staged size and addresses go to the virtqueue, which checks them. A
 * driver that gave a bad size or rings outside RAM gets a device that needs a reset. */
static void virtio_mmio_queue_ready(struct virtio_mmio *m, uint32_t ready)
{
	struct virtio_dev *d = m->dev;
	struct virtqueue *vq = selected_vq(m);
	if (!vq)
		return;
	pthread_mutex_lock(&d->lock);
	if (!ready) {
		/* The driver takes a queue down only around a reset; the queue keeps its
		 * position so a ready again continues (the spec leaves it undefined). */
		vq->enabled = false;
	} else if (!vq->enabled) {
		const struct virtio_mmio_queue *q = &m->queues[m->queue_sel];
		struct errbuf e = {{0}};
		int ret = virtqueue_set_size(vq, q->num);
		if (ret < 0) {
			errf(&e, ret, "queue %u: size %u is not a power of two up to %u",
			     m->queue_sel, q->num, vq->max_size);
		} else {
			virtqueue_set_addrs(vq, q->desc, q->driver, q->device);
			ret = virtqueue_enable(vq, &e);
		}
		pthread_mutex_unlock(&d->lock);
		if (ret < 0)
			virtio_dev_needs_reset(d, e.msg);
		return;
	}
	pthread_mutex_unlock(&d->lock);
}

static uint32_t virtio_mmio_read_reg(struct virtio_mmio *m, uint32_t off)
{
	struct virtio_dev *d = m->dev;
	struct virtqueue *vq = selected_vq(m);
	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION:
		return 2;
	case VIRTIO_MMIO_DEVICE_ID:
		return d->ops->device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return VIRTIO_MMIO_KVMINI_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		if (m->device_features_sel > 1)
			return 0;
		return (uint32_t)(virtio_dev_offered_features(d) >> (32 * m->device_features_sel));
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		return m->device_features_sel;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		return m->driver_features_sel;
	case VIRTIO_MMIO_QUEUE_SEL:
		return m->queue_sel;
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		/* 0 says the queue does not exist. */
		return vq ? vq->max_size : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		return vq && vq->enabled;
	case VIRTIO_MMIO_INTERRUPT_STATUS: {
		pthread_mutex_lock(&m->irq_lock);
		uint32_t v = m->interrupt_status;
		pthread_mutex_unlock(&m->irq_lock);
		return v;
	}
	case VIRTIO_MMIO_STATUS:
		return atomic_load(&d->status);
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
		return ~0u; /* no shared memory regions */
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return atomic_load(&d->config_generation);
	default:
		/* Write-only registers and holes read as 0. */
		return 0;
	}
}

/* A queue register that may be written only while the queue is not ready. */
static struct virtio_mmio_queue *writable_queue(struct virtio_mmio *m)
{
	struct virtqueue *vq = selected_vq(m);
	if (!vq || vq->enabled)
		return NULL;
	return &m->queues[m->queue_sel];
}

static void set_low(uint64_t *v, uint32_t lo)
{
	*v = (*v & ~0xffffffffull) | lo;
}

static void set_high(uint64_t *v, uint32_t hi)
{
	*v = (*v & 0xffffffffull) | ((uint64_t)hi << 32);
}

/* An ignored access: counted, the first one logged as a warning (a guest that keeps doing
 * it must not flood the log), the others at debug level. */
static void virtio_mmio_bad(struct virtio_mmio *m, const char *why, uint64_t offset, uint32_t len,
			    bool is_write)
{
	atomic_fetch_add(&m->bad_accesses, 1);
	bool first = !atomic_exchange(&m->bad_logged, true);
	log_msg(first ? LOG_WARN : LOG_DEBUG,
		"%s on virtio-mmio@0x%llx: %u-byte %s at 0x%llx ignored (%s)%s", m->dev->ops->name,
		(unsigned long long)m->base, len, is_write ? "write" : "read",
		(unsigned long long)offset, why,
		first ? "; further ignored accesses are only counted" : "");
}

static void virtio_mmio_write_reg(struct virtio_mmio *m, uint32_t off, uint32_t v)
{
	struct virtio_dev *d = m->dev;
	struct virtio_mmio_queue *q;
	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		m->device_features_sel = v;
		return;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (m->driver_features_sel > 1 ||
		    (atomic_load(&d->status) & VIRTIO_CONFIG_S_FEATURES_OK))
			break;
		if (m->driver_features_sel == 0)
			set_low(&m->driver_features, v);
		else
			set_high(&m->driver_features, v);
		virtio_dev_set_driver_features(d, m->driver_features);
		return;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		m->driver_features_sel = v;
		return;
	case VIRTIO_MMIO_QUEUE_SEL:
		/* Kept as written: a selector past the last queue reads QueueNumMax 0. */
		m->queue_sel = v;
		return;
	case VIRTIO_MMIO_QUEUE_NUM:
		if (!(q = writable_queue(m)))
			break;
		q->num = v;
		return;
	case VIRTIO_MMIO_QUEUE_READY:
		if (!selected_vq(m))
			break;
		virtio_mmio_queue_ready(m, v & 1);
		return;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		/* Without VIRTIO_F_NOTIFICATION_DATA the value is the queue index. */
		virtio_dev_queue_notify(d, v);
		return;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		virtio_mmio_ack(m, v);
		return;
	case VIRTIO_MMIO_STATUS:
		if (virtio_dev_set_status(d, (uint8_t)v) == 0)
			virtio_mmio_reset_regs(m);
		return;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
	case VIRTIO_MMIO_QUEUE_USED_LOW:
	case VIRTIO_MMIO_QUEUE_USED_HIGH: {
		if (!(q = writable_queue(m)))
			break;
		uint64_t *addr = off < VIRTIO_MMIO_QUEUE_AVAIL_LOW  ? &q->desc
				 : off < VIRTIO_MMIO_QUEUE_USED_LOW ? &q->driver
								    : &q->device;
		if (off & 4)
			set_high(addr, v);
		else
			set_low(addr, v);
		return;
	}
	case VIRTIO_MMIO_SHM_SEL:
		return; /* no regions: every selector reads length ~0 */
	default:
		break;
	}
	virtio_mmio_bad(m, "read-only register, or not writable now", off, 4, true);
}

void virtio_mmio_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct virtio_mmio *m = opaque;
	if (offset >= VIRTIO_MMIO_CONFIG) {
		uint64_t coff = offset - VIRTIO_MMIO_CONFIG;
		/* Fields are 8, 16, 32 or 64 bits, accessed at their width (4.2.2.2). */
		bool width_ok = len == 1 || len == 2 || len == 4 || len == 8;
		if (!width_ok || (coff & (len - 1)) ||
		    coff + len > VIRTIO_MMIO_WINDOW - VIRTIO_MMIO_CONFIG) {
			if (!is_write)
				memset(data, 0, len);
			virtio_mmio_bad(m,
					width_ok ? "configuration access not naturally aligned"
						 : "configuration access of an odd width",
					offset, len, is_write);
			return;
		}
		/* The core bounds the access by the device's configuration size. */
		if (is_write)
			virtio_dev_config_write(m->dev, (uint32_t)coff, data, len);
		else
			virtio_dev_config_read(m->dev, (uint32_t)coff, data, len);
		return;
	}
	/* Registers: naturally aligned 32-bit accesses only (virtio 1.2, 4.2.2.2). */
	if (len != 4 || (offset & 3)) {
		if (!is_write)
			memset(data, 0, len);
		virtio_mmio_bad(
		    m, len != 4 ? "registers are 32 bits wide" : "register access not aligned",
		    offset, len, is_write);
		return;
	}
	uint32_t off = (uint32_t)offset;
	pthread_mutex_lock(&m->lock);
	if (is_write) {
		uint32_t v = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
			     (uint32_t)data[3] << 24;
		virtio_mmio_write_reg(m, off, v);
	} else {
		uint32_t v = virtio_mmio_read_reg(m, off);
		for (unsigned i = 0; i < 4; i++)
			data[i] = (uint8_t)(v >> (8 * i));
	}
	pthread_mutex_unlock(&m->lock);
}

static void virtio_mmio_kick(void *opaque, unsigned q)
{
	struct virtio_mmio *m = opaque;
	virtio_dev_queue_notify(m->dev, q);
}

int virtio_mmio_init(struct virtio_mmio *m, struct virtio_dev *d, struct bus *bus, uint64_t base,
		     unsigned gsi, int vm_fd, struct event_loop *loop, struct errbuf *e)
{
	int ret;
	memset(m, 0, sizeof(*m));
	m->dev = d;
	m->base = base;
	m->bus = bus;
	m->queues = calloc(d->nqueues, sizeof(*m->queues));
	m->kicks = calloc(d->nqueues, sizeof(*m->kicks));
	if (!m->queues || !m->kicks) {
		ret = errf(e, -ENOMEM, "out of memory");
		goto fail_alloc;
	}
	for (unsigned i = 0; i < d->nqueues; i++)
		m->kicks[i].fd = -1;
	if ((ret = -pthread_mutex_init(&m->lock, NULL)) < 0) {
		errf(e, ret, "pthread_mutex_init: %s", strerror(-ret));
		goto fail_alloc;
	}
	if ((ret = -pthread_mutex_init(&m->irq_lock, NULL)) < 0) {
		errf(e, ret, "pthread_mutex_init: %s", strerror(-ret));
		goto fail_lock;
	}
	irq_init_line(&m->irq, vm_fd, gsi);
	virtio_dev_attach(d, &virtio_mmio_transport_ops, m);
	if (vm_fd >= 0 && loop) {
		for (unsigned i = 0; i < d->nqueues; i++) {
			struct errbuf ie = {{0}};
			int r = virtio_dev_ioeventfd_init(d, i, &m->kicks[i], vm_fd, loop,
							  virtio_mmio_kick, m, &ie);
			if (r == 0 &&
			    (r = ioeventfd_assign_datamatch(
				 &m->kicks[i], base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, i)) < 0)
				errf(&ie, r, "KVM_IOEVENTFD: %s", strerror(-r));
			if (r < 0) {
				/* The write path in virtio_mmio_access serves instead. */
				log_warn("%s on virtio-mmio@0x%llx: %s; notifications take the "
					 "slow path",
					 d->ops->name, (unsigned long long)base, ie.msg);
				break;
			}
		}
	}
	if ((ret = bus_register(bus, base, VIRTIO_MMIO_WINDOW, virtio_mmio_access, m,
				d->ops->name)) < 0) {
		errf(e, ret, "%s: cannot place virtio-mmio registers at 0x%llx: %s", d->ops->name,
		     (unsigned long long)base, strerror(-ret));
		goto fail_bus;
	}
	snprintf(d->transport_name, sizeof(d->transport_name), "mmio");
	snprintf(d->address, sizeof(d->address), "0x%llx", (unsigned long long)base);
	return 0;

fail_bus:
	for (unsigned i = 0; i < d->nqueues; i++)
		ioeventfd_destroy(&m->kicks[i]);
	virtio_dev_attach(d, NULL, NULL);
	pthread_mutex_destroy(&m->irq_lock);
fail_lock:
	pthread_mutex_destroy(&m->lock);
fail_alloc:
	free(m->queues);
	free(m->kicks);
	m->queues = NULL;
	m->kicks = NULL;
	return ret;
}

void virtio_mmio_destroy(struct virtio_mmio *m)
{
	if (!m->queues)
		return;
	bus_unregister(m->bus, m->base);
	bus_synchronize(m->bus);
	for (unsigned i = 0; i < m->dev->nqueues; i++)
		ioeventfd_destroy(&m->kicks[i]);
	irq_lower(&m->irq);
	pthread_mutex_destroy(&m->irq_lock);
	pthread_mutex_destroy(&m->lock);
	free(m->queues);
	free(m->kicks);
	m->queues = NULL;
	m->kicks = NULL;
}

int virtio_mmio_create(struct virtio_mmio_layout *layout, struct virtio_dev *d, struct bus *bus,
		       int vm_fd, struct event_loop *loop, struct virtio_mmio **out,
		       struct errbuf *e)
{
	if (layout->n >= VIRTIO_MMIO_MAX_DEVICES)
		return errf(e, -ENOSPC, "%s: kvmini has room for %u virtio-mmio devices",
			    d->ops->name, VIRTIO_MMIO_MAX_DEVICES);
	struct virtio_mmio *m = calloc(1, sizeof(*m));
	if (!m)
		return errf(e, -ENOMEM, "out of memory");
	unsigned n = layout->n;
	uint64_t base = X86_VIRTIO_MMIO_BASE + X86_VIRTIO_MMIO_STRIDE * n;
	int ret = virtio_mmio_init(m, d, bus, base, virtio_mmio_gsi(n), vm_fd, loop, e);
	if (ret < 0) {
		free(m);
		return ret;
	}
	layout->base[n] = base;
	layout->gsi[n] = virtio_mmio_gsi(n);
	layout->n = n + 1;
	*out = m;
	return 0;
}

char *virtio_mmio_cmdline_extend(const char *user, const struct virtio_mmio_layout *layout)
{
	size_t cap = strlen(user) + 1 + (size_t)layout->n * 48;
	char *s = malloc(cap);
	if (!s)
		return NULL;
	size_t len = (size_t)snprintf(s, cap, "%s", user);
	for (unsigned i = 0; i < layout->n; i++) {
		char addr[32];
		snprintf(addr, sizeof(addr), "@0x%llx:", (unsigned long long)layout->base[i]);
		if (strstr(user, addr))
			continue; /* the user announced this one themselves */
		if (len)
			s[len++] = ' ';
		len += (size_t)virtio_mmio_cmdline(s + len, cap - len, layout->base[i],
						   layout->gsi[i]);
	}
	s[len] = 0;
	return s;
}

/* The device list's view of the register file (the device has its own entry). */
static void virtio_mmio_list_reset(void *opaque)
{
	virtio_mmio_reset(opaque);
}

static int virtio_mmio_list_save(void *opaque, struct state_writer *w)
{
	struct virtio_mmio *m = opaque;
	pthread_mutex_lock(&m->lock);
	state_put_u32(w, m->device_features_sel);
	state_put_u32(w, m->driver_features_sel);
	state_put_u32(w, m->queue_sel);
	state_put_u64(w, m->driver_features);
	state_put_u32(w, m->dev->nqueues);
	for (unsigned i = 0; i < m->dev->nqueues; i++) {
		state_put_u32(w, m->queues[i].num);
		state_put_u64(w, m->queues[i].desc);
		state_put_u64(w, m->queues[i].driver);
		state_put_u64(w, m->queues[i].device);
	}
	pthread_mutex_lock(&m->irq_lock);
	state_put_u32(w, m->interrupt_status);
	pthread_mutex_unlock(&m->irq_lock);
	pthread_mutex_unlock(&m->lock);
	return w->err;
}

static int virtio_mmio_list_load(void *opaque, struct state_reader *r)
{
	struct virtio_mmio *m = opaque;
	uint32_t dsel = state_get_u32(r), fsel = state_get_u32(r), qsel = state_get_u32(r);
	uint64_t features = state_get_u64(r);
	uint32_t nq = state_get_u32(r);
	if (r->err || nq != m->dev->nqueues)
		return -EINVAL;
	struct virtio_mmio_queue *q = calloc(nq, sizeof(*q));
	if (!q)
		return -ENOMEM;
	for (unsigned i = 0; i < nq; i++) {
		q[i].num = state_get_u32(r);
		q[i].desc = state_get_u64(r);
		q[i].driver = state_get_u64(r);
		q[i].device = state_get_u64(r);
	}
	uint32_t isr = state_get_u32(r);
	if (state_reader_finish(r) < 0 ||
	    (isr & ~(VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG))) {
		free(q);
		return -EINVAL;
	}
	pthread_mutex_lock(&m->lock);
	m->device_features_sel = dsel;
	m->driver_features_sel = fsel;
	m->queue_sel = qsel;
	m->driver_features = features;
	memcpy(m->queues, q, nq * sizeof(*q));
	pthread_mutex_unlock(&m->lock);
	free(q);
	virtio_mmio_ack(m, ~0u);
	if (isr)
		virtio_mmio_interrupt(m, isr);
	return 0;
}

static void virtio_mmio_list_destroy(void *opaque)
{
	virtio_mmio_destroy(opaque);
	free(opaque);
}

/* The line is up while InterruptStatus has a bit. */
static void virtio_mmio_list_sync_irq(void *opaque)
{
	struct virtio_mmio *m = opaque;
	pthread_mutex_lock(&m->irq_lock);
	irq_resync(&m->irq);
	pthread_mutex_unlock(&m->irq_lock);
}

const struct device_ops virtio_mmio_device_ops = {
    .name = "virtio-mmio",
    .version = 1,
    .reset = virtio_mmio_list_reset,
    .save = virtio_mmio_list_save,
    .load = virtio_mmio_list_load,
    .sync_irq = virtio_mmio_list_sync_irq,
    .destroy = virtio_mmio_list_destroy,
};
