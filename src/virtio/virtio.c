#include "virtio/virtio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

int virtio_dev_init(struct virtio_dev *d, const struct virtio_dev_ops *ops, void *priv,
		    const struct guest_mem *mem, unsigned nqueues, unsigned max_queue_size,
		    uint32_t config_size)
{
	if (nqueues == 0 || nqueues > VIRTIO_MAX_QUEUES)
		return -EINVAL;
	memset(d, 0, sizeof(*d));
	d->ops = ops;
	d->priv = priv;
	d->mem = mem;
	d->config_size = config_size;
	d->vqs = calloc(nqueues, sizeof(*d->vqs));
	if (!d->vqs)
		return -ENOMEM;
	for (unsigned i = 0; i < nqueues; i++) {
		int ret = virtqueue_init(&d->vqs[i], mem, max_queue_size);
		if (ret < 0) {
			free(d->vqs);
			d->vqs = NULL;
			return ret;
		}
	}
	d->nqueues = nqueues;
	int ret = pthread_mutex_init(&d->lock, NULL);
	if (ret) {
		free(d->vqs);
		d->vqs = NULL;
		return -ret;
	}
	atomic_init(&d->status, 0);
	atomic_init(&d->config_generation, 0);
	return 0;
}

void virtio_dev_attach(struct virtio_dev *d, const struct virtio_transport_ops *tops,
		       void *transport)
{
	d->tops = tops;
	d->transport = transport;
}

void virtio_dev_destroy(struct virtio_dev *d)
{
	if (d->ops && d->ops->destroy)
		d->ops->destroy(d);
	free(d->vqs);
	d->vqs = NULL;
	d->nqueues = 0;
	pthread_mutex_destroy(&d->lock);
}

uint64_t virtio_dev_offered_features(struct virtio_dev *d)
{
	uint64_t f = d->ops->features ? d->ops->features(d) : 0;
	return f | (1ull << VIRTIO_F_VERSION_1);
}

void virtio_dev_set_driver_features(struct virtio_dev *d, uint64_t features)
{
	pthread_mutex_lock(&d->lock);
	/* Features are frozen once FEATURES_OK is set (virtio 1.2, 3.1.1). */
	if (!(atomic_load(&d->status) & VIRTIO_CONFIG_S_FEATURES_OK))
		d->driver_features = features;
	pthread_mutex_unlock(&d->lock);
}

/* Called with d->lock held. */
static void virtio_dev_reset_locked(struct virtio_dev *d)
{
	if (d->ops->reset)
		d->ops->reset(d);
	for (unsigned i = 0; i < d->nqueues; i++)
		virtqueue_reset(&d->vqs[i]);
	d->driver_features = 0;
	atomic_store(&d->status, 0);
}

void virtio_dev_reset(struct virtio_dev *d)
{
	pthread_mutex_lock(&d->lock);
	virtio_dev_reset_locked(d);
	pthread_mutex_unlock(&d->lock);
}

uint8_t virtio_dev_set_status(struct virtio_dev *d, uint8_t status)
{
	pthread_mutex_lock(&d->lock);
	uint8_t old = atomic_load(&d->status);
	if (status == 0) {
		virtio_dev_reset_locked(d);
		pthread_mutex_unlock(&d->lock);
		return 0;
	}
	/* The driver may not clear bits (other than by a reset); NEEDS_RESET is the
	 * device's to set. */
	uint8_t next = (uint8_t)(old | (status & ~VIRTIO_CONFIG_S_NEEDS_RESET));
	if ((next & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK)) {
		uint64_t offered = virtio_dev_offered_features(d);
		if ((d->driver_features & ~offered) ||
		    !(d->driver_features & (1ull << VIRTIO_F_VERSION_1))) {
			log_debug("%s: refusing features 0x%llx (offered 0x%llx)", d->ops->name,
				  (unsigned long long)d->driver_features,
				  (unsigned long long)offered);
			next &= (uint8_t)~VIRTIO_CONFIG_S_FEATURES_OK;
		} else {
			for (unsigned i = 0; i < d->nqueues; i++)
				virtqueue_set_features(&d->vqs[i], d->driver_features);
		}
	}
	if ((next & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK)) {
		/* DRIVER_OK without FEATURES_OK breaks the initialisation sequence. */
		if (!(next & VIRTIO_CONFIG_S_FEATURES_OK)) {
			next = (uint8_t)((next & ~VIRTIO_CONFIG_S_DRIVER_OK) |
					 VIRTIO_CONFIG_S_NEEDS_RESET);
		} else if (d->ops->start && d->ops->start(d) < 0) {
			next |= VIRTIO_CONFIG_S_NEEDS_RESET;
		}
	}
	atomic_store(&d->status, next);
	pthread_mutex_unlock(&d->lock);
	return next;
}

void virtio_dev_config_read(struct virtio_dev *d, uint32_t offset, void *data, uint32_t len)
{
	if (offset > d->config_size || len > d->config_size - offset || !d->ops->config_read) {
		memset(data, 0, len);
		return;
	}
	pthread_mutex_lock(&d->lock);
	d->ops->config_read(d, offset, data, len);
	pthread_mutex_unlock(&d->lock);
}

void virtio_dev_config_write(struct virtio_dev *d, uint32_t offset, const void *data, uint32_t len)
{
	if (offset > d->config_size || len > d->config_size - offset || !d->ops->config_write)
		return;
	pthread_mutex_lock(&d->lock);
	d->ops->config_write(d, offset, data, len);
	pthread_mutex_unlock(&d->lock);
}

void virtio_dev_queue_notify(struct virtio_dev *d, unsigned q)
{
	if (q >= d->nqueues || !(atomic_load(&d->status) & VIRTIO_CONFIG_S_DRIVER_OK) ||
	    (atomic_load(&d->status) & VIRTIO_CONFIG_S_NEEDS_RESET) || !d->vqs[q].enabled)
		return;
	if (d->ops->queue_notify)
		d->ops->queue_notify(d, q);
}

void virtio_dev_used(struct virtio_dev *d, unsigned q)
{
	if (q < d->nqueues && virtqueue_should_notify(&d->vqs[q]) && d->tops)
		d->tops->notify_queue(d->transport, q);
}

void virtio_dev_needs_reset(struct virtio_dev *d, const char *why)
{
	uint8_t old = atomic_fetch_or(&d->status, VIRTIO_CONFIG_S_NEEDS_RESET);
	if (old & VIRTIO_CONFIG_S_NEEDS_RESET)
		return;
	log_warn("%s: device needs a reset: %s", d->ops->name, why);
	if ((old & VIRTIO_CONFIG_S_DRIVER_OK) && d->tops)
		d->tops->notify_config(d->transport);
}

void virtio_dev_config_changed(struct virtio_dev *d)
{
	atomic_fetch_add(&d->config_generation, 1);
	if ((atomic_load(&d->status) & VIRTIO_CONFIG_S_DRIVER_OK) && d->tops)
		d->tops->notify_config(d->transport);
}

/* The device list's view: the common state, every queue's position, then the device's. */
static void virtio_list_reset(void *dev)
{
	virtio_dev_reset(dev);
}

static int virtio_list_save(void *dev, struct state_writer *w)
{
	struct virtio_dev *d = dev;
	pthread_mutex_lock(&d->lock);
	state_put_u8(w, atomic_load(&d->status));
	state_put_u64(w, d->driver_features);
	state_put_u32(w, atomic_load(&d->config_generation));
	state_put_u32(w, d->nqueues);
	state_put_u32(w, d->ops->version);
	int ret = 0;
	for (unsigned i = 0; i < d->nqueues && ret == 0; i++)
		ret = virtqueue_save(&d->vqs[i], w);
	if (ret == 0 && d->ops->save)
		ret = d->ops->save(d, w);
	pthread_mutex_unlock(&d->lock);
	return ret;
}

static int virtio_list_load(void *dev, struct state_reader *r)
{
	struct virtio_dev *d = dev;
	uint8_t status = state_get_u8(r);
	uint64_t features = state_get_u64(r);
	uint32_t gen = state_get_u32(r);
	uint32_t nq = state_get_u32(r);
	uint32_t version = state_get_u32(r);
	if (r->err || nq != d->nqueues || version != d->ops->version ||
	    (features & ~virtio_dev_offered_features(d)))
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	int ret = 0;
	for (unsigned i = 0; i < d->nqueues && ret == 0; i++)
		ret = virtqueue_load(&d->vqs[i], r);
	if (ret == 0 && d->ops->load)
		ret = d->ops->load(d, r);
	else if (ret == 0)
		ret = state_reader_finish(r);
	if (ret == 0) {
		d->driver_features = features;
		atomic_store(&d->config_generation, gen);
		/* A restored running device starts as it did at DRIVER_OK (its workers and
		 * notification fds); a device that cannot is marked for a reset. */
		if ((status & VIRTIO_CONFIG_S_DRIVER_OK) &&
		    !(atomic_load(&d->status) & VIRTIO_CONFIG_S_DRIVER_OK) && d->ops->start &&
		    d->ops->start(d) < 0)
			status |= VIRTIO_CONFIG_S_NEEDS_RESET;
		atomic_store(&d->status, status);
	}
	pthread_mutex_unlock(&d->lock);
	return ret;
}

static void virtio_list_pause(void *dev)
{
	struct virtio_dev *d = dev;
	if (d->ops->pause && (atomic_load(&d->status) & VIRTIO_CONFIG_S_DRIVER_OK))
		d->ops->pause(d);
}

static void virtio_list_resume(void *dev)
{
	struct virtio_dev *d = dev;
	if (d->ops->resume)
		d->ops->resume(d);
}

static void virtio_list_destroy(void *dev)
{
	virtio_dev_destroy(dev);
	free(dev);
}

const struct device_ops virtio_dev_device_ops = {
    .name = "virtio",
    .version = 1,
    .reset = virtio_list_reset,
    .save = virtio_list_save,
    .load = virtio_list_load,
    .pause = virtio_list_pause,
    .resume = virtio_list_resume,
    .destroy = virtio_list_destroy,
};

unsigned virtio_dev_stats(struct virtio_dev *d, struct virtio_stat *out, unsigned max)
{
	return d->ops->stats ? d->ops->stats(d, out, max) : 0;
}

struct virtio_dev *virtio_dev_of(const struct device *entry)
{
	return entry->ops == &virtio_dev_device_ops ? entry->dev : NULL;
}
