/* virtio-blk (virtio 1.2, section 5.2) on a raw disk (backend/disk.h).
 *
 * Each virtqueue has its own worker thread, its own io_uring (struct disk_queue) and its
 * own pool of request slots, so queue N never takes a lock queue M takes. The worker waits
 * in one place (disk_queue_wait: the ring's completions and the queue's kick eventfd),
 * pops every available request, starts its I/O, and pushes completions in batches with one
 * interrupt (virtio_dev_used) per batch. Reads land in guest memory through io_uring, so
 * their pages are marked dirty when they complete. A request the guest got wrong (too
 * short, out of range, wrong direction) fails with VIRTIO_BLK_S_IOERR or _UNSUPP; one
 * without a status byte cannot be answered and sets DEVICE_NEEDS_RESET. */
#include <endian.h>
#include <errno.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ring.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "backend/disk.h"
#include "util/log.h"
#include "virtio/blk.h"
#include "virtio/virtio.h"

#define BLK_QUEUE_SIZE 256u
#define BLK_SECTOR     512u
#define BLK_SIZE_MAX   (1u << 20)
/* Header + status around the data segments (QEMU's seg-max-adjust rule). */
#define BLK_SEG_MAX (BLK_QUEUE_SIZE - 2)
/* Discard and write-zeroes: one range per request, up to 4 GiB - 512 each. */
#define BLK_MAX_DZ_SECTORS (UINT32_MAX / BLK_SECTOR)
/* The configuration space kvmini presents: through write_zeroes_may_unmap (virtio 1.1+). */
#define BLK_CONFIG_SIZE (offsetof(struct virtio_blk_config, unused1) + 3)
#define BLK_BATCH	32u
#define BLK_POLL_NS	50000u /* how long a worker watches the ring before it sleeps */

struct blk;

/* What the counters tell apart. */
enum blk_kind { BLK_RD, BLK_WR, BLK_FLUSH, BLK_DISCARD, BLK_WZ, BLK_GET_ID, BLK_NKINDS, BLK_OTHER };

struct blk_req {
	struct disk_io io;
	struct blk_queue *bq;
	uint16_t head;
	uint32_t type;
	uint64_t status_gpa;
	uint32_t data_len;
	bool started; /* its I/O was submitted: a failure now is the host's */
	/* The data segments: host iovecs and their guest addresses (for dirty marking). */
	struct iovec *iov;
	uint64_t *gpa;
	unsigned nseg, cap;
	struct blk_req *next_free;
};

struct blk_queue {
	struct blk *blk;
	unsigned index;
	struct disk_queue dq;
	bool dq_ready;
	int kick_fd;
	pthread_t thread;
	bool running;
	atomic_bool stop;
	struct blk_req *slots;
	struct blk_req *free;
	struct vq_request *scratch;
	bool pushed; /* used entries since the last interrupt */
	/* The VM's pause (blk_pause): the worker answers what is in flight, sets `still` and
	 * waits until pause_req is cleared (or it is stopped). still is also set when the
	 * worker has ended. Both under blk->park_lock. */
	atomic_bool pause_req;
	bool still;
	/* Counters, written by this queue's owner only (virtio_stat_add), read by the
	 * monitor at any time. */
	struct blk_counters {
		atomic_uint_fast64_t requests, ops[BLK_NKINDS], bytes[BLK_NKINDS],
		    failed[BLK_NKINDS], invalid[BLK_NKINDS], unsupported, errors, wr_highest_offset;
	} st;
};

struct blk {
	struct virtio_dev vdev; /* first: the device list frees the whole struct */
	struct disk disk;
	char serial[VIRTIO_BLK_ID_BYTES];
	char *drive_id;
	unsigned nqueues;
	struct blk_queue *queues;
	uint64_t capacity; /* 512-byte sectors */
	pthread_mutex_t park_lock;
	pthread_cond_t park_cond;
};

_Static_assert(offsetof(struct blk, vdev) == 0, "the device list frees &blk->vdev");

static struct blk *to_blk(struct virtio_dev *d)
{
	return (struct blk *)d;
}

static uint64_t blk_features(struct virtio_dev *d)
{
	struct blk *b = to_blk(d);
	uint64_t f = (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_SIZE_MAX) |
		     (1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_FLUSH) |
		     (1ull << VIRTIO_BLK_F_MQ) | (1ull << VIRTIO_RING_F_EVENT_IDX) |
		     (1ull << VIRTIO_RING_F_INDIRECT_DESC);
	if (b->disk.readonly)
		f |= 1ull << VIRTIO_BLK_F_RO;
	else
		f |= (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES);
	return f;
}

static void blk_config_read(struct virtio_dev *d, uint32_t offset, void *data, uint32_t len)
{
	struct blk *b = to_blk(d);
	struct virtio_blk_config c;
	uint32_t align = b->disk.block_size / BLK_SECTOR;

	memset(&c, 0, sizeof(c));
	c.capacity = htole64(b->capacity);
	c.size_max = htole32(BLK_SIZE_MAX);
	c.seg_max = htole32(BLK_SEG_MAX);
	c.blk_size = htole32(b->disk.block_size);
	c.num_queues = htole16((uint16_t)b->nqueues);
	c.max_discard_sectors = htole32(BLK_MAX_DZ_SECTORS / align * align);
	c.max_discard_seg = htole32(1);
	c.discard_sector_alignment = htole32(align);
	c.max_write_zeroes_sectors = htole32(BLK_MAX_DZ_SECTORS / align * align);
	c.max_write_zeroes_seg = htole32(1);
	c.write_zeroes_may_unmap = 1;
	memcpy(data, (uint8_t *)&c + offset, len);
}

/* Every field is read-only (kvmini offers no CONFIG_WCE). */
static void blk_config_write(struct virtio_dev *d, uint32_t offset, const void *data, uint32_t len)
{
}

/* --- one request --- */

static void req_free(struct blk_queue *bq, struct blk_req *r)
{
	r->next_free = bq->free;
	bq->free = r;
}

static enum blk_kind blk_kind_of(uint32_t type)
{
	switch (type) {
	case VIRTIO_BLK_T_IN:
		return BLK_RD;
	case VIRTIO_BLK_T_OUT:
		return BLK_WR;
	case VIRTIO_BLK_T_FLUSH:
		return BLK_FLUSH;
	case VIRTIO_BLK_T_DISCARD:
		return BLK_DISCARD;
	case VIRTIO_BLK_T_WRITE_ZEROES:
		return BLK_WZ;
	case VIRTIO_BLK_T_GET_ID:
		return BLK_GET_ID;
	default:
		return BLK_OTHER;
	}
}

/* Counts r's completion with this status (on the queue's owner thread). */
static void blk_account(struct blk_queue *bq, const struct blk_req *r, uint8_t status)
{
	struct blk_counters *c = &bq->st;
	enum blk_kind k = blk_kind_of(r->type);
	if (status != VIRTIO_BLK_S_OK) {
		virtio_stat_add(&c->errors, 1);
		if (k == BLK_OTHER)
			virtio_stat_add(&c->unsupported, 1);
		else if (r->started)
			virtio_stat_add(&c->failed[k], 1);
		else
			virtio_stat_add(&c->invalid[k], 1);
		return;
	}
	if (k == BLK_OTHER)
		return;
	virtio_stat_add(&c->ops[k], 1);
	if (k == BLK_RD || k == BLK_WR)
		virtio_stat_add(&c->bytes[k], r->started ? r->data_len : 0);
	else if (k == BLK_DISCARD || k == BLK_WZ)
		virtio_stat_add(&c->bytes[k], r->started ? r->io.len : 0);
	if (k == BLK_WR && r->started) {
		uint64_t end = r->io.offset + r->data_len;
		if (end > atomic_load_explicit(&c->wr_highest_offset, memory_order_relaxed))
			atomic_store_explicit(&c->wr_highest_offset, end, memory_order_relaxed);
	}
}

/* Finishes r: its status byte, the used entry; the interrupt comes once per batch. */
static void req_complete(struct blk_queue *bq, struct blk_req *r, uint8_t status, uint32_t written)
{
	struct virtio_dev *d = &bq->blk->vdev;
	struct virtqueue *vq = &d->vqs[bq->index];

	blk_account(bq, r, status);
	guest_mem_write(d->mem, r->status_gpa, &status, 1);
	if (virtqueue_push(vq, r->head, written + 1) == 0)
		bq->pushed = true;
	req_free(bq, r);
}

static int req_reserve(struct blk_req *r, unsigned n)
{
	if (n <= r->cap)
		return 0;
	unsigned cap = r->cap ? r->cap : 8;
	while (cap < n)
		cap *= 2;
	struct iovec *iov = realloc(r->iov, cap * sizeof(*iov));
	if (!iov)
		return -ENOMEM;
	r->iov = iov;
	uint64_t *gpa = realloc(r->gpa, cap * sizeof(*gpa));
	if (!gpa)
		return -ENOMEM;
	r->gpa = gpa;
	r->cap = cap;
	return 0;
}

/* Host iovecs for [offset, offset + len) of segments [first, end) of req. */
static int req_map(struct blk_req *r, const struct guest_mem *mem, const struct vq_request *req,
		   unsigned first, unsigned end, uint64_t offset, uint64_t len)
{
	r->nseg = 0;
	for (unsigned s = first; s < end && len; s++) {
		const struct vq_seg *seg = &req->seg[s];
		if (offset >= seg->len) {
			offset -= seg->len;
			continue;
		}
		uint64_t n = seg->len - offset;
		if (n > len)
			n = len;
		void *p = gpa_to_hva(mem, seg->gpa + offset, n);
		if (!p || req_reserve(r, r->nseg + 1))
			return -EFAULT;
		r->iov[r->nseg] = (struct iovec){p, n};
		r->gpa[r->nseg] = seg->gpa + offset;
		r->nseg++;
		len -= n;
		offset = 0;
	}
	return len ? -EFAULT : 0;
}

static bool range_ok(const struct blk *b, uint64_t sector, uint64_t nsectors)
{
	return sector <= b->capacity && nsectors <= b->capacity - sector;
}

static void req_start(struct blk_queue *bq, struct blk_req *r)
{
	r->started = true;
	int ret = disk_queue_submit(&bq->dq, &r->io);
	if (ret) { /* cannot happen: there are as many slots as the ring holds */
		r->io.res = ret;
		req_complete(bq, r, VIRTIO_BLK_S_IOERR, 0);
	}
}

/* Returns false when the request broke the device (no status byte to answer with). */
static bool handle_request(struct blk_queue *bq, struct blk_req *r, const struct vq_request *req)
{
	struct blk *b = bq->blk;
	struct virtio_dev *d = &b->vdev;
	struct virtio_blk_outhdr hdr;

	virtio_stat_add(&bq->st.requests, 1);
	r->head = req->head;
	r->type = UINT32_MAX; /* not known until the header is read */
	r->started = false;
	r->data_len = 0;
	if (req->writable_len == 0) {
		/* Nowhere to put the status: the driver broke the protocol. The chain is
		 * returned so the ring stays consistent, and the device asks for a reset. */
		virtqueue_push(&d->vqs[bq->index], req->head, 0);
		bq->pushed = true;
		req_free(bq, r);
		virtio_dev_needs_reset(d, "virtio-blk request without a writable status byte");
		return false;
	}
	const struct vq_seg *last = &req->seg[req->nseg - 1];
	r->status_gpa = last->gpa + last->len - 1;
	uint32_t wdata = req->writable_len - 1; /* writable bytes before the status */

	if (req->readable_len < sizeof(hdr) ||
	    virtqueue_req_read(&d->vqs[bq->index], req, 0, &hdr, sizeof(hdr)) != sizeof(hdr)) {
		req_complete(bq, r, VIRTIO_BLK_S_IOERR, 0);
		return true;
	}
	r->type = le32toh(hdr.type);
	uint64_t sector = le64toh(hdr.sector);
	uint32_t rdata = req->readable_len - sizeof(hdr);
	memset(&r->io, 0, sizeof(r->io));
	r->io.opaque = r;
	r->io.dsync = !virtio_dev_has_feature(d, VIRTIO_BLK_F_FLUSH);

	switch (r->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT: {
		bool in = r->type == VIRTIO_BLK_T_IN;
		uint32_t len = in ? wdata : rdata;
		/* Data in the wrong direction (a read-only buffer for a read, a writable one
		 * for a write), a partial sector, or a range past the end: nothing is done. */
		if ((in ? rdata : wdata) != 0 || len % BLK_SECTOR ||
		    !range_ok(b, sector, len / BLK_SECTOR) || (!in && b->disk.readonly)) {
			req_complete(bq, r, VIRTIO_BLK_S_IOERR, 0);
			return true;
		}
		if (len == 0) {
			req_complete(bq, r, VIRTIO_BLK_S_OK, 0);
			return true;
		}
		int ret = in ? req_map(r, d->mem, req, req->nreadable, req->nseg, 0, len)
			     : req_map(r, d->mem, req, 0, req->nreadable, sizeof(hdr), len);
		if (ret) {
			req_complete(bq, r, VIRTIO_BLK_S_IOERR, 0);
			return true;
		}
		r->data_len = len;
		r->io.op = in ? DISK_READ : DISK_WRITE;
		r->io.offset = sector * BLK_SECTOR;
		r->io.iov = r->iov;
		r->io.iovcnt = r->nseg;
		req_start(bq, r);
		return true;
	}
	case VIRTIO_BLK_T_FLUSH:
		r->io.op = DISK_FLUSH;
		req_start(bq, r);
		return true;
	case VIRTIO_BLK_T_GET_ID: {
		uint32_t n = wdata < VIRTIO_BLK_ID_BYTES ? wdata : VIRTIO_BLK_ID_BYTES;
		virtqueue_req_write(&d->vqs[bq->index], req, 0, b->serial, n);
		req_complete(bq, r, VIRTIO_BLK_S_OK, n);
		return true;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES: {
		bool discard = r->type == VIRTIO_BLK_T_DISCARD;
		struct virtio_blk_discard_write_zeroes dz;
		unsigned feature = discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES;
		if (!virtio_dev_has_feature(d, feature) || b->disk.readonly) {
			req_complete(bq, r, VIRTIO_BLK_S_UNSUPP, 0);
			return true;
		}
		if (rdata == 0 || rdata % sizeof(dz)) {
			req_complete(bq, r, VIRTIO_BLK_S_IOERR, 0);
			return true;
		}
		if (rdata / sizeof(dz) > 1) { /* more ranges than max_*_seg */
			req_complete(bq, r, VIRTIO_BLK_S_UNSUPP, 0);
			return true;
		}
		virtqueue_req_read(&d->vqs[bq->index], req, sizeof(hdr), &dz, sizeof(dz));
		uint64_t s = le64toh(dz.sector);
		uint32_t n = le32toh(dz.num_sectors);
		uint32_t flags = le32toh(dz.flags);
		if ((discard && flags) ||
		    (!discard && (flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP))) {
			req_complete(bq, r, VIRTIO_BLK_S_UNSUPP, 0);
			return true;
		}
		if (!range_ok(b, s, n) || n > BLK_MAX_DZ_SECTORS) {
			req_complete(bq, r, VIRTIO_BLK_S_IOERR, 0);
			return true;
		}
		if (n == 0) {
			req_complete(bq, r, VIRTIO_BLK_S_OK, 0);
			return true;
		}
		r->io.op = discard					  ? DISK_DISCARD
			   : (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) ? DISK_ZEROES_UNMAP
									  : DISK_WRITE_ZEROES;
		r->io.offset = s * BLK_SECTOR;
		r->io.len = (uint64_t)n * BLK_SECTOR;
		req_start(bq, r);
		return true;
	}
	default:
		req_complete(bq, r, VIRTIO_BLK_S_UNSUPP, 0);
		return true;
	}
}

/* A disk request finished. */
static void io_done(struct blk_queue *bq, struct disk_io *io, bool push)
{
	struct blk_req *r = io->opaque;
	const struct guest_mem *mem = bq->blk->vdev.mem;

	if (r->io.op == DISK_READ) {
		for (unsigned i = 0; i < r->nseg; i++)
			guest_mem_mark_dirty(mem, r->gpa[i], r->iov[i].iov_len);
	}
	if (!push) {
		req_free(bq, r);
		return;
	}
	if (io->res < 0) {
		log_debug("virtio-blk %s: request type %u at 0x%llx failed: %s", bq->blk->disk.path,
			  r->type, (unsigned long long)r->io.offset, strerror(-io->res));
		req_complete(bq, r, VIRTIO_BLK_S_IOERR, 0);
		return;
	}
	req_complete(bq, r, VIRTIO_BLK_S_OK, r->io.op == DISK_READ ? r->data_len : 0);
}

/* Pops what the driver made available, while there are free slots, with the driver's kicks
 * off; the worker asks for them again only before it sleeps (poll_avail, or its wait).
 * Returns false when the queue or the device broke. */
static bool drain_avail(struct blk_queue *bq)
{
	struct virtio_dev *d = &bq->blk->vdev;
	struct virtqueue *vq = &d->vqs[bq->index];

	virtqueue_set_notification(vq, false);
	int ret = 0;
	while (bq->free) {
		ret = virtqueue_pop(vq, bq->scratch);
		if (ret <= 0)
			break;
		struct blk_req *r = bq->free;
		bq->free = r->next_free;
		if (!handle_request(bq, r, bq->scratch))
			return false;
	}
	if (ret < 0) {
		virtio_dev_needs_reset(d, vq->why.msg);
		return false;
	}
	return true;
}

static void flush_interrupt(struct blk_queue *bq)
{
	if (bq->pushed) {
		bq->pushed = false;
		virtio_dev_used(&bq->blk->vdev, bq->index);
	}
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Before sleeping, the worker watches the ring a little longer with notifications off: a
 * driver that sends its next request soon after a completion (queue depth 1) then needs no
 * kick, which here costs an exit and two thread wake-ups (QEMU's poll-max-ns does the
 * same). Returns true when a request arrived. */
static bool poll_avail(struct blk_queue *bq)
{
	struct virtqueue *vq = &bq->blk->vdev.vqs[bq->index];
	uint64_t end = now_ns() + BLK_POLL_NS;

	virtqueue_set_notification(vq, false);
	do {
		if (virtqueue_has_available(vq))
			return true;
		__builtin_ia32_pause();
	} while (now_ns() < end && !atomic_load_explicit(&bq->stop, memory_order_relaxed) &&
		 !atomic_load_explicit(&bq->pause_req, memory_order_relaxed));
	return virtqueue_set_notification(vq, true);
}

/* Wakes whoever waits on the park condition (a parked worker, a pausing caller), after
 * setting q's `still` when q is given. */
static void park_wake(struct blk *b, struct blk_queue *q, bool still)
{
	pthread_mutex_lock(&b->park_lock);
	if (q)
		q->still = still;
	pthread_cond_broadcast(&b->park_cond);
	pthread_mutex_unlock(&b->park_lock);
}

/* The VM is pausing: every request in flight completes and is answered (used ring and
 * interrupt, which KVM keeps pending for the parked vCPU), then the worker waits, taking
 * nothing new from the ring, until the VM runs again or the queue is stopped. Requests
 * the driver made available but the worker has not taken stay in the ring. */
static void worker_park(struct blk_queue *bq, struct disk_io **done)
{
	struct blk *b = bq->blk;
	while (disk_queue_inflight(&bq->dq) || bq->dq.done_head) {
		int n =
		    disk_queue_wait(&bq->dq, done, BLK_BATCH, disk_queue_inflight(&bq->dq), NULL);
		if (n < 0)
			break;
		for (int i = 0; i < n; i++)
			io_done(bq, done[i], true);
	}
	flush_interrupt(bq);
	pthread_mutex_lock(&b->park_lock);
	bq->still = true;
	pthread_cond_broadcast(&b->park_cond);
	while (atomic_load(&bq->pause_req) && !atomic_load(&bq->stop))
		pthread_cond_wait(&b->park_cond, &b->park_lock);
	bq->still = false;
	pthread_mutex_unlock(&b->park_lock);
}

static void *queue_worker(void *arg)
{
	struct blk_queue *bq = arg;
	struct disk_io *done[BLK_BATCH];
	bool healthy = true;

	while (!atomic_load(&bq->stop)) {
		if (atomic_load(&bq->pause_req)) {
			worker_park(bq, done);
			continue;
		}
		if (healthy)
			healthy = drain_avail(bq);
		flush_interrupt(bq);
		if (healthy && !disk_queue_inflight(&bq->dq) && !bq->dq.done_head && bq->free &&
		    poll_avail(bq))
			continue;
		/* Before sleeping: kicks on again, and one more look (a request added before
		 * the driver saw them on). With every slot busy they stay off: a completion
		 * wakes the worker, which then drains the ring. */
		if (healthy && bq->free &&
		    virtqueue_set_notification(&bq->blk->vdev.vqs[bq->index], true))
			continue;
		bool kicked;
		int n = disk_queue_wait(&bq->dq, done, BLK_BATCH, true, &kicked);
		if (n < 0) {
			log_error("virtio-blk %s: queue %u: waiting for I/O failed: %s",
				  bq->blk->disk.path, bq->index, strerror(-n));
			virtio_dev_needs_reset(&bq->blk->vdev, "the disk's I/O queue failed");
			break;
		}
		for (int i = 0; i < n; i++)
			io_done(bq, done[i], !atomic_load(&bq->stop));
		flush_interrupt(bq);
	}
	/* Stopping (a reset): finish what is in flight, answer nothing. */
	while (disk_queue_inflight(&bq->dq)) {
		int n = disk_queue_wait(&bq->dq, done, BLK_BATCH, true, NULL);
		if (n < 0)
			break;
		for (int i = 0; i < n; i++)
			io_done(bq, done[i], false);
	}
	int n;
	while ((n = disk_queue_wait(&bq->dq, done, BLK_BATCH, false, NULL)) > 0)
		for (int i = 0; i < n; i++)
			io_done(bq, done[i], false);
	park_wake(bq->blk, bq, true); /* a pause need not wait for a worker that has ended */
	return NULL;
}

static void queue_stop(struct blk_queue *bq)
{
	if (bq->running) {
		atomic_store(&bq->stop, true);
		park_wake(bq->blk, NULL, false); /* a parked worker waits on the cond */
		eventfd_write(bq->kick_fd, 1);
		pthread_join(bq->thread, NULL);
		bq->running = false;
	}
	if (bq->dq_ready) {
		disk_queue_destroy(&bq->dq);
		bq->dq_ready = false;
	}
	if (bq->slots) {
		for (unsigned i = 0; i < BLK_QUEUE_SIZE; i++) {
			free(bq->slots[i].iov);
			free(bq->slots[i].gpa);
		}
		free(bq->slots);
		bq->slots = NULL;
	}
	free(bq->scratch);
	bq->scratch = NULL;
	bq->free = NULL;
}

/* The queue's resources: slots, kick eventfd, disk queue; and its worker if thread. */
static int queue_start(struct blk_queue *bq, bool thread)
{
	struct errbuf e = {{0}};
	int ret;

	atomic_store(&bq->stop, false);
	atomic_store(&bq->pause_req, false);
	bq->still = false;
	bq->pushed = false;
	eventfd_t stale;
	eventfd_read(bq->kick_fd, &stale); /* kicks from before a reset */
	bq->slots = calloc(BLK_QUEUE_SIZE, sizeof(*bq->slots));
	bq->scratch = malloc(sizeof(*bq->scratch));
	if (!bq->slots || !bq->scratch)
		return -ENOMEM;
	for (unsigned i = 0; i < BLK_QUEUE_SIZE; i++) {
		bq->slots[i].bq = bq;
		req_free(bq, &bq->slots[i]);
	}
	ret = disk_queue_init(&bq->dq, &bq->blk->disk, BLK_QUEUE_SIZE, bq->kick_fd, &e);
	if (ret) {
		log_error("virtio-blk: %s", e.msg);
		return ret;
	}
	bq->dq_ready = true;
	if (!thread)
		return 0;
	ret = pthread_create(&bq->thread, NULL, queue_worker, bq);
	if (ret)
		return -ret;
	char name[16];
	snprintf(name, sizeof(name), "blk q%u", bq->index);
	pthread_setname_np(bq->thread, name);
	bq->running = true;
	return 0;
}

static void blk_reset(struct virtio_dev *d)
{
	struct blk *b = to_blk(d);
	for (unsigned i = 0; i < b->nqueues; i++)
		queue_stop(&b->queues[i]);
}

static int blk_start(struct virtio_dev *d)
{
	struct blk *b = to_blk(d);
	for (unsigned i = 0; i < b->nqueues; i++) {
		int ret = queue_start(&b->queues[i], true);
		if (ret) {
			log_error("virtio-blk %s: cannot start queue %u: %s", b->disk.path, i,
				  strerror(-ret));
			blk_reset(d);
			return ret;
		}
	}
	return 0;
}

static void blk_queue_notify(struct virtio_dev *d, unsigned q)
{
	struct blk *b = to_blk(d);
	/* The eventfd lives as long as the device, so a kick racing a reset is harmless. */
	if (q < b->nqueues)
		eventfd_write(b->queues[q].kick_fd, 1);
}

int blk_run_queue_once(struct virtio_dev *d, unsigned q)
{
	struct blk *b = to_blk(d);
	if (q >= b->nqueues || b->queues[q].running)
		return -EBUSY;
	struct blk_queue *bq = &b->queues[q];
	struct disk_io *done[BLK_BATCH];
	int ret = queue_start(bq, false);
	bool healthy = ret == 0;
	while (healthy) {
		healthy = drain_avail(bq);
		if (!disk_queue_inflight(&bq->dq) && !bq->dq.done_head)
			break;
		int n = disk_queue_wait(&bq->dq, done, BLK_BATCH, true, NULL);
		if (n < 0)
			break;
		for (int i = 0; i < n; i++)
			io_done(bq, done[i], true);
		flush_interrupt(bq);
	}
	flush_interrupt(bq);
	queue_stop(bq);
	return ret;
}

/* Every running queue's worker answers its requests in flight and waits (worker_park):
 * afterwards every chain taken from the avail ring is in the used ring, so a snapshot's
 * queue positions and guest memory hold all of them. */
static void blk_pause(struct virtio_dev *d)
{
	struct blk *b = to_blk(d);
	for (unsigned i = 0; i < b->nqueues; i++)
		if (b->queues[i].running) {
			atomic_store(&b->queues[i].pause_req, true);
			eventfd_write(b->queues[i].kick_fd, 1);
		}
	pthread_mutex_lock(&b->park_lock);
	for (unsigned i = 0; i < b->nqueues; i++)
		while (b->queues[i].running && atomic_load(&b->queues[i].pause_req) &&
		       !b->queues[i].still)
			pthread_cond_wait(&b->park_cond, &b->park_lock);
	pthread_mutex_unlock(&b->park_lock);
}

static void blk_resume(struct virtio_dev *d)
{
	struct blk *b = to_blk(d);
	for (unsigned i = 0; i < b->nqueues; i++)
		atomic_store(&b->queues[i].pause_req, false);
	park_wake(b, NULL, false);
	/* Whatever the driver queued that the worker had not taken is taken now. */
	for (unsigned i = 0; i < b->nqueues; i++)
		if (b->queues[i].running)
			eventfd_write(b->queues[i].kick_fd, 1);
}

/* The device's own state is its backing: a snapshot must come back onto the same size. */
static int blk_save(struct virtio_dev *d, struct state_writer *w)
{
	state_put_u64(w, to_blk(d)->capacity);
	return 0;
}

static int blk_load(struct virtio_dev *d, struct state_reader *r)
{
	uint64_t cap = state_get_u64(r);
	int ret = state_reader_finish(r);
	if (ret)
		return ret;
	return cap == to_blk(d)->capacity ? 0 : -EINVAL;
}

static void blk_destroy(struct virtio_dev *d)
{
	struct blk *b = to_blk(d);
	blk_reset(d);
	for (unsigned i = 0; i < b->nqueues; i++)
		if (b->queues[i].kick_fd >= 0)
			close(b->queues[i].kick_fd);
	free(b->queues);
	b->queues = NULL;
	free(b->drive_id);
	b->drive_id = NULL;
	disk_close(&b->disk);
	pthread_cond_destroy(&b->park_cond);
	pthread_mutex_destroy(&b->park_lock);
}

static unsigned blk_stats_op(struct virtio_dev *d, struct virtio_stat *out, unsigned max);

/* The queue worker waits on its kick eventfd (with the io_uring completions): KVM signals
 * it directly. */
static int blk_kick_fd(struct virtio_dev *d, unsigned q)
{
	struct blk *b = to_blk(d);
	return q < b->nqueues ? b->queues[q].kick_fd : -1;
}

static const struct virtio_dev_ops blk_ops = {
    .name = "virtio-blk",
    .device_id = VIRTIO_ID_BLOCK,
    .version = 1,
    .features = blk_features,
    .config_read = blk_config_read,
    .config_write = blk_config_write,
    .start = blk_start,
    .queue_notify = blk_queue_notify,
    .kick_fd = blk_kick_fd,
    .reset = blk_reset,
    .save = blk_save,
    .load = blk_load,
    .pause = blk_pause,
    .resume = blk_resume,
    .destroy = blk_destroy,
    .stats = blk_stats_op,
};

int blk_create(const struct guest_mem *mem, const struct blk_params *p, struct virtio_dev **out,
	       struct errbuf *e)
{
	struct blk *b = calloc(1, sizeof(*b));
	int ret;

	if (!b)
		return errf(e, -ENOMEM, "out of memory");
	unsigned nq = p->queues ? p->queues : 1;
	if (nq > VIRTIO_MAX_QUEUES) {
		free(b);
		return errf(e, -EINVAL, "virtio-blk '%s': %u queues, at most %u", p->disk.path, nq,
			    VIRTIO_MAX_QUEUES);
	}
	struct disk_opts dopt = p->disk;
	ret = disk_open(&b->disk, &dopt, e);
	if (ret) {
		free(b);
		return ret;
	}
	b->capacity = b->disk.size / BLK_SECTOR;
	if (p->serial)
		/* Up to 20 bytes, zero padded, not NUL-terminated when 20 long (spec). */
		memcpy(b->serial, p->serial, strnlen(p->serial, sizeof(b->serial)));
	b->nqueues = nq;
	pthread_mutex_init(&b->park_lock, NULL);
	pthread_cond_init(&b->park_cond, NULL);
	if (p->drive_id && !(b->drive_id = strdup(p->drive_id))) {
		disk_close(&b->disk);
		free(b);
		return errf(e, -ENOMEM, "out of memory");
	}
	b->queues = calloc(nq, sizeof(*b->queues));
	if (!b->queues) {
		free(b->drive_id);
		disk_close(&b->disk);
		free(b);
		return errf(e, -ENOMEM, "out of memory");
	}
	for (unsigned i = 0; i < nq; i++) {
		b->queues[i].blk = b;
		b->queues[i].index = i;
		b->queues[i].kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (b->queues[i].kick_fd < 0) {
			ret = -errno;
			while (i--)
				close(b->queues[i].kick_fd);
			free(b->queues);
			free(b->drive_id);
			disk_close(&b->disk);
			free(b);
			return errf(e, ret, "virtio-blk '%s': eventfd: %s", p->disk.path,
				    strerror(-ret));
		}
	}
	ret = virtio_dev_init(&b->vdev, &blk_ops, b, mem, nq, BLK_QUEUE_SIZE, BLK_CONFIG_SIZE);
	if (ret) {
		for (unsigned i = 0; i < nq; i++)
			close(b->queues[i].kick_fd);
		free(b->queues);
		free(b->drive_id);
		disk_close(&b->disk);
		free(b);
		return errf(e, ret, "virtio-blk '%s': cannot set up its queues", p->disk.path);
	}
	*out = &b->vdev;
	return 0;
}

static uint64_t rd(atomic_uint_fast64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

void blk_stats(struct virtio_dev *d, struct blk_stats *s)
{
	struct blk *b = to_blk(d);
	memset(s, 0, sizeof(*s));
	for (unsigned i = 0; i < b->nqueues; i++) {
		struct blk_counters *c = &b->queues[i].st;
		s->requests += rd(&c->requests);
		s->rd_ops += rd(&c->ops[BLK_RD]);
		s->wr_ops += rd(&c->ops[BLK_WR]);
		s->flush_ops += rd(&c->ops[BLK_FLUSH]);
		s->discard_ops += rd(&c->ops[BLK_DISCARD]);
		s->write_zeroes_ops += rd(&c->ops[BLK_WZ]);
		s->get_id_ops += rd(&c->ops[BLK_GET_ID]);
		s->bytes_read += rd(&c->bytes[BLK_RD]);
		s->bytes_written += rd(&c->bytes[BLK_WR]);
		s->discard_bytes += rd(&c->bytes[BLK_DISCARD]);
		s->write_zeroes_bytes += rd(&c->bytes[BLK_WZ]);
		s->failed_rd += rd(&c->failed[BLK_RD]);
		s->failed_wr += rd(&c->failed[BLK_WR]);
		s->failed_flush += rd(&c->failed[BLK_FLUSH]);
		s->failed_discard += rd(&c->failed[BLK_DISCARD]);
		s->failed_write_zeroes += rd(&c->failed[BLK_WZ]);
		s->invalid_rd += rd(&c->invalid[BLK_RD]);
		s->invalid_wr += rd(&c->invalid[BLK_WR]);
		s->invalid_flush += rd(&c->invalid[BLK_FLUSH]);
		s->invalid_discard += rd(&c->invalid[BLK_DISCARD]);
		s->invalid_write_zeroes += rd(&c->invalid[BLK_WZ]);
		s->unsupported += rd(&c->unsupported);
		s->errors += rd(&c->errors);
		uint64_t h = rd(&c->wr_highest_offset);
		if (h > s->wr_highest_offset)
			s->wr_highest_offset = h;
	}
}

void blk_acct_of(const struct blk_stats *s, struct blk_acct *a)
{
	*a = (struct blk_acct){
	    .rd_bytes = s->bytes_read,
	    .wr_bytes = s->bytes_written + s->write_zeroes_bytes,
	    .unmap_bytes = s->discard_bytes,
	    .rd_operations = s->rd_ops,
	    .wr_operations = s->wr_ops + s->write_zeroes_ops,
	    .flush_operations = s->flush_ops,
	    .unmap_operations = s->discard_ops,
	    .failed_rd_operations = s->failed_rd,
	    .failed_wr_operations = s->failed_wr + s->failed_write_zeroes,
	    .failed_flush_operations = s->failed_flush,
	    .failed_unmap_operations = s->failed_discard,
	    .invalid_rd_operations = s->invalid_rd,
	    .invalid_wr_operations = s->invalid_wr + s->invalid_write_zeroes,
	    .invalid_flush_operations = s->invalid_flush,
	    .invalid_unmap_operations = s->invalid_discard,
	    .wr_highest_offset = s->wr_highest_offset,
	};
}

const char *blk_drive_id(struct virtio_dev *d)
{
	return to_blk(d)->drive_id;
}

static unsigned blk_stats_op(struct virtio_dev *d, struct virtio_stat *out, unsigned max)
{
	struct blk_stats s;
	blk_stats(d, &s);
	const struct virtio_stat all[] = {
	    {"requests", s.requests},
	    {"reads", s.rd_ops},
	    {"writes", s.wr_ops},
	    {"flushes", s.flush_ops},
	    {"discards", s.discard_ops},
	    {"write_zeroes", s.write_zeroes_ops},
	    {"get_ids", s.get_id_ops},
	    {"rd_bytes", s.bytes_read},
	    {"wr_bytes", s.bytes_written},
	    {"discard_bytes", s.discard_bytes},
	    {"write_zeroes_bytes", s.write_zeroes_bytes},
	    {"failed",
	     s.failed_rd + s.failed_wr + s.failed_flush + s.failed_discard + s.failed_write_zeroes},
	    {"invalid", s.invalid_rd + s.invalid_wr + s.invalid_flush + s.invalid_discard +
			    s.invalid_write_zeroes},
	    {"unsupported", s.unsupported},
	    {"errors", s.errors},
	};
	unsigned n = sizeof(all) / sizeof(all[0]);
	if (n > max)
		n = max;
	memcpy(out, all, n * sizeof(*out));
	return n;
}

/* -device virtio-blk-pci,drive=ID[,num-queues=N][,serial=S] with the -drive it names
 * (config_blk.c has checked both and made --disk and -drive if=virtio into this form). */
static int blk_type_create(const struct virtio_create_ctx *ctx, const struct keyed_opts *copts,
			   struct virtio_dev **out, struct errbuf *e)
{
	struct keyed_opts *opts = (struct keyed_opts *)copts;
	struct blk_params p = {0};
	const char *drive_id = keyed_get(opts, "drive");
	struct keyed_opts *drive = drive_id ? keyed_list_find(&ctx->cfg->drives, drive_id) : NULL;
	uint64_t nq;
	int ret;

	if (!drive)
		return errf(e, -EINVAL, "invalid -device '%s': needs drive=ID naming a -drive",
			    opts->spec);
	if ((ret = keyed_get_u64(opts, "num-queues", 1, VIRTIO_MAX_QUEUES, &nq, e)))
		return ret;
	p.queues = (unsigned)nq;
	p.serial = keyed_get(opts, "serial");
	p.drive_id = drive->id;
	if (!p.serial)
		p.serial = drive->id;
	p.disk.path = keyed_get(drive, "file");
	if ((ret = keyed_get_bool(drive, "readonly", false, &p.disk.readonly, e)))
		return ret;
	const char *cache = keyed_get(drive, "cache");
	p.disk.direct = cache && !strcmp(cache, "none");
	if (!p.disk.path)
		return errf(e, -EINVAL, "invalid -drive '%s': needs file=PATH", drive->spec);
	return blk_create(ctx->mem, &p, out, e);
}

const struct virtio_dev_type virtio_blk_type = {
    .name = "virtio-blk",
    .create = blk_type_create,
};
