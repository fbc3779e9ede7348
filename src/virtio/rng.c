/* virtio-rng (virtio 1.2, 5.4): one queue; every buffer the driver makes available is
 * filled with bytes from getrandom(2), the host kernel's CSPRNG, and returned at once. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <linux/virtio_ring.h>

#include "util/log.h"
#include "virtio/virtio.h"

#define RNG_QUEUE_SIZE 256
#define RNG_CHUNK      4096

struct virtio_rng {
	struct virtio_dev dev;
	struct vq_request req; /* one request in flight at a time: ~16 KiB, not on the stack */
	pthread_mutex_t lock;  /* the queue's owner: ioeventfd (loop) or a vCPU's MMIO write */
	/* Statistics, written under lock, read without it. */
	atomic_uint_fast64_t requests, bytes;
	bool serving; /* between start (DRIVER_OK) and reset, under lock */
};

/* Fills the writable part of req; returns the bytes written. */
static uint32_t rng_fill(struct virtio_rng *r, struct virtqueue *vq, const struct vq_request *req)
{
	uint8_t buf[RNG_CHUNK];
	uint32_t done = 0;
	while (done < req->writable_len) {
		size_t want = req->writable_len - done;
		if (want > sizeof(buf))
			want = sizeof(buf);
		ssize_t got = getrandom(buf, want, 0);
		if (got <= 0) {
			if (got < 0 && errno == EINTR)
				continue;
			break;
		}
		size_t put = virtqueue_req_write(vq, req, done, buf, (size_t)got);
		done += (uint32_t)put;
		if (put < (size_t)got)
			break;
	}
	return done;
}

static void rng_queue_notify(struct virtio_dev *d, unsigned q)
{
	struct virtio_rng *r = d->priv;
	struct virtqueue *vq = &d->vqs[0];
	pthread_mutex_lock(&r->lock);
	bool pushed = false;
	while (r->serving) {
		int ret = virtqueue_pop(vq, &r->req);
		if (ret == 0) {
			/* Ask for the next kick; buffers that raced in are served now. */
			if (!virtqueue_set_notification(vq, true))
				break;
			continue;
		}
		if (ret < 0) {
			virtio_dev_needs_reset(d, vq->why.msg);
			break;
		}
		virtqueue_set_notification(vq, false);
		uint32_t n = rng_fill(r, vq, &r->req);
		virtio_stat_add(&r->requests, 1);
		virtio_stat_add(&r->bytes, n);
		if (virtqueue_push(vq, r->req.head, n) < 0)
			break;
		pushed = true;
	}
	pthread_mutex_unlock(&r->lock);
	if (pushed)
		virtio_dev_used(d, 0);
}

static int rng_start(struct virtio_dev *d)
{
	struct virtio_rng *r = d->priv;
	pthread_mutex_lock(&r->lock);
	r->serving = true;
	pthread_mutex_unlock(&r->lock);
	return 0;
}

/* Waits for a kick being served (on the loop or a vCPU) and refuses later ones until the
 * next DRIVER_OK, so the core can reset the queue under nobody's feet. */
static void rng_reset(struct virtio_dev *d)
{
	struct virtio_rng *r = d->priv;
	pthread_mutex_lock(&r->lock);
	r->serving = false;
	pthread_mutex_unlock(&r->lock);
}

/* Nothing of its own to carry; a restored device serves kicks (the core still refuses them
 * unless the restored status has DRIVER_OK). */
static int rng_load(struct virtio_dev *d, struct state_reader *rd)
{
	struct virtio_rng *r = d->priv;
	int ret = state_reader_finish(rd);
	if (ret == 0) {
		pthread_mutex_lock(&r->lock);
		r->serving = true;
		pthread_mutex_unlock(&r->lock);
	}
	return ret;
}

static uint64_t rng_features(struct virtio_dev *d)
{
	return 1ull << VIRTIO_RING_F_EVENT_IDX | 1ull << VIRTIO_RING_F_INDIRECT_DESC;
}

static void rng_destroy(struct virtio_dev *d)
{
	struct virtio_rng *r = d->priv;
	pthread_mutex_destroy(&r->lock);
}

static unsigned rng_stats(struct virtio_dev *d, struct virtio_stat *out, unsigned max)
{
	struct virtio_rng *r = d->priv;
	const struct virtio_stat all[] = {
	    {"requests", atomic_load_explicit(&r->requests, memory_order_relaxed)},
	    {"bytes", atomic_load_explicit(&r->bytes, memory_order_relaxed)},
	};
	unsigned n = max < 2 ? max : 2;
	memcpy(out, all, n * sizeof(*out));
	return n;
}

static const struct virtio_dev_ops rng_ops = {
    .name = "virtio-rng",
    .device_id = VIRTIO_ID_RNG,
    .version = 1,
    .features = rng_features,
    .start = rng_start,
    .queue_notify = rng_queue_notify,
    .reset = rng_reset,
    .load = rng_load,
    .destroy = rng_destroy,
    .stats = rng_stats,
};

/* -device virtio-rng-pci[,rng=ID]: ID must be an -object rng-random (whose filename is
 * accepted for QEMU's command lines; kvmini reads getrandom(2) whatever it names) or
 * rng-builtin. */
static int rng_create(const struct virtio_create_ctx *ctx, const struct keyed_opts *copts,
		      struct virtio_dev **out, struct errbuf *e)
{
	struct keyed_opts *o = (struct keyed_opts *)copts;
	const char *backend = keyed_get(o, "rng");
	if (backend) {
		struct keyed_opts *obj = keyed_list_find(&ctx->cfg->objects, backend);
		if (!obj || !obj->type ||
		    (strcmp(obj->type, "rng-random") && strcmp(obj->type, "rng-builtin")))
			return errf(e, -EINVAL,
				    "invalid -device '%s': rng=%s names no -object rng-random or "
				    "rng-builtin",
				    o->spec, backend);
	}
	int ret = keyed_check_used(o, "rng, vectors", e);
	if (ret < 0)
		return ret;
	struct virtio_rng *r = calloc(1, sizeof(*r));
	if (!r)
		return errf(e, -ENOMEM, "out of memory");
	if ((ret = virtio_dev_init(&r->dev, &rng_ops, r, ctx->mem, 1, RNG_QUEUE_SIZE, 0)) < 0) {
		free(r);
		return errf(e, ret, "virtio-rng: %s", strerror(-ret));
	}
	pthread_mutex_init(&r->lock, NULL);
	*out = &r->dev;
	return 0;
}

const struct virtio_dev_type virtio_rng_type = {
    .name = "virtio-rng",
    .create = rng_create,
};
