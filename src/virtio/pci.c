#include "virtio/pci.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include <linux/virtio_pci.h>

#include "util/log.h"

#define MSIX_CTRL_ENABLE  0x8000u
#define MSIX_CTRL_MASKALL 0x4000u
#define MSIX_ENTRY_MASKED 0x1u
#define COMMON_CFG_LEN	  0x40u /* struct virtio_pci_modern_common_cfg, rounded up */
#define ISR_QUEUE	  0x1u	/* the ISR bits (4.1.4.5); uapi names only the config one */

static uint64_t le_get(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void le_put(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static struct virtio_pci *fn_to_vp(struct pci_function *f)
{
	return f->opaque;
}

/* --- interrupts ---------------------------------------------------------------------- */

/* With t->irq_lock held. */
static void vp_fire_vector(struct virtio_pci *t, unsigned v)
{
	struct virtio_pci_vector *x = &t->vec[v];
	if (t->msix_masked || (x->ctrl & MSIX_ENTRY_MASKED)) {
		x->pending = true;
		return;
	}
	x->pending = false;
	if (x->have_irq)
		irq_trigger(&x->irq);
}

/* A vector was unmasked (or the function mask cleared): deliver what is pending. */
static void vp_deliver_pending(struct virtio_pci *t)
{
	if (!t->msix_enabled || t->msix_masked)
		return;
	for (unsigned v = 0; v < t->nvectors; v++)
		if (t->vec[v].pending && !(t->vec[v].ctrl & MSIX_ENTRY_MASKED))
			vp_fire_vector(t, v);
}

static void vp_signal(struct virtio_pci *t, uint16_t vector, uint8_t isr_bit)
{
	pthread_mutex_lock(&t->irq_lock);
	if (t->msix_enabled) {
		if (vector < t->nvectors)
			vp_fire_vector(t, vector);
	} else {
		atomic_fetch_or(&t->isr, isr_bit);
		if (!(pci_cfg_get16(&t->fn, PCI_REG_COMMAND) & PCI_CMD_INTX_DISABLE))
			irq_raise(&t->intx);
	}
	pthread_mutex_unlock(&t->irq_lock);
}

static void vp_notify_queue(void *transport, unsigned q)
{
	struct virtio_pci *t = transport;
	uint16_t v = q < VIRTIO_MAX_QUEUES ? t->queue_vector[q] : VIRTIO_MSI_NO_VECTOR;
	vp_signal(t, v, ISR_QUEUE);
}

static void vp_notify_config(void *transport)
{
	struct virtio_pci *t = transport;
	vp_signal(t, t->msix_config, VIRTIO_PCI_ISR_CONFIG);
}

static const struct virtio_transport_ops vp_transport_ops = {
    .notify_queue = vp_notify_queue,
    .notify_config = vp_notify_config,
};

/* The guest changed table entry v: the route follows it. With t->irq_lock held. */
static void vp_update_route(struct virtio_pci *t, unsigned v)
{
	struct virtio_pci_vector *x = &t->vec[v];
	if (!x->have_irq)
		return;
	uint64_t addr = (uint64_t)x->addr_hi << 32 | x->addr_lo;
	if (x->irq.msi_addr == addr && x->irq.msi_data == x->data)
		return;
	irq_set_msi(&x->irq, addr, x->data);
	struct errbuf e;
	if (irq_router_commit(t->env.router, &e) < 0)
		log_warn("virtio-pci %02x.0: MSI-X vector %u: %s", t->fn.devfn >> 3, v, e.msg);
}

/* --- the common configuration -------------------------------------------------------- */

static struct virtqueue *vp_selected_queue(struct virtio_pci *t)
{
	return t->queue_select < t->dev->nqueues ? &t->dev->vqs[t->queue_select] : NULL;
}

/* The structure as the driver reads it now. With t->lock held. */
static void vp_common_image(struct virtio_pci *t, uint8_t img[COMMON_CFG_LEN])
{
	struct virtio_dev *d = t->dev;
	memset(img, 0, COMMON_CFG_LEN);
	uint64_t offered = virtio_dev_offered_features(d);
	le_put(img + VIRTIO_PCI_COMMON_DFSELECT, t->device_feature_select, 4);
	if (t->device_feature_select < 2)
		le_put(img + VIRTIO_PCI_COMMON_DF, offered >> (32 * t->device_feature_select), 4);
	le_put(img + VIRTIO_PCI_COMMON_GFSELECT, t->driver_feature_select, 4);
	if (t->driver_feature_select < 2)
		le_put(img + VIRTIO_PCI_COMMON_GF,
		       t->driver_features >> (32 * t->driver_feature_select), 4);
	le_put(img + VIRTIO_PCI_COMMON_MSIX, t->msix_config, 2);
	le_put(img + VIRTIO_PCI_COMMON_NUMQ, d->nqueues, 2);
	img[VIRTIO_PCI_COMMON_STATUS] = atomic_load(&d->status);
	img[VIRTIO_PCI_COMMON_CFGGENERATION] = (uint8_t)atomic_load(&d->config_generation);
	le_put(img + VIRTIO_PCI_COMMON_Q_SELECT, t->queue_select, 2);
	struct virtqueue *vq = vp_selected_queue(t);
	if (!vq) {
		le_put(img + VIRTIO_PCI_COMMON_Q_MSIX, VIRTIO_MSI_NO_VECTOR, 2);
		return; /* queue_size 0: no such queue */
	}
	pthread_mutex_lock(&d->lock);
	le_put(img + VIRTIO_PCI_COMMON_Q_SIZE, vq->size, 2);
	le_put(img + VIRTIO_PCI_COMMON_Q_MSIX, t->queue_vector[t->queue_select], 2);
	le_put(img + VIRTIO_PCI_COMMON_Q_ENABLE, vq->enabled, 2);
	le_put(img + VIRTIO_PCI_COMMON_Q_NOFF, t->queue_select, 2);
	le_put(img + VIRTIO_PCI_COMMON_Q_DESCLO, vq->desc_gpa, 8);
	le_put(img + VIRTIO_PCI_COMMON_Q_AVAILLO, vq->avail_gpa, 8);
	le_put(img + VIRTIO_PCI_COMMON_Q_USEDLO, vq->used_gpa, 8);
	pthread_mutex_unlock(&d->lock);
}

/* Transport state back to power-on (device reset or VM reset). With t->lock held. */
static void vp_reset_locked(struct virtio_pci *t)
{
	t->device_feature_select = t->driver_feature_select = 0;
	t->driver_features = 0;
	t->queue_select = 0;
	t->msix_config = VIRTIO_MSI_NO_VECTOR;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		t->queue_vector[q] = VIRTIO_MSI_NO_VECTOR;
	pthread_mutex_lock(&t->irq_lock);
	atomic_store(&t->isr, 0);
	irq_lower(&t->intx);
	pthread_mutex_unlock(&t->irq_lock);
}

static uint16_t vp_checked_vector(struct virtio_pci *t, uint64_t v)
{
	/* A vector the function does not have reads back as NO_VECTOR (4.1.4.3). */
	return v < t->nvectors ? (uint16_t)v : VIRTIO_MSI_NO_VECTOR;
}

/* One field written with its new value. With t->lock held. */
static void vp_common_write_field(struct virtio_pci *t, unsigned off, uint64_t v)
{
	struct virtio_dev *d = t->dev;
	struct virtqueue *vq = vp_selected_queue(t);
	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
		t->device_feature_select = (uint32_t)v;
		return;
	case VIRTIO_PCI_COMMON_GFSELECT:
		t->driver_feature_select = (uint32_t)v;
		return;
	case VIRTIO_PCI_COMMON_GF:
		if (t->driver_feature_select >= 2 ||
		    (atomic_load(&d->status) & VIRTIO_CONFIG_S_FEATURES_OK))
			return;
		unsigned sh = 32 * t->driver_feature_select;
		t->driver_features = (t->driver_features & ~(0xffffffffull << sh)) | (v << sh);
		virtio_dev_set_driver_features(d, t->driver_features);
		return;
	case VIRTIO_PCI_COMMON_MSIX:
		t->msix_config = vp_checked_vector(t, v);
		return;
	case VIRTIO_PCI_COMMON_STATUS: {
		/* Not under t->lock: a reset waits for the device's workers, which may be
		 * sending an interrupt (vp_signal, under t->irq_lock) or reading a queue
		 * register from another vCPU (under t->lock). d->lock orders status changes. */
		pthread_mutex_unlock(&t->lock);
		uint8_t st = virtio_dev_set_status(d, (uint8_t)v);
		pthread_mutex_lock(&t->lock);
		if (st == 0)
			vp_reset_locked(t);
		return;
	}
	case VIRTIO_PCI_COMMON_Q_SELECT:
		t->queue_select = (uint16_t)v;
		return;
	}
	if (!vq)
		return;
	if (off == VIRTIO_PCI_COMMON_Q_MSIX) {
		t->queue_vector[t->queue_select] = vp_checked_vector(t, v);
		return;
	}
	pthread_mutex_lock(&d->lock);
	/* Queue set-up only while the queue is off and the driver has not finished
	 * (4.1.4.3.2: the driver must not change an enabled queue). */
	if (vq->enabled || (atomic_load(&d->status) & VIRTIO_CONFIG_S_DRIVER_OK)) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	switch (off) {
	case VIRTIO_PCI_COMMON_Q_SIZE:
		virtqueue_set_size(vq, (unsigned)v); /* a bad size is refused, the old kept */
		break;
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		if (v == 1) {
			struct errbuf e;
			if (virtqueue_enable(vq, &e) < 0)
				log_debug("%s: queue %u not enabled: %s", d->ops->name,
					  t->queue_select, e.msg);
		}
		break;
	case VIRTIO_PCI_COMMON_Q_DESCLO:
		virtqueue_set_addrs(vq, v, vq->avail_gpa, vq->used_gpa);
		break;
	case VIRTIO_PCI_COMMON_Q_AVAILLO:
		virtqueue_set_addrs(vq, vq->desc_gpa, v, vq->used_gpa);
		break;
	case VIRTIO_PCI_COMMON_Q_USEDLO:
		virtqueue_set_addrs(vq, vq->desc_gpa, vq->avail_gpa, v);
		break;
	}
	pthread_mutex_unlock(&d->lock);
}

/* The fields of the common configuration, as (offset, width); the 64-bit addresses are
 * one field written in halves. */
static const struct {
	uint8_t off, len;
	bool writable;
} vp_common_fields[] = {
    {VIRTIO_PCI_COMMON_DFSELECT, 4, true},  {VIRTIO_PCI_COMMON_DF, 4, false},
    {VIRTIO_PCI_COMMON_GFSELECT, 4, true},  {VIRTIO_PCI_COMMON_GF, 4, true},
    {VIRTIO_PCI_COMMON_MSIX, 2, true},	    {VIRTIO_PCI_COMMON_NUMQ, 2, false},
    {VIRTIO_PCI_COMMON_STATUS, 1, true},    {VIRTIO_PCI_COMMON_CFGGENERATION, 1, false},
    {VIRTIO_PCI_COMMON_Q_SELECT, 2, true},  {VIRTIO_PCI_COMMON_Q_SIZE, 2, true},
    {VIRTIO_PCI_COMMON_Q_MSIX, 2, true},    {VIRTIO_PCI_COMMON_Q_ENABLE, 2, true},
    {VIRTIO_PCI_COMMON_Q_NOFF, 2, false},   {VIRTIO_PCI_COMMON_Q_DESCLO, 8, true},
    {VIRTIO_PCI_COMMON_Q_AVAILLO, 8, true}, {VIRTIO_PCI_COMMON_Q_USEDLO, 8, true},
};

static void vp_common_io(struct virtio_pci *t, uint32_t off, uint8_t *data, uint32_t len,
			 bool is_write)
{
	uint8_t img[COMMON_CFG_LEN];
	pthread_mutex_lock(&t->lock);
	vp_common_image(t, img);
	if (!is_write) {
		for (uint32_t i = 0; i < len; i++)
			data[i] = off + i < COMMON_CFG_LEN ? img[off + i] : 0;
		pthread_mutex_unlock(&t->lock);
		return;
	}
	/* Any width at any offset: every field the write touches takes the written bytes
	 * over its current value, in field order. */
	for (size_t k = 0; k < sizeof(vp_common_fields) / sizeof(vp_common_fields[0]); k++) {
		unsigned fo = vp_common_fields[k].off, fl = vp_common_fields[k].len;
		if (!vp_common_fields[k].writable || off >= fo + fl || off + len <= fo)
			continue;
		/* Fields before this one may have changed what it reads (queue_select). */
		vp_common_image(t, img);
		uint8_t v[8];
		memcpy(v, img + fo, fl);
		for (unsigned i = 0; i < fl; i++)
			if (fo + i >= off && fo + i < off + len)
				v[i] = data[fo + i - off];
		vp_common_write_field(t, fo, le_get(v, fl));
	}
	pthread_mutex_unlock(&t->lock);
}

/* --- MSI-X table and PBA --------------------------------------------------------------- */

static void vp_msix_table_io(struct virtio_pci *t, uint32_t off, uint8_t *data, uint32_t len,
			     bool is_write)
{
	pthread_mutex_lock(&t->irq_lock);
	for (uint32_t i = 0; i < len; i++) {
		uint32_t o = off + i, v = o / 16, w = (o % 16) / 4, b = o % 4;
		if (v >= t->nvectors) {
			if (!is_write)
				data[i] = 0;
			continue;
		}
		struct virtio_pci_vector *x = &t->vec[v];
		uint32_t *word[4] = {&x->addr_lo, &x->addr_hi, &x->data, &x->ctrl};
		if (!is_write) {
			data[i] = (uint8_t)(*word[w] >> (8 * b));
			continue;
		}
		uint32_t nv = (*word[w] & ~(0xffu << (8 * b))) | (uint32_t)data[i] << (8 * b);
		if (w == 3)
			nv &= MSIX_ENTRY_MASKED; /* the other control bits are reserved */
		*word[w] = nv;
	}
	if (is_write) {
		for (uint32_t v = off / 16; v <= (off + len - 1) / 16 && v < t->nvectors; v++)
			vp_update_route(t, v);
		vp_deliver_pending(t);
	}
	pthread_mutex_unlock(&t->irq_lock);
}

static void vp_msix_pba_io(struct virtio_pci *t, uint32_t off, uint8_t *data, uint32_t len,
			   bool is_write)
{
	if (is_write) /* read-only */
		return;
	pthread_mutex_lock(&t->irq_lock);
	for (uint32_t i = 0; i < len; i++) {
		uint8_t byte = 0;
		for (unsigned bit = 0; bit < 8; bit++) {
			uint32_t v = (off + i) * 8 + bit;
			if (v < t->nvectors && t->vec[v].pending)
				byte |= (uint8_t)(1u << bit);
		}
		data[i] = byte;
	}
	pthread_mutex_unlock(&t->irq_lock);
}

/* --- BAR 0 ----------------------------------------------------------------------------- */

void virtio_pci_bar_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct virtio_pci *t = opaque;
	uint32_t region = (uint32_t)offset & ~(VIRTIO_PCI_REGION_SIZE - 1);
	uint32_t off = (uint32_t)offset & (VIRTIO_PCI_REGION_SIZE - 1);
	if (offset >= VIRTIO_PCI_BAR_SIZE || len == 0 || len > 8 ||
	    off + len > VIRTIO_PCI_REGION_SIZE) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	switch (region) {
	case VIRTIO_PCI_COMMON_OFFSET:
		vp_common_io(t, off, data, len, is_write);
		return;
	case VIRTIO_PCI_ISR_OFFSET:
		if (is_write)
			return;
		memset(data, 0, len);
		if (off == 0) {
			/* Reading the ISR clears it and deasserts INTx (4.1.4.5). */
			pthread_mutex_lock(&t->irq_lock);
			data[0] = atomic_exchange(&t->isr, 0);
			irq_lower(&t->intx);
			pthread_mutex_unlock(&t->irq_lock);
		}
		return;
	case VIRTIO_PCI_DEVICE_OFFSET:
		if (is_write)
			virtio_dev_config_write(t->dev, off, data, len);
		else
			virtio_dev_config_read(t->dev, off, data, len);
		return;
	case VIRTIO_PCI_NOTIFY_OFFSET:
		if (!is_write) {
			memset(data, 0, len);
			return;
		}
		/* Here only when KVM did not take the write (no ioeventfd, or another width). */
		if (off % VIRTIO_PCI_NOTIFY_MULT == 0)
			virtio_dev_queue_notify(t->dev, off / VIRTIO_PCI_NOTIFY_MULT);
		return;
	case VIRTIO_PCI_MSIX_TABLE:
		vp_msix_table_io(t, off, data, len, is_write);
		return;
	case VIRTIO_PCI_MSIX_PBA:
		vp_msix_pba_io(t, off, data, len, is_write);
		return;
	}
	if (!is_write)
		memset(data, 0, len);
}

/* --- config space ---------------------------------------------------------------------- */

/* The VIRTIO_PCI_CAP_PCI_CFG window: pci_cfg_data reaches BAR cap.bar at cap.offset with
 * cap.length bytes (1, 2 or 4, naturally aligned); anything else reads 0 / is dropped. */
static bool vp_cfg_window(struct virtio_pci *t, uint32_t *bar_off, uint32_t *len)
{
	const uint8_t *c = t->fn.cfg + t->cfg_cap;
	uint32_t o = (uint32_t)le_get(c + VIRTIO_PCI_CAP_OFFSET, 4);
	uint32_t l = (uint32_t)le_get(c + VIRTIO_PCI_CAP_LENGTH, 4);
	if (c[VIRTIO_PCI_CAP_BAR] != 0 || (l != 1 && l != 2 && l != 4) || (o & (l - 1)) ||
	    o >= VIRTIO_PCI_BAR_SIZE)
		return false;
	*bar_off = o;
	*len = l;
	return true;
}

static void vp_cfg_read(struct pci_function *f, uint32_t off, uint8_t *data, uint32_t len)
{
	struct virtio_pci *t = fn_to_vp(f);
	uint32_t win = t->cfg_cap + offsetof(struct virtio_pci_cfg_cap, pci_cfg_data);
	if (off != win)
		return;
	uint32_t bo, bl;
	uint8_t buf[4] = {0};
	if (vp_cfg_window(t, &bo, &bl))
		virtio_pci_bar_io(t, bo, buf, bl, false);
	memcpy(data, buf, len);
}

static void vp_msix_control_changed(struct virtio_pci *t)
{
	uint16_t ctrl = pci_cfg_get16(&t->fn, t->msix_cap + 2);
	pthread_mutex_lock(&t->irq_lock);
	bool was = t->msix_enabled;
	t->msix_enabled = ctrl & MSIX_CTRL_ENABLE;
	t->msix_masked = ctrl & MSIX_CTRL_MASKALL;
	if (t->msix_enabled && !was) {
		/* The routes take effect now; INTx is off while MSI-X is on. */
		struct errbuf e;
		if (irq_router_commit(t->env.router, &e) < 0)
			log_warn("virtio-pci %02x.0: enabling MSI-X: %s", t->fn.devfn >> 3, e.msg);
		atomic_store(&t->isr, 0);
		irq_lower(&t->intx);
	}
	vp_deliver_pending(t);
	pthread_mutex_unlock(&t->irq_lock);
}

static void vp_cfg_write(struct pci_function *f, uint32_t off, const uint8_t *data, uint32_t len)
{
	struct virtio_pci *t = fn_to_vp(f);
	uint32_t win = t->cfg_cap + offsetof(struct virtio_pci_cfg_cap, pci_cfg_data);
	if (off == win) {
		uint32_t bo, bl;
		if (vp_cfg_window(t, &bo, &bl) && len >= bl)
			virtio_pci_bar_io(t, bo, (uint8_t *)f->cfg + win, bl, true);
		memset(f->cfg + win, 0, 4); /* the window holds no data of its own */
		return;
	}
	if (t->msix_cap && off < t->msix_cap + 4u && off + len > t->msix_cap + 2u)
		vp_msix_control_changed(t);
	if (off <= PCI_REG_COMMAND + 1 && off + len > PCI_REG_COMMAND + 1 &&
	    (f->cfg[PCI_REG_COMMAND + 1] & (PCI_CMD_INTX_DISABLE >> 8))) {
		pthread_mutex_lock(&t->irq_lock);
		irq_lower(&t->intx);
		pthread_mutex_unlock(&t->irq_lock);
	}
}

/* Queue notifications follow BAR 0. */
static void vp_bar_moved(struct pci_function *f, unsigned bar, uint64_t addr, bool mapped)
{
	struct virtio_pci *t = fn_to_vp(f);
	if (bar != 0)
		return;
	for (unsigned q = 0; q < t->dev->nqueues; q++) {
		if (!mapped) {
			ioeventfd_deassign(&t->notify[q]);
			t->notify_in_kernel[q] = false;
			continue;
		}
		uint64_t a = addr + VIRTIO_PCI_NOTIFY_OFFSET + q * VIRTIO_PCI_NOTIFY_MULT;
		int ret = ioeventfd_assign(&t->notify[q], a, 2);
		t->notify_in_kernel[q] = ret == 0;
		log_debug("%s: queue %u notify at 0x%llx: %s", t->dev->ops->name, q,
			  (unsigned long long)a, ret == 0 ? "ioeventfd" : "MMIO exit");
	}
}

static const struct pci_function_ops vp_function_ops = {
    .cfg_read = vp_cfg_read,
    .cfg_write = vp_cfg_write,
    .bar_moved = vp_bar_moved,
};

static void vp_ioeventfd(void *opaque, unsigned q)
{
	struct virtio_pci *t = opaque;
	virtio_dev_queue_notify(t->dev, q);
}

static int vp_add_vendor_cap(struct pci_function *f, uint8_t type, uint32_t offset, uint32_t length,
			     uint32_t extra, bool has_extra)
{
	uint8_t cap[20] = {0};
	uint8_t len = has_extra ? 20 : 16;
	cap[0] = PCI_CAP_ID_VNDR;
	cap[VIRTIO_PCI_CAP_LEN] = len;
	cap[VIRTIO_PCI_CAP_CFG_TYPE] = type;
	cap[VIRTIO_PCI_CAP_BAR] = 0;
	le_put(cap + VIRTIO_PCI_CAP_OFFSET, offset, 4);
	le_put(cap + VIRTIO_PCI_CAP_LENGTH, length, 4);
	if (has_extra)
		le_put(cap + 16, extra, 4);
	return pci_function_add_cap(f, cap, len, NULL);
}

static void vp_intx_resample(void *opaque, int fd, uint32_t events)
{
	struct virtio_pci *t = opaque;
	irq_resample(&t->intx);
}

/* INTx as a level-triggered irqfd with a resample fd: KVM deasserts the line at the
 * guest's EOI and tells the loop, which asserts it again if the ISR is still set. A
 * KVM_IRQ_LINE line where the irqfd is refused. */
static int vp_init_intx(struct virtio_pci *t, unsigned gsi, struct errbuf *e)
{
	struct errbuf ignored;
	if (t->env.vm_fd >= 0 && t->env.loop &&
	    irq_init_line_irqfd(&t->intx, t->env.vm_fd, gsi, true, &ignored) == 0) {
		int ret =
		    loop_add_fd(t->env.loop, t->intx.resample_fd, EPOLLIN, vp_intx_resample, t);
		if (ret == 0) {
			t->intx_on_loop = true;
			return 0;
		}
		irq_destroy(&t->intx);
	}
	return irq_init_line(&t->intx, t->env.vm_fd, gsi);
}

static void vp_free(struct virtio_pci *t)
{
	if (t->intx_on_loop)
		loop_del_fd(t->env.loop, t->intx.resample_fd);
	irq_destroy(&t->intx);
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		ioeventfd_destroy(&t->notify[q]);
	for (unsigned v = 0; v < t->nvectors; v++)
		if (t->vec[v].have_irq)
			irq_destroy(&t->vec[v].irq);
	free(t->vec);
	pthread_mutex_destroy(&t->lock);
	pthread_mutex_destroy(&t->irq_lock);
	free(t);
}

int virtio_pci_create(const struct virtio_pci_env *env, struct virtio_dev *d,
		      struct virtio_pci **out, struct errbuf *e)
{
	struct virtio_pci *t = calloc(1, sizeof(*t));
	if (!t)
		return errf(e, -ENOMEM, "out of memory");
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		t->notify[q].fd = -1;
	t->dev = d;
	t->env = *env;
	irq_init_line(&t->intx, -1, 0); /* wired once the slot is known */
	pthread_mutex_init(&t->lock, NULL);
	pthread_mutex_init(&t->irq_lock, NULL);
	if (env->vectors_given && env->vectors > VIRTIO_PCI_MAX_VECTORS) {
		vp_free(t);
		return errf(e, -EINVAL, "%s: vectors=%u, at most %u", d->ops->name, env->vectors,
			    VIRTIO_PCI_MAX_VECTORS);
	}
	/* By default one per queue and one for configuration changes. */
	t->nvectors = env->vectors_given ? env->vectors : d->nqueues + 1;
	t->vec = calloc(t->nvectors ? t->nvectors : 1, sizeof(*t->vec));
	if (!t->vec) {
		vp_free(t);
		return errf(e, -ENOMEM, "out of memory");
	}
	int ret;
	for (unsigned v = 0; v < t->nvectors; v++) {
		t->vec[v].ctrl = MSIX_ENTRY_MASKED; /* masked at reset (PCI 3.0, 6.8.2.9) */
		if ((ret = irq_init_msi_irqfd(&t->vec[v].irq, env->router, 0, 0, e)) < 0) {
			vp_free(t);
			return ret;
		}
		t->vec[v].have_irq = true;
	}
	for (unsigned q = 0; q < d->nqueues; q++)
		if ((ret = virtio_dev_ioeventfd_init(d, q, &t->notify[q], env->vm_fd, env->loop,
						     vp_ioeventfd, t, e)) < 0) {
			vp_free(t);
			return ret;
		}

	struct pci_function *f = &t->fn;
	/* Class: what the device is (4.1.2.1 leaves it free; Linux ignores it). */
	uint32_t class_code = 0xff0000;
	switch (d->ops->device_id) {
	case VIRTIO_ID_NET:
		class_code = 0x020000;
		break;
	case VIRTIO_ID_BLOCK:
		class_code = 0x010000;
		break;
	case VIRTIO_ID_CONSOLE:
		class_code = 0x078000;
		break;
	}
	pci_function_init(f, VIRTIO_PCI_VENDOR,
			  (uint16_t)(VIRTIO_PCI_DEVICE_BASE + d->ops->device_id), class_code, 1,
			  VIRTIO_PCI_SUBSYS_VENDOR, (uint16_t)d->ops->device_id);
	f->ops = &vp_function_ops;
	f->opaque = t;
	ret = pci_function_set_bar(f, 0, VIRTIO_PCI_BAR_SIZE, false, virtio_pci_bar_io, t,
				   d->ops->name);
	int c1 = vp_add_vendor_cap(f, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_COMMON_OFFSET,
				   VIRTIO_PCI_REGION_SIZE, 0, false);
	int c2 =
	    vp_add_vendor_cap(f, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_NOTIFY_OFFSET,
			      d->nqueues * VIRTIO_PCI_NOTIFY_MULT, VIRTIO_PCI_NOTIFY_MULT, true);
	int c3 = vp_add_vendor_cap(f, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_ISR_OFFSET,
				   VIRTIO_PCI_REGION_SIZE, 0, false);
	int c4 = d->config_size
		     ? vp_add_vendor_cap(f, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_DEVICE_OFFSET,
					 VIRTIO_PCI_REGION_SIZE, 0, false)
		     : 0;
	/* The access window: bar, offset, length and the data are the driver's to write. */
	uint8_t wcap[sizeof(struct virtio_pci_cfg_cap)] = {0};
	wcap[VIRTIO_PCI_CAP_BAR] = 0xff;
	memset(wcap + VIRTIO_PCI_CAP_OFFSET, 0xff, 8);
	memset(wcap + offsetof(struct virtio_pci_cfg_cap, pci_cfg_data), 0xff, 4);
	uint8_t ccap[sizeof(struct virtio_pci_cfg_cap)] = {0};
	ccap[0] = PCI_CAP_ID_VNDR;
	ccap[VIRTIO_PCI_CAP_LEN] = sizeof(ccap);
	ccap[VIRTIO_PCI_CAP_CFG_TYPE] = VIRTIO_PCI_CAP_PCI_CFG;
	int c5 = pci_function_add_cap(f, ccap, sizeof(ccap), wcap);
	/* vectors=0: no MSI-X capability, so the driver uses INTx. */
	int c6 = 0;
	if (t->nvectors) {
		uint8_t mcap[12] = {PCI_CAP_ID_MSIX, 0}, mmask[12] = {0};
		le_put(mcap + 2, t->nvectors - 1, 2);
		le_put(mcap + 4, VIRTIO_PCI_MSIX_TABLE, 4); /* BIR 0 */
		le_put(mcap + 8, VIRTIO_PCI_MSIX_PBA, 4);
		mmask[3] = (MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL) >> 8;
		c6 = pci_function_add_cap(f, mcap, sizeof(mcap), mmask);
	}
	if (ret < 0 || c1 < 0 || c2 < 0 || c3 < 0 || c4 < 0 || c5 < 0 || c6 < 0) {
		vp_free(t);
		return errf(e, -ENOSPC, "%s: the PCI capabilities do not fit", d->ops->name);
	}
	t->cfg_cap = (uint8_t)c5;
	t->msix_cap = (uint8_t)c6;
	vp_reset_locked(t);

	if ((ret = pci_host_add(env->host, f)) < 0) {
		vp_free(t);
		return errf(e, ret, "%s: no free PCI slot or BAR space", d->ops->name);
	}
	unsigned slot = f->devfn >> 3;
	uint8_t gsi = (uint8_t)(VIRTIO_PCI_INTX_GSI_BASE + slot % 8);
	if ((ret = vp_init_intx(t, gsi, e)) < 0) {
		pci_host_remove(env->host, f);
		vp_free(t);
		return ret;
	}
	pci_function_set_intx(f, gsi);
	f->reset_cfg[PCI_REG_INTERRUPT_LINE] = gsi;
	f->reset_cfg[PCI_REG_INTERRUPT_PIN] = 1;
	virtio_dev_attach(d, &vp_transport_ops, t);
	snprintf(d->transport_name, sizeof(d->transport_name), "pci");
	snprintf(d->address, sizeof(d->address), "00:%02x.%x", slot, f->devfn & 7);
	*out = t;
	return 0;
}

/* --- the device list ------------------------------------------------------------------- */

static void vp_list_reset(void *dev)
{
	struct virtio_pci *t = dev;
	pthread_mutex_lock(&t->lock);
	vp_reset_locked(t);
	pthread_mutex_lock(&t->irq_lock);
	t->msix_enabled = t->msix_masked = false;
	for (unsigned v = 0; v < t->nvectors; v++) {
		struct virtio_pci_vector *x = &t->vec[v];
		x->addr_lo = x->addr_hi = x->data = 0;
		x->ctrl = MSIX_ENTRY_MASKED;
		x->pending = false;
		vp_update_route(t, v);
	}
	pthread_mutex_unlock(&t->irq_lock);
	pthread_mutex_unlock(&t->lock);
}

static int vp_list_save(void *dev, struct state_writer *w)
{
	struct virtio_pci *t = dev;
	pthread_mutex_lock(&t->lock);
	state_put_bytes(w, t->fn.cfg, 256);
	state_put_u32(w, t->device_feature_select);
	state_put_u32(w, t->driver_feature_select);
	state_put_u64(w, t->driver_features);
	state_put_u16(w, t->queue_select);
	state_put_u16(w, t->msix_config);
	state_put_u32(w, t->dev->nqueues);
	for (unsigned q = 0; q < t->dev->nqueues; q++)
		state_put_u16(w, t->queue_vector[q]);
	pthread_mutex_lock(&t->irq_lock);
	state_put_u8(w, atomic_load(&t->isr));
	state_put_u32(w, t->nvectors);
	for (unsigned v = 0; v < t->nvectors; v++) {
		struct virtio_pci_vector *x = &t->vec[v];
		state_put_u32(w, x->addr_lo);
		state_put_u32(w, x->addr_hi);
		state_put_u32(w, x->data);
		state_put_u32(w, x->ctrl);
		state_put_u8(w, x->pending);
	}
	pthread_mutex_unlock(&t->irq_lock);
	pthread_mutex_unlock(&t->lock);
	return w->err;
}

static int vp_list_load(void *dev, struct state_reader *r)
{
	struct virtio_pci *t = dev;
	uint8_t cfg[256];
	state_get_bytes(r, cfg, sizeof(cfg));
	uint32_t dfs = state_get_u32(r), gfs = state_get_u32(r);
	uint64_t gf = state_get_u64(r);
	uint16_t qs = state_get_u16(r), mc = state_get_u16(r);
	uint32_t nq = state_get_u32(r);
	if (r->err || nq != t->dev->nqueues)
		return -EINVAL;
	uint16_t qv[VIRTIO_MAX_QUEUES];
	for (unsigned q = 0; q < nq; q++)
		qv[q] = state_get_u16(r);
	uint8_t isr = state_get_u8(r);
	uint32_t nv = state_get_u32(r);
	if (r->err || nv != t->nvectors)
		return -EINVAL;
	struct virtio_pci_vector *vec = calloc(nv, sizeof(*vec));
	if (!vec)
		return -ENOMEM;
	for (unsigned v = 0; v < nv; v++) {
		vec[v].addr_lo = state_get_u32(r);
		vec[v].addr_hi = state_get_u32(r);
		vec[v].data = state_get_u32(r);
		vec[v].ctrl = state_get_u32(r) & MSIX_ENTRY_MASKED;
		vec[v].pending = state_get_u8(r);
	}
	if (state_reader_finish(r) < 0 || memcmp(cfg, t->fn.cfg, 4) != 0) {
		free(vec);
		return -EINVAL;
	}
	/* The config space goes back through the host's write path so BARs are placed. */
	uint32_t win = t->cfg_cap + offsetof(struct virtio_pci_cfg_cap, pci_cfg_data);
	pci_host_cfg_write(t->fn.host, 0, t->fn.devfn, 0x04, cfg + 0x04, win - 0x04);
	/* Not the access window's data: writing it would write the BAR. */
	pci_host_cfg_write(t->fn.host, 0, t->fn.devfn, win + 4, cfg + win + 4, 256 - win - 4);
	pthread_mutex_lock(&t->lock);
	t->device_feature_select = dfs;
	t->driver_feature_select = gfs;
	t->driver_features = gf;
	t->queue_select = qs;
	t->msix_config = vp_checked_vector(t, mc);
	for (unsigned q = 0; q < nq; q++)
		t->queue_vector[q] = vp_checked_vector(t, qv[q]);
	pthread_mutex_lock(&t->irq_lock);
	atomic_store(&t->isr, isr);
	for (unsigned v = 0; v < nv; v++) {
		struct virtio_pci_vector *x = &t->vec[v];
		x->addr_lo = vec[v].addr_lo;
		x->addr_hi = vec[v].addr_hi;
		x->data = vec[v].data;
		x->ctrl = vec[v].ctrl;
		x->pending = vec[v].pending;
		vp_update_route(t, v);
	}
	pthread_mutex_unlock(&t->irq_lock);
	pthread_mutex_unlock(&t->lock);
	free(vec);
	return 0;
}

static void vp_list_destroy(void *dev)
{
	struct virtio_pci *t = dev;
	pci_host_remove(t->fn.host, &t->fn);
	if (t->fn.host && t->fn.host->mmio)
		bus_synchronize(t->fn.host->mmio);
	/* A device with worker threads (virtio-blk) may be interrupting through t: stop it
	 * before t goes. */
	virtio_dev_reset(t->dev);
	t->dev->tops = NULL;
	vp_free(t);
}

/* INTx follows the ISR while MSI-X is off (a loaded ISR may hold bits no signal raised in
 * this process): the line is set to that level and driven again. */
static void vp_list_sync_irq(void *dev)
{
	struct virtio_pci *t = dev;
	pthread_mutex_lock(&t->irq_lock);
	bool assert = !t->msix_enabled && atomic_load(&t->isr) &&
		      !(pci_cfg_get16(&t->fn, PCI_REG_COMMAND) & PCI_CMD_INTX_DISABLE);
	if (assert && !atomic_load(&t->intx.level))
		irq_raise(&t->intx);
	else if (!assert && atomic_load(&t->intx.level))
		irq_lower(&t->intx);
	else
		irq_resync(&t->intx);
	pthread_mutex_unlock(&t->irq_lock);
}

const struct device_ops virtio_pci_device_ops = {
    .name = "virtio-pci",
    .version = 1,
    .reset = vp_list_reset,
    .save = vp_list_save,
    .load = vp_list_load,
    .sync_irq = vp_list_sync_irq,
    .destroy = vp_list_destroy,
};
