/* libFuzzer target for the split-virtqueue core: arbitrary guest memory, ring addresses,
 * queue size and features, then what a device does with them (pop every chain, read its
 * readable part, fill its writable part, push it, ask about notifications, toggle kick
 * suppression, save and load the position). The sanitizers catch memory errors; the
 * checks below abort on a broken invariant of the API.
 *
 * Input: [0] log2 of the queue size (low 4 bits), [1] bit 0 INDIRECT_DESC, bit 1
 * EVENT_IDX, bit 2 toggle notifications between pops, [2..7] the descriptor, avail and
 * used ring offsets (u16 little-endian) into RAM at guest address 0, [8] the number k (low
 * 4 bits) of guest writes that follow as k x {u16 offset, u16 value}; the rest is the start
 * of that RAM (64 KiB, zero beyond the input). The guest writes land one at a time between
 * the device's steps, as a driver adding buffers (or rewriting rings) while the device
 * works. A second 4 KiB region at 1 MiB gives chains a second place to point. Build and
 * run: see fuzz/virtqueue.mk. */
#include <errno.h>
#include <linux/virtio_ring.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/guest_mem.h"
#include "virtio/virtqueue.h"

#define RAM_SIZE  0x10000u
#define HIGH_GPA  0x100000u
#define HIGH_SIZE 0x1000u
#define MAX_POPS  64

#define check(c)                 \
	do {                     \
		if (!(c))        \
			abort(); \
	} while (0)

static uint8_t ram[RAM_SIZE] __attribute__((aligned(4096)));
static uint8_t high[HIGH_SIZE] __attribute__((aligned(4096)));
static uint8_t scratch[RAM_SIZE + HIGH_SIZE];
static struct vq_request req;

static void check_request(const struct guest_mem *mem, const struct virtqueue *vq)
{
	uint64_t rlen = 0, wlen = 0;
	check(req.head < vq->size);
	check(req.nseg >= 1 && req.nseg <= VQ_MAX_SEGS && req.nreadable <= req.nseg);
	for (unsigned i = 0; i < req.nseg; i++) {
		const struct vq_seg *s = &req.seg[i];
		check(s->len > 0);
		check(gpa_to_hva(mem, s->gpa, s->len) != NULL);
		check(s->writable == (i >= req.nreadable));
		if (s->writable)
			wlen += s->len;
		else
			rlen += s->len;
	}
	check(rlen == req.readable_len && wlen == req.writable_len);
	check(rlen + wlen <= UINT32_MAX);
}

/* The guest stores a 16-bit value into its RAM, as a driver does, past every accessor. */
static void guest_write(const uint8_t *writes, unsigned j)
{
	unsigned off = writes[4 * j] | writes[4 * j + 1] << 8;
	if (off + 2 <= RAM_SIZE)
		memcpy(ram + off, writes + 4 * j + 2, 2);
}

static void save_load_save(struct virtqueue *vq, const struct guest_mem *mem)
{
	struct state_writer w1 = {0}, w2 = {0};
	struct virtqueue copy;
	check(virtqueue_save(vq, &w1) == 0);
	check(virtqueue_init(&copy, mem, VIRTQUEUE_MAX_SIZE) == 0);
	struct state_reader r = {.buf = w1.buf, .len = w1.len};
	check(virtqueue_load(&copy, &r) == 0);
	check(state_reader_finish(&r) == 0);
	check(virtqueue_save(&copy, &w2) == 0);
	check(w1.len == w2.len && memcmp(w1.buf, w2.buf, w1.len) == 0);
	/* A truncated blob is refused. */
	r = (struct state_reader){.buf = w1.buf, .len = w1.len - 1};
	check(virtqueue_load(&copy, &r) != 0);
	state_writer_free(&w1);
	state_writer_free(&w2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct guest_mem mem;
	struct virtqueue vq;
	struct errbuf e;

	if (size < 9)
		return 0;
	unsigned nwrites = data[8] & 15, next_write = 0;
	const uint8_t *writes = data + 9;
	size_t hdr = 9 + 4 * nwrites;
	if (size < hdr)
		return 0;
	memset(&mem, 0, sizeof(mem));
	memset(ram, 0, sizeof(ram));
	memset(high, 0, sizeof(high));
	size_t n = size - hdr < RAM_SIZE ? size - hdr : RAM_SIZE;
	memcpy(ram, data + hdr, n);
	check(guest_mem_add_region(&mem, 0, RAM_SIZE, ram) == 0);
	check(guest_mem_add_region(&mem, HIGH_GPA, HIGH_SIZE, high) == 0);

	check(virtqueue_init(&vq, &mem, VIRTQUEUE_MAX_SIZE) == 0);
	check(virtqueue_set_size(&vq, 1u << (data[0] & 15)) == 0);
	uint64_t features = 0;
	if (data[1] & 1)
		features |= 1ull << VIRTIO_RING_F_INDIRECT_DESC;
	if (data[1] & 2)
		features |= 1ull << VIRTIO_RING_F_EVENT_IDX;
	virtqueue_set_features(&vq, features);
	virtqueue_set_addrs(&vq, data[2] | data[3] << 8, data[4] | data[5] << 8,
			    data[6] | data[7] << 8);
	if (virtqueue_enable(&vq, &e) != 0) {
		check(!vq.enabled);
		check(virtqueue_pop(&vq, &req) == 0);
		return 0;
	}

	bool notify_on = true;
	for (int i = 0; i < MAX_POPS; i++) {
		int r = virtqueue_pop(&vq, &req);
		if (r < 0) {
			check(virtqueue_needs_reset(&vq) && vq.why.msg[0]);
			check(virtqueue_pop(&vq, &req) == -EIO);
			check(virtqueue_push(&vq, 0, 0) == -EIO);
			break;
		}
		if (r == 0) {
			if (next_write == nwrites)
				break;
			guest_write(writes, next_write++);
			continue;
		}
		check_request(&mem, &vq);
		/* Reads from offset i: all that is left of the readable part, up to the buffer. */
		uint64_t left = req.readable_len > (unsigned)i ? req.readable_len - i : 0;
		size_t got = virtqueue_req_read(&vq, &req, i, scratch, sizeof(scratch));
		check(got == (left < sizeof(scratch) ? left : sizeof(scratch)));
		memset(scratch, 0xa5, sizeof(scratch));
		size_t put = virtqueue_req_write(
		    &vq, &req, 0, scratch,
		    req.writable_len < sizeof(scratch) ? req.writable_len : sizeof(scratch));
		check(put ==
		      (req.writable_len < sizeof(scratch) ? req.writable_len : sizeof(scratch)));
		check(virtqueue_push(&vq, req.head, (uint32_t)put) == 0);
		(void)virtqueue_should_notify(&vq);
		if (data[1] & 4) {
			notify_on = !notify_on;
			(void)virtqueue_set_notification(&vq, notify_on);
		}
		if (next_write < nwrites)
			guest_write(writes, next_write++);
	}
	save_load_save(&vq, &mem);
	return 0;
}
