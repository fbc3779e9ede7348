#include "virtio/virtqueue.h"

#include <endian.h>
#include <errno.h>
#include <linux/virtio_ring.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Ring layout (virtio 1.2, 2.7): desc[size] of 16 bytes; avail = flags, idx, ring[size],
 * used_event; used = flags, idx, {id, len}[size], avail_event. All little-endian. */
#define DESC_SIZE      16u
#define AVAIL_IDX_OFF  2u
#define AVAIL_RING_OFF 4u
#define USED_IDX_OFF   2u
#define USED_RING_OFF  4u
#define USED_ELEM_SIZE 8u

static uint64_t desc_bytes(unsigned size)
{
	return (uint64_t)DESC_SIZE * size;
}

static uint64_t avail_bytes(unsigned size)
{
	return 6 + 2 * (uint64_t)size;
}

static uint64_t used_bytes(unsigned size)
{
	return 6 + (uint64_t)USED_ELEM_SIZE * size;
}

/* Every write the device makes into guest memory (used ring, notification fields, request
 * data) takes its pointer here, and nowhere else: the recording accessor marks the pages
 * dirty, so migration sees what devices wrote (KVM's dirty log only sees the guest). */
static void *vq_write_ptr(const struct virtqueue *vq, uint64_t gpa, uint64_t len)
{
	return guest_mem_write_ptr(vq->mem, gpa, len);
}

static const void *vq_read_ptr(const struct virtqueue *vq, uint64_t gpa, uint64_t len)
{
	return guest_mem_read_ptr(vq->mem, gpa, len);
}

/* Guest-written 16-bit fields are read once, atomically (the guest may change them at
 * any time). Enable checked that the rings are aligned in guest and host memory.*/
static int load_u16(const struct virtqueue *vq, uint64_t gpa, int order, uint16_t *v)
{
	const uint16_t *p = vq_read_ptr(vq, gpa, 2);
	if (!p)
		return -EFAULT;
	*v = le16toh(__atomic_load_n(p, order));
	return 0;
}

static int store_u16(const struct virtqueue *vq, uint64_t gpa, uint16_t v, int order)
{
	uint16_t *p = vq_write_ptr(vq, gpa, 2);
	if (!p)
		return -EFAULT;
	__atomic_store_n(p, htole16(v), order);
	return 0;
}

/* Copies a descriptor the guest may be rewriting. The compiler barrier after the copy
 * forbids the compiler to re-read guest memory in place of the local (a double fetch that
 * would let a check and a use see different values). An indirect table need not be
 * aligned, so this is a plain copy, not two 64-bit atomic loads. */
static void read_desc_once(struct vring_desc *d, const void *p)
{
	memcpy(d, p, sizeof(*d));
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
}

/* Marks the queue broken with one sentence and returns err. */
__attribute__((format(printf, 3, 4))) static int vq_fail(struct virtqueue *vq, int err,
							 const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(vq->why.msg, sizeof(vq->why.msg), fmt, ap);
	va_end(ap);
	vq->broken = true;
	return err;
}

int virtqueue_init(struct virtqueue *vq, const struct guest_mem *mem, unsigned max_size)
{
	if (!mem || max_size == 0 || max_size > VIRTQUEUE_MAX_SIZE || (max_size & (max_size - 1)))
		return -EINVAL;
	memset(vq, 0, sizeof(*vq));
	vq->mem = mem;
	vq->max_size = max_size;
	vq->size = max_size;
	return 0;
}

void virtqueue_reset(struct virtqueue *vq)
{
	const struct guest_mem *mem = vq->mem;
	unsigned max_size = vq->max_size;
	memset(vq, 0, sizeof(*vq));
	vq->mem = mem;
	vq->max_size = max_size;
	vq->size = max_size;
}

static bool size_ok(unsigned size, unsigned max_size)
{
	return size != 0 && size <= max_size && !(size & (size - 1));
}

int virtqueue_set_size(struct virtqueue *vq, unsigned size)
{
	if (!size_ok(size, vq->max_size))
		return -EINVAL;
	vq->size = size;
	return 0;
}

void virtqueue_set_addrs(struct virtqueue *vq, uint64_t desc, uint64_t avail, uint64_t used)
{
	vq->desc_gpa = desc;
	vq->avail_gpa = avail;
	vq->used_gpa = used;
}

void virtqueue_set_features(struct virtqueue *vq, uint64_t features)
{
	vq->event_idx = features & (1ull << VIRTIO_RING_F_EVENT_IDX);
	vq->indirect = features & (1ull << VIRTIO_RING_F_INDIRECT_DESC);
}

static int check_rings(const struct virtqueue *vq, struct errbuf *e)
{
	static const char *const names[3] = {"descriptor table", "available ring", "used ring"};
	const uint64_t gpa[3] = {vq->desc_gpa, vq->avail_gpa, vq->used_gpa};
	const uint64_t len[3] = {desc_bytes(vq->size), avail_bytes(vq->size), used_bytes(vq->size)};
	const uint64_t align[3] = {16, 2, 4};

	if (!size_ok(vq->size, vq->max_size))
		return errf(e, -EINVAL, "virtqueue size %u is not a power of two up to %u",
			    vq->size, vq->max_size);
	for (int i = 0; i < 3; i++) {
		if (gpa[i] & (align[i] - 1))
			return errf(e, -EINVAL, "virtqueue %s at 0x%llx is not %llu-byte aligned",
				    names[i], (unsigned long long)gpa[i],
				    (unsigned long long)align[i]);
		const void *p = gpa_to_hva(vq->mem, gpa[i], len[i]);
		if (!p)
			return errf(e, -EFAULT,
				    "virtqueue %s [0x%llx, +0x%llx) is not in guest RAM", names[i],
				    (unsigned long long)gpa[i], (unsigned long long)len[i]);
		/* The ring fields are accessed atomically, so the host side must be aligned
		 * too (guest RAM is mmap'ed, so it is unless a caller hands in odd memory). */
		if ((uintptr_t)p & (align[i] - 1))
			return errf(e, -EINVAL, "virtqueue %s is misaligned in host memory",
				    names[i]);
	}
	return 0;
}

int virtqueue_enable(struct virtqueue *vq, struct errbuf *e)
{
	int err = check_rings(vq, e);
	if (err)
		return err;
	vq->enabled = true;
	vq->shadow_avail_idx = vq->last_avail_idx;
	vq->signalled_used_valid = false;
	return 0;
}

/* Walks the chain at head into req. The descriptor table and each indirect table are
 * checked as a whole before their entries are read; every entry is copied once. */
static int walk_chain(struct virtqueue *vq, uint16_t head, struct vq_request *req)
{
	uint64_t table = vq->desc_gpa;
	uint32_t table_len = vq->size; /* entries */
	bool in_indirect = false;
	bool seen_writable = false;
	uint32_t total = 0;
	uint32_t steps = 0;
	uint32_t i = head;

	req->head = head;
	req->nseg = 0;
	req->nreadable = 0;
	req->readable_len = 0;
	req->writable_len = 0;

	for (;;) {
		struct vring_desc d;
		const void *p;

		/* A chain visits each entry of its table at most once: more steps than entries
		 * is a loop (or a chain longer than the queue, which the spec forbids). */
		if (++steps > table_len)
			return vq_fail(vq, -ELOOP,
				       "virtqueue chain at head %u runs past %u descriptors%s (a "
				       "loop?)",
				       head, table_len,
				       in_indirect ? " of its indirect table" : "");
		p = vq_read_ptr(vq, table + (uint64_t)i * DESC_SIZE, DESC_SIZE);
		if (!p)
			return vq_fail(vq, -EFAULT, "virtqueue descriptor %u is not in guest RAM",
				       i);
		read_desc_once(&d, p);
		uint64_t addr = le64toh(d.addr);
		uint32_t len = le32toh(d.len);
		uint16_t flags = le16toh(d.flags);
		uint16_t next = le16toh(d.next);

		if (flags & VRING_DESC_F_INDIRECT) {
			if (!vq->indirect)
				return vq_fail(vq, -EINVAL,
					       "virtqueue descriptor %u is indirect, but "
					       "VIRTIO_RING_F_INDIRECT_DESC was not negotiated",
					       i);
			if (in_indirect)
				return vq_fail(
				    vq, -EINVAL,
				    "virtqueue indirect table entry %u is itself indirect", i);
			if (flags & VRING_DESC_F_NEXT)
				return vq_fail(vq, -EINVAL,
					       "virtqueue descriptor %u is indirect and has NEXT",
					       i);
			if (len == 0 || len % DESC_SIZE)
				return vq_fail(
				    vq, -EINVAL,
				    "virtqueue indirect table length %u is not a non-zero "
				    "multiple of 16",
				    len);
			if (!vq_read_ptr(vq, addr, len))
				return vq_fail(vq, -EFAULT,
					       "virtqueue indirect table [0x%llx, +0x%x) is not in "
					       "guest RAM",
					       (unsigned long long)addr, len);
			/* The WRITE flag of the descriptor naming the table is ignored (spec). */
			table = addr;
			table_len = len / DESC_SIZE;
			in_indirect = true;
			steps = 0;
			i = 0;
			continue;
		}

		uint64_t last;
		if (len == 0)
			return vq_fail(vq, -EINVAL, "virtqueue descriptor %u has length 0", i);
		if (__builtin_add_overflow(addr, (uint64_t)len - 1, &last))
			return vq_fail(vq, -EFAULT,
				       "virtqueue descriptor %u [0x%llx, +0x%x) wraps around", i,
				       (unsigned long long)addr, len);
		if (!vq_read_ptr(vq, addr, len))
			return vq_fail(
			    vq, -EFAULT,
			    "virtqueue descriptor %u [0x%llx, +0x%x) is not in guest RAM", i,
			    (unsigned long long)addr, len);
		if (__builtin_add_overflow(total, len, &total))
			return vq_fail(vq, -EINVAL, "virtqueue chain at head %u is 4 GiB or longer",
				       head);
		bool writable = flags & VRING_DESC_F_WRITE;
		if (!writable && seen_writable)
			return vq_fail(vq, -EINVAL,
				       "virtqueue chain at head %u has a readable descriptor (%u) "
				       "after a writable one",
				       head, i);
		if (req->nseg == VQ_MAX_SEGS)
			return vq_fail(vq, -E2BIG,
				       "virtqueue chain at head %u has more than %u buffers", head,
				       VQ_MAX_SEGS);
		req->seg[req->nseg++] = (struct vq_seg){addr, len, writable};
		if (writable) {
			seen_writable = true;
			req->writable_len += len;
		} else {
			req->nreadable++;
			req->readable_len += len;
		}

		if (!(flags & VRING_DESC_F_NEXT))
			return 0;
		if (next >= table_len)
			return vq_fail(vq, -EINVAL,
				       "virtqueue descriptor %u names next %u, beyond %u entries",
				       i, next, table_len);
		i = next;
	}
}

/* Refreshes shadow_avail_idx from the ring (acquire: the entries and descriptors it
 * exposes are read after it). */
static int read_avail_idx(struct virtqueue *vq)
{
	uint16_t idx;
	if (load_u16(vq, vq->avail_gpa + AVAIL_IDX_OFF, __ATOMIC_ACQUIRE, &idx))
		return vq_fail(vq, -EFAULT, "virtqueue available ring is not in guest RAM");
	if ((uint16_t)(idx - vq->last_avail_idx) > vq->size)
		return vq_fail(vq, -EINVAL,
			       "virtqueue avail->idx %u is more than the queue size %u ahead of "
			       "the device's %u",
			       idx, vq->size, vq->last_avail_idx);
	vq->shadow_avail_idx = idx;
	return 0;
}

int virtqueue_pop(struct virtqueue *vq, struct vq_request *req)
{
	int err;

	if (vq->broken)
		return -EIO;
	if (!vq->enabled)
		return 0;
	if (vq->shadow_avail_idx == vq->last_avail_idx) {
		if ((err = read_avail_idx(vq)))
			return err;
		if (vq->shadow_avail_idx == vq->last_avail_idx)
			return 0;
	}

	uint16_t slot = vq->last_avail_idx & (vq->size - 1);
	uint16_t head;
	if (load_u16(vq, vq->avail_gpa + AVAIL_RING_OFF + 2u * slot, __ATOMIC_RELAXED, &head))
		return vq_fail(vq, -EFAULT, "virtqueue available ring is not in guest RAM");
	if (head >= vq->size)
		return vq_fail(vq, -EINVAL,
			       "virtqueue available ring entry %u names head %u, beyond the queue "
			       "size %u",
			       slot, head, vq->size);
	if ((err = walk_chain(vq, head, req)))
		return err;
	vq->last_avail_idx++;
	return 1;
}

bool virtqueue_has_available(struct virtqueue *vq)
{
	uint16_t idx;
	if (vq->broken || !vq->enabled)
		return false;
	if (vq->shadow_avail_idx != vq->last_avail_idx)
		return true;
	if (load_u16(vq, vq->avail_gpa + AVAIL_IDX_OFF, __ATOMIC_ACQUIRE, &idx))
		return false;
	return idx != vq->last_avail_idx;
}

/* Copies between buf and the segments [first, end) of req from offset on: to guest memory
 * when to_guest. Returns the bytes copied. */
static size_t req_copy(const struct virtqueue *vq, const struct vq_request *req, unsigned first,
		       unsigned end, uint64_t offset, void *buf, size_t len, bool to_guest)
{
	size_t done = 0;
	for (unsigned s = first; s < end && done < len; s++) {
		const struct vq_seg *seg = &req->seg[s];
		if (offset >= seg->len) {
			offset -= seg->len;
			continue;
		}
		uint64_t n = seg->len - offset;
		if (n > len - done)
			n = len - done;
		uint64_t gpa = seg->gpa + offset; /* no overflow: checked at pop */
		if (to_guest) {
			void *p = vq_write_ptr(vq, gpa, n);
			if (!p)
				break;
			memcpy(p, (const uint8_t *)buf + done, n);
		} else {
			const void *p = vq_read_ptr(vq, gpa, n);
			if (!p)
				break;
			memcpy((uint8_t *)buf + done, p, n);
		}
		done += n;
		offset = 0;
	}
	return done;
}

size_t virtqueue_req_read(const struct virtqueue *vq, const struct vq_request *req, uint64_t offset,
			  void *dst, size_t len)
{
	return req_copy(vq, req, 0, req->nreadable, offset, dst, len, false);
}

size_t virtqueue_req_write(const struct virtqueue *vq, const struct vq_request *req,
			   uint64_t offset, const void *src, size_t len)
{
	return req_copy(vq, req, req->nreadable, req->nseg, offset, (void *)src, len, true);
}

int virtqueue_push(struct virtqueue *vq, uint16_t head, uint32_t written_len)
{
	if (vq->broken || !vq->enabled)
		return -EIO;
	if (head >= vq->size || vq->used_idx == vq->last_avail_idx)
		return -EINVAL;

	uint16_t slot = vq->used_idx & (vq->size - 1);
	uint32_t *elem =
	    vq_write_ptr(vq, vq->used_gpa + USED_RING_OFF + USED_ELEM_SIZE * slot, USED_ELEM_SIZE);
	if (!elem)
		return vq_fail(vq, -EFAULT, "virtqueue used ring is not in guest RAM");
	__atomic_store_n(&elem[0], htole32(head), __ATOMIC_RELAXED);
	__atomic_store_n(&elem[1], htole32(written_len), __ATOMIC_RELAXED);
	/* Release: the element (and the data written into the buffers) before the index. */
	if (store_u16(vq, vq->used_gpa + USED_IDX_OFF, (uint16_t)(vq->used_idx + 1),
		      __ATOMIC_RELEASE))
		return vq_fail(vq, -EFAULT, "virtqueue used ring is not in guest RAM");
	vq->used_idx++;
	return 0;
}

bool virtqueue_should_notify(struct virtqueue *vq)
{
	uint16_t v;

	if (!vq->enabled)
		return false;
	/* The used->idx store must be visible before the driver's suppression field is read,
	 * or the driver, re-checking used->idx after enabling interrupts, and we could each
	 * miss the other (store-load ordering needs a full barrier). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx) {
		if (load_u16(vq, vq->avail_gpa, __ATOMIC_RELAXED, &v))
			return true;
		return !(v & VRING_AVAIL_F_NO_INTERRUPT);
	}
	uint16_t old = vq->signalled_used;
	bool valid = vq->signalled_used_valid;
	vq->signalled_used = vq->used_idx;
	vq->signalled_used_valid = true;
	if (!valid)
		return true;
	if (load_u16(vq, vq->avail_gpa + AVAIL_RING_OFF + 2u * vq->size, __ATOMIC_RELAXED, &v))
		return true;
	return vring_need_event(v, vq->used_idx, old);
}

bool virtqueue_set_notification(struct virtqueue *vq, bool enable)
{
	int err;

	if (vq->broken || !vq->enabled)
		return false;
	if (vq->event_idx) {
		/* Enabled: notify when you write the entry we pop next. Disabled: an event
		 * index just behind ours, which the driver's next additions never cross. */
		uint16_t ev = enable ? vq->last_avail_idx : (uint16_t)(vq->last_avail_idx - 1);
		err = store_u16(vq, vq->used_gpa + USED_RING_OFF + USED_ELEM_SIZE * vq->size, ev,
				__ATOMIC_RELAXED);
	} else {
		err = store_u16(vq, vq->used_gpa, enable ? 0 : VRING_USED_F_NO_NOTIFY,
				__ATOMIC_RELAXED);
	}
	if (err) {
		vq_fail(vq, err, "virtqueue used ring is not in guest RAM");
		return false;
	}
	if (!enable)
		return false;
	/* Our store before the driver's next avail->idx is read back (store-load). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return virtqueue_has_available(vq);
}

int virtqueue_save(const struct virtqueue *vq, struct state_writer *w)
{
	state_put_u32(w, vq->size);
	state_put_u64(w, vq->desc_gpa);
	state_put_u64(w, vq->avail_gpa);
	state_put_u64(w, vq->used_gpa);
	state_put_u8(w, (vq->event_idx ? 1 : 0) | (vq->indirect ? 2 : 0));
	state_put_u8(w, (vq->enabled ? 1 : 0) | (vq->broken ? 2 : 0));
	state_put_u16(w, vq->last_avail_idx);
	state_put_u16(w, vq->used_idx);
	return w->err;
}

int virtqueue_load(struct virtqueue *vq, struct state_reader *r)
{
	struct virtqueue t;

	if (virtqueue_init(&t, vq->mem, vq->max_size))
		return -EINVAL;
	t.size = state_get_u32(r);
	t.desc_gpa = state_get_u64(r);
	t.avail_gpa = state_get_u64(r);
	t.used_gpa = state_get_u64(r);
	uint8_t features = state_get_u8(r);
	uint8_t flags = state_get_u8(r);
	t.last_avail_idx = state_get_u16(r);
	t.used_idx = state_get_u16(r);
	if (r->err || (features & ~3u) || (flags & ~3u) || !size_ok(t.size, t.max_size) ||
	    (uint16_t)(t.last_avail_idx - t.used_idx) > t.size)
		return -EINVAL;
	t.event_idx = features & 1;
	t.indirect = features & 2;
	t.enabled = flags & 1;
	t.broken = flags & 2;
	if (t.enabled && check_rings(&t, NULL))
		return -EINVAL;
	if (t.broken)
		snprintf(t.why.msg, sizeof(t.why.msg), "virtqueue was broken when it was saved");
	t.shadow_avail_idx = t.last_avail_idx;
	*vq = t;
	return 0;
}

void virtqueue_unpop(struct virtqueue *vq, unsigned n)
{
	vq->last_avail_idx = (uint16_t)(vq->last_avail_idx - n);
}
