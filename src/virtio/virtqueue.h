/* Split virtqueues (virtio 1.2, section 2.7): the ring logic every virtio device shares,
 * knowing no device and no transport. The transport sets the size, the ring addresses and
 * the negotiated features, then enables the queue; the device pops requests (descriptor
 * chains, walked and checked into a list of guest-physical segments), copies from their
 * readable part and into their writable part, and pushes them back as used.
 *
 * The guest is hostile: every descriptor is copied into a local before use, chains are
 * bounded (by the queue size, by an indirect table's length and by VQ_MAX_SEGS), every
 * segment is checked against guest RAM, and a malformed chain or ring breaks the queue:
 * virtqueue_pop() returns -errno, every later call does nothing, and the device must
 * report it to the driver by setting VIRTIO_CONFIG_S_NEEDS_RESET in its device status
 * (virtqueue_needs_reset() says so; vq->why says why). Only a device reset (the transport
 * calls virtqueue_reset()) revives the queue.
 *
 * A queue has one owner thread at a time (the device's worker for that queue): nothing
 * here locks. Packed virtqueues (VIRTIO_F_RING_PACKED) are not implemented. */
#ifndef KVMINI_VIRTIO_VIRTQUEUE_H
#define KVMINI_VIRTIO_VIRTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/device.h"
#include "core/guest_mem.h"
#include "util/err.h"

/* The largest queue the specification allows (a power of two that a 16-bit index can
 * tell apart from an empty ring). */
#define VIRTQUEUE_MAX_SIZE 32768u
/* The most segments one request may have (as IOV_MAX, and as QEMU's limit): a longer
 * chain breaks the queue. The spec lets a device set "a reasonable limit". */
#define VQ_MAX_SEGS 1024u

/* One buffer of a request, a checked range of guest RAM. */
struct vq_seg {
	uint64_t gpa;
	uint32_t len;  /* never 0 */
	bool writable; /* device-writable (VRING_DESC_F_WRITE) */
};

/* A popped descriptor chain: readable segments first, then writable ones. About 16 KiB:
 * a device keeps one per request in flight, not on a small stack. */
struct vq_request {
	uint16_t head; /* what virtqueue_push() returns to the driver */
	unsigned nseg;
	unsigned nreadable;    /* seg[0, nreadable) readable, seg[nreadable, nseg) writable */
	uint32_t readable_len; /* bytes; the whole chain is < 4 GiB, as the spec requires */
	uint32_t writable_len;
	struct vq_seg seg[VQ_MAX_SEGS];
};

struct virtqueue {
	const struct guest_mem *mem;
	unsigned max_size; /* what the device offers; the driver may choose a smaller size */
	unsigned size;	   /* power of two, 1..max_size */
	/* Guest-physical ring addresses, set by the transport while the queue is disabled. */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool event_idx;		   /* VIRTIO_RING_F_EVENT_IDX negotiated */
	bool indirect;		   /* VIRTIO_RING_F_INDIRECT_DESC negotiated */
	bool enabled;		   /* the driver enabled the queue and its rings checked out */
	bool broken;		   /* the driver broke the rules: the device needs a reset */
	uint16_t last_avail_idx;   /* next avail ring entry to pop (free-running) */
	uint16_t used_idx;	   /* next used ring entry to fill, = used->idx (free-running) */
	uint16_t shadow_avail_idx; /* avail->idx as last read (with acquire) */
	/* used->idx at the last virtqueue_should_notify() (EVENT_IDX's "old"). */
	uint16_t signalled_used;
	bool signalled_used_valid;
	struct errbuf why; /* one sentence once broken */
};

/* A disabled queue of max_size (a power of two <= VIRTQUEUE_MAX_SIZE) over mem.
 * Returns 0 or -EINVAL. */
int virtqueue_init(struct virtqueue *vq, const struct guest_mem *mem, unsigned max_size);
/* Back to the state after init (device reset): disabled, size max_size, no addresses, no
 * features, indices 0, not broken. */
void virtqueue_reset(struct virtqueue *vq);

/* Transport set-up, while the queue is disabled. set_size refuses (-EINVAL) a size that
 * is 0, not a power of two or above max_size; set_features takes the negotiated feature
 * bits (VIRTIO_RING_F_* bit numbers of the 64-bit feature word). */
int virtqueue_set_size(struct virtqueue *vq, unsigned size);
void virtqueue_set_addrs(struct virtqueue *vq, uint64_t desc, uint64_t avail, uint64_t used);
void virtqueue_set_features(struct virtqueue *vq, uint64_t features);
/* The driver enabled the queue: checks the rings' alignment (16/2/4) and that each lies in
 * guest RAM; returns 0, -EINVAL (alignment, size) or -EFAULT (not RAM) with a sentence. */
int virtqueue_enable(struct virtqueue *vq, struct errbuf *e);

/* Takes the next available chain: 1 and *req filled, 0 when none is available (or the
 * queue is disabled), -errno when the ring or the chain is malformed (the queue is then
 * broken: see above; a broken queue returns -EIO). */
int virtqueue_pop(struct virtqueue *vq, struct vq_request *req);
/* Gives the last n chains popped back to the ring, unused (the device pops them again
 * later): for a device that must let go of chains it took, such as a paused network
 * device's half-placed frame. n is at most what was popped since the last push. */
void virtqueue_unpop(struct virtqueue *vq, unsigned n);
/* Whether avail->idx has moved past what was popped (acquire). */
bool virtqueue_has_available(struct virtqueue *vq);

/* Copies up to len bytes from the readable part of req, starting offset bytes into it,
 * across segments; returns the bytes copied (short at the end of the readable part). */
size_t virtqueue_req_read(const struct virtqueue *vq, const struct vq_request *req, uint64_t offset,
			  void *dst, size_t len);
/* The same into the writable part (offset counts from its start). */
size_t virtqueue_req_write(const struct virtqueue *vq, const struct vq_request *req,
			   uint64_t offset, const void *src, size_t len);

/* Returns chain head to the driver with written_len bytes written into its writable part:
 * the used element, then (release) used->idx. 0, -EIO when broken or disabled, -EINVAL if
 * head >= size or nothing popped is outstanding (a device bug, the queue stays usable). */
int virtqueue_push(struct virtqueue *vq, uint16_t head, uint32_t written_len);
/* After one or more pushes: whether the driver wants a used-buffer notification
 * (VRING_AVAIL_F_NO_INTERRUPT, or EVENT_IDX's used_event crossed since the last call). */
bool virtqueue_should_notify(struct virtqueue *vq);
/* Asks the driver for (enable) or not for (disable) available-buffer notifications:
 * avail_event with EVENT_IDX, VRING_USED_F_NO_NOTIFY otherwise. Enabling returns whether
 * buffers became available meanwhile (after a full barrier): a device that goes to sleep
 * on true would miss them, so it pops again instead. Disabling returns false. */
bool virtqueue_set_notification(struct virtqueue *vq, bool enable);

/* A device must set NEEDS_RESET in its status. */
static inline bool virtqueue_needs_reset(const struct virtqueue *vq)
{
	return vq->broken;
}

/* The queue's position for a snapshot: size, addresses, features, enabled, broken and the
 * two indices (a device saves its queues after completing what is in flight). load
 * refuses (-EINVAL, queue unchanged) a blob that is short, has a bad size, indices more
 * than size apart, or an enabled queue whose rings are not in guest RAM. */
int virtqueue_save(const struct virtqueue *vq, struct state_writer *w);
int virtqueue_load(struct virtqueue *vq, struct state_reader *r);

#endif
