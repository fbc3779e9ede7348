/* The split-virtqueue core against fake guest memory: the test plays the driver (writes
 * descriptors and the available ring as Linux's virtio_ring would) and checks what the
 * device side pops, copies, pushes and signals, and that every malformed chain breaks the
 * queue without a crash. No /dev/kvm. */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "virtio/virtqueue.h"

#define RAM_GPA	  0x100000ull
#define RAM_SIZE  (1u << 20)
#define DESC_GPA  (RAM_GPA + 0x0000)
#define AVAIL_GPA (RAM_GPA + 0x8000)
#define USED_GPA  (RAM_GPA + 0x9000)
#define BUF_GPA	  (RAM_GPA + 0x20000) /* data buffers from here on */
#define TABLE_GPA (RAM_GPA + 0x80000) /* indirect tables */

static const uint64_t FEAT_INDIRECT = 1ull << VIRTIO_RING_F_INDIRECT_DESC;
static const uint64_t FEAT_EVENT_IDX = 1ull << VIRTIO_RING_F_EVENT_IDX;

/* The fake guest: RAM, the queue, and the driver's own avail index. */
struct fake {
	uint8_t *ram;
	struct guest_mem mem;
	struct virtqueue vq;
	struct vq_request req;
	uint16_t avail_idx;
	unsigned size;
};

static struct fake *fake_new(unsigned size, uint64_t features)
{
	struct fake *f = calloc(1, sizeof(*f));
	cr_assert(f);
	f->ram = aligned_alloc(4096, RAM_SIZE);
	cr_assert(f->ram);
	memset(f->ram, 0, RAM_SIZE);
	cr_assert_eq(guest_mem_add_region(&f->mem, RAM_GPA, RAM_SIZE, f->ram), 0);
	cr_assert_eq(virtqueue_init(&f->vq, &f->mem, 256), 0);
	cr_assert_eq(virtqueue_set_size(&f->vq, size), 0);
	virtqueue_set_addrs(&f->vq, DESC_GPA, AVAIL_GPA, USED_GPA);
	virtqueue_set_features(&f->vq, features);
	struct errbuf e = {{0}};
	cr_assert_eq(virtqueue_enable(&f->vq, &e), 0, "%s", e.msg);
	f->size = size;
	return f;
}

static void fake_free(struct fake *f)
{
	free(f->ram);
	free(f);
}

static void *host(struct fake *f, uint64_t gpa)
{
	cr_assert(gpa >= RAM_GPA && gpa < RAM_GPA + RAM_SIZE);
	return f->ram + (gpa - RAM_GPA);
}

static void put_desc_at(struct fake *f, uint64_t table, unsigned i, uint64_t addr, uint32_t len,
			uint16_t flags, uint16_t next)
{
	struct vring_desc d = {htole64(addr), htole32(len), htole16(flags), htole16(next)};
	memcpy(host(f, table + 16ull * i), &d, sizeof(d));
}

static void put_desc(struct fake *f, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	put_desc_at(f, DESC_GPA, i, addr, len, flags, next);
}

static void put_u16(struct fake *f, uint64_t gpa, uint16_t v)
{
	v = htole16(v);
	memcpy(host(f, gpa), &v, 2);
}

static uint16_t get_u16(struct fake *f, uint64_t gpa)
{
	uint16_t v;
	memcpy(&v, host(f, gpa), 2);
	return le16toh(v);
}

static uint32_t get_u32(struct fake *f, uint64_t gpa)
{
	uint32_t v;
	memcpy(&v, host(f, gpa), 4);
	return le32toh(v);
}

/* The driver makes head available. */
static void offer(struct fake *f, uint16_t head)
{
	put_u16(f, AVAIL_GPA + 4 + 2 * (f->avail_idx % f->size), head);
	f->avail_idx++;
	put_u16(f, AVAIL_GPA + 2, f->avail_idx);
}

static uint64_t used_event_gpa(struct fake *f)
{
	return AVAIL_GPA + 4 + 2 * f->size;
}

static uint64_t avail_event_gpa(struct fake *f)
{
	return USED_GPA + 4 + 8 * f->size;
}

/* Pops and expects a malformed chain: an error, a broken queue, a reason that names the
 * fault (contains why), and every later call refused without touching the rings. */
static void expect_broken(struct fake *f, const char *what, const char *why)
{
	int r = virtqueue_pop(&f->vq, &f->req);
	cr_assert_lt(r, 0, "%s: pop returns an error (got %d)", what, r);
	cr_assert(virtqueue_needs_reset(&f->vq), "%s: the device needs a reset", what);
	cr_assert(strstr(f->vq.why.msg, why), "%s: the reason names it: %s", what, f->vq.why.msg);
	cr_assert_eq(virtqueue_pop(&f->vq, &f->req), -EIO, "%s: a broken queue stays broken", what);
	cr_assert_eq(virtqueue_push(&f->vq, 0, 0), -EIO);
	uint16_t used = get_u16(f, USED_GPA + 2);
	cr_assert_eq(used, 0, "%s: nothing was returned to the driver", what);
}

/* ---- valid chains ---- */

Test(virtqueue, direct_chain_pops_copies_and_pushes)
{
	struct fake *f = fake_new(8, 0);
	/* header (readable 4) -> payload (readable 6) -> status (writable 3) -> data (writable 5)
	 */
	memcpy(host(f, BUF_GPA), "HEAD", 4);
	memcpy(host(f, BUF_GPA + 0x100), "payload", 6);
	put_desc(f, 3, BUF_GPA, 4, VRING_DESC_F_NEXT, 5);
	put_desc(f, 5, BUF_GPA + 0x100, 6, VRING_DESC_F_NEXT, 1);
	put_desc(f, 1, BUF_GPA + 0x200, 3, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 7);
	put_desc(f, 7, BUF_GPA + 0x300, 5, VRING_DESC_F_WRITE, 0);
	cr_assert_eq(virtqueue_pop(&f->vq, &f->req), 0, "nothing offered yet");
	cr_assert(!virtqueue_has_available(&f->vq));
	offer(f, 3);
	cr_assert(virtqueue_has_available(&f->vq));

	cr_assert_eq(virtqueue_pop(&f->vq, &f->req), 1);
	struct vq_request *q = &f->req;
	cr_assert_eq(q->head, 3);
	cr_assert_eq(q->nseg, 4);
	cr_assert_eq(q->nreadable, 2);
	cr_assert_eq(q->readable_len, 10);
	cr_assert_eq(q->writable_len, 8);
	cr_assert_eq(q->seg[1].gpa, BUF_GPA + 0x100);
	cr_assert(!q->seg[1].writable && q->seg[2].writable);

	char buf[16] = {0};
	cr_assert_eq(virtqueue_req_read(&f->vq, q, 2, buf, sizeof(buf)), 8,
		     "a read stops at the end of the readable part");
	cr_assert_eq(memcmp(buf, "ADpaylo", 7), 0, "and crosses segments: %.8s", buf);
	cr_assert_eq(virtqueue_req_read(&f->vq, q, 10, buf, 1), 0, "offset at the end");
	cr_assert_eq(virtqueue_req_write(&f->vq, q, 1, "abcdefgh", 7), 7);
	cr_assert_eq(memcmp(host(f, BUF_GPA + 0x201), "ab", 2), 0);
	cr_assert_eq(memcmp(host(f, BUF_GPA + 0x300), "cdefg", 5), 0, "writes cross segments");
	cr_assert_eq(virtqueue_req_write(&f->vq, q, 7, "xyz", 3), 1, "bounded by the part");
	cr_assert_eq(*(char *)host(f, BUF_GPA + 0x304), 'x');
	cr_assert_eq(*(char *)host(f, BUF_GPA + 0x305), 0, "nothing past the last segment");

	cr_assert_eq(virtqueue_pop(&f->vq, &f->req), 0, "the ring is empty again");
	cr_assert_eq(virtqueue_push(&f->vq, 3, 8), 0);
	cr_assert_eq(get_u16(f, USED_GPA + 2), 1, "used->idx advanced");
	cr_assert_eq(get_u32(f, USED_GPA + 4), 3, "used element id is the head");
	cr_assert_eq(get_u32(f, USED_GPA + 8), 8, "and len the bytes written");
	cr_assert(!virtqueue_needs_reset(&f->vq));
	fake_free(f);
}

Test(virtqueue, indirect_table)
{
	struct fake *f = fake_new(4, FEAT_INDIRECT);
	put_desc_at(f, TABLE_GPA, 0, BUF_GPA, 16, VRING_DESC_F_NEXT, 2);
	put_desc_at(f, TABLE_GPA, 2, BUF_GPA + 0x100, 512, VRING_DESC_F_NEXT, 1);
	put_desc_at(f, TABLE_GPA, 1, BUF_GPA + 0x400, 1, VRING_DESC_F_WRITE, 0);
	/* The WRITE flag on the descriptor naming a table is ignored, as the spec says. */
	put_desc(f, 2, TABLE_GPA, 3 * 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE, 0);
	offer(f, 2);
	cr_assert_eq(virtqueue_pop(&f->vq, &f->req), 1, "%s", f->vq.why.msg);
	cr_assert_eq(f->req.head, 2);
	cr_assert_eq(f->req.nseg, 3);
	cr_assert_eq(f->req.nreadable, 2);
	cr_assert_eq(f->req.readable_len, 528);
	cr_assert_eq(f->req.seg[2].gpa, BUF_GPA + 0x400);
	cr_assert(f->req.seg[2].writable);
	/* More segments than the queue has entries is fine through a table. */
	for (unsigned i = 0; i < 40; i++)
		put_desc_at(f, TABLE_GPA + 0x1000, i, BUF_GPA + i, 1,
			    i < 39 ? VRING_DESC_F_NEXT : 0, i + 1);
	put_desc(f, 0, TABLE_GPA + 0x1000, 40 * 16, VRING_DESC_F_INDIRECT, 0);
	offer(f, 0);
	cr_assert_eq(virtqueue_pop(&f->vq, &f->req), 1, "%s", f->vq.why.msg);
	cr_assert_eq(f->req.nseg, 40);
	fake_free(f);
}

Test(virtqueue, direct_descriptors_then_one_indirect)
{
	struct fake *f = fake_new(8, FEAT_INDIRECT);
	put_desc(f, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 4);
	put_desc(f, 4, TABLE_GPA, 2 * 16, VRING_DESC_F_INDIRECT, 0);
	put_desc_at(f, TABLE_GPA, 0, BUF_GPA + 0x100, 4, VRING_DESC_F_NEXT, 1);
	put_desc_at(f, TABLE_GPA, 1, BUF_GPA + 0x200, 2, VRING_DESC_F_WRITE, 0);
	offer(f, 0);
	cr_assert_eq(virtqueue_pop(&f->vq, &f->req), 1, "%s", f->vq.why.msg);
	cr_assert_eq(f->req.nseg, 3);
	cr_assert_eq(f->req.seg[0].gpa, BUF_GPA);
	cr_assert_eq(f->req.seg[1].gpa, BUF_GPA + 0x100);
	cr_assert_eq(f->req.nreadable, 2);
	cr_assert_eq(f->req.writable_len, 2);
	fake_free(f);
}

Test(virtqueue, several_requests_in_order_and_completed_out_of_order)
{
	struct fake *f = fake_new(4, 0);
	for (unsigned i = 0; i < 4; i++) {
		put_desc(f, i, BUF_GPA + 0x100 * i, 0x10, VRING_DESC_F_WRITE, 0);
		offer(f, (uint16_t)i);
	}
	for (unsigned i = 0; i < 4; i++) {
		cr_assert_eq(virtqueue_pop(&f->vq, &f->req), 1);
		cr_assert_eq(f->req.head, i);
	}
	cr_assert_eq(virtqueue_pop(&f->vq, &f->req), 0);
	cr_assert_eq(virtqueue_push(&f->vq, 2, 1), 0);
	cr_assert_eq(virtqueue_push(&f->vq, 0, 2), 0);
	cr_assert_eq(get_u32(f, USED_GPA + 4), 2);
	cr_assert_eq(get_u32(f, USED_GPA + 12), 0);
	cr_assert_eq(get_u32(f, USED_GPA + 16), 2);
	cr_assert_eq(get_u16(f, USED_GPA + 2), 2);
	fake_free(f);
}

Test(virtqueue, a_popped_request_is_a_copy)
{
	/* The guest rewrites the descriptor after the pop: the request keeps what was checked. */
	struct fake *f = fake_new(4, 0);
	put_desc(f, 0, BUF_GPA, 8, 0, 0);
	offer(f, 0);
	cr_assert_eq(virtqueue_pop(&f->vq, &f->req), 1);
	put_desc(f, 0, RAM_GPA + RAM_SIZE - 4, 0x100000, VRING_DESC_F_WRITE, 0);
	put_u16(f, AVAIL_GPA + 4, 3);
	char buf[64];
	cr_assert_eq(virtqueue_req_read(&f->vq, &f->req, 0, buf, sizeof(buf)), 8);
	cr_assert_eq(virtqueue_req_write(&f->vq, &f->req, 0, buf, sizeof(buf)), 0,
		     "a readable-only request has nothing to write into");
	cr_assert_eq(virtqueue_push(&f->vq, f->req.head, 0), 0);
	cr_assert_eq(get_u32(f, USED_GPA + 4), 0, "the head that was popped");
	fake_free(f);
}

/* ---- malformed chains and rings ---- */

Test(virtqueue, descriptor_loop_breaks_the_queue)
{
	struct fake *f = fake_new(8, 0);
	put_desc(f, 0, BUF_GPA, 4, VRING_DESC_F_NEXT, 1);
	put_desc(f, 1, BUF_GPA, 4, VRING_DESC_F_NEXT, 0);
	offer(f, 0);
	expect_broken(f, "loop", "a loop");
	fake_free(f);
}

Test(virtqueue, chain_longer_than_the_queue_breaks_it)
{
	/* Every entry of a 4-entry table chained, the last back to the first: a fifth step. */
	struct fake *f = fake_new(4, 0);
	for (unsigned i = 0; i < 4; i++)
		put_desc(f, i, BUF_GPA, 1, VRING_DESC_F_NEXT, (i + 1) % 4);
	offer(f, 2);
	expect_broken(f, "overlong chain", "runs past 4 descriptors");
	fake_free(f);
}

Test(virtqueue, loop_inside_an_indirect_table)
{
	struct fake *f = fake_new(4, FEAT_INDIRECT);
	put_desc_at(f, TABLE_GPA, 0, BUF_GPA, 1, VRING_DESC_F_NEXT, 1);
	put_desc_at(f, TABLE_GPA, 1, BUF_GPA, 1, VRING_DESC_F_NEXT, 1);
	put_desc(f, 0, TABLE_GPA, 2 * 16, VRING_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_broken(f, "indirect loop", "of its indirect table");
	fake_free(f);
}

Test(virtqueue, more_segments_than_supported)
{
	struct fake *f = fake_new(4, FEAT_INDIRECT);
	unsigned n = VQ_MAX_SEGS + 1;
	for (unsigned i = 0; i < n; i++)
		put_desc_at(f, TABLE_GPA, i, BUF_GPA, 1, i + 1 < n ? VRING_DESC_F_NEXT : 0, i + 1);
	put_desc(f, 0, TABLE_GPA, n * 16, VRING_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_broken(f, "too many segments", "more than 1024 buffers");
	fake_free(f);
}

Test(virtqueue, address_outside_ram)
{
	struct fake *f = fake_new(4, 0);
	put_desc(f, 0, RAM_GPA + RAM_SIZE - 8, 16, 0, 0); /* runs 8 bytes past the end */
	offer(f, 0);
	expect_broken(f, "past the end of RAM", "not in guest RAM");
	fake_free(f);

	f = fake_new(4, 0);
	put_desc(f, 0, 0x1000, 16, 0, 0); /* below RAM */
	offer(f, 0);
	expect_broken(f, "below RAM", "not in guest RAM");
	fake_free(f);
}

Test(virtqueue, address_plus_length_overflows)
{
	struct fake *f = fake_new(4, 0);
	put_desc(f, 0, UINT64_MAX - 0x10, 0x100, 0, 0);
	offer(f, 0);
	expect_broken(f, "addr + len wraps", "wraps around");
	fake_free(f);
}

Test(virtqueue, chain_of_4_gib_or_more)
{
	/* Two 2 GiB buffers in a 4 GiB region that is reserved, never touched. */
	struct fake *f = fake_new(4, 0);
	uint64_t big = 4ull << 30;
	void *p = mmap(NULL, big, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		cr_skip_test("cannot reserve 4 GiB of address space for the fake region");
	cr_assert_eq(guest_mem_add_region(&f->mem, 1ull << 32, big, p), 0);
	put_desc(f, 0, 1ull << 32, 0x80000000u, VRING_DESC_F_NEXT, 1);
	put_desc(f, 1, (1ull << 32) + 0x80000000u, 0x80000000u, 0, 0);
	offer(f, 0);
	expect_broken(f, "4 GiB chain", "4 GiB or longer");
	munmap(p, big);
	fake_free(f);
}

Test(virtqueue, zero_length_descriptor)
{
	struct fake *f = fake_new(4, 0);
	put_desc(f, 0, BUF_GPA, 0, 0, 0);
	offer(f, 0);
	expect_broken(f, "zero length", "length 0");
	fake_free(f);
}

Test(virtqueue, readable_after_writable)
{
	struct fake *f = fake_new(4, FEAT_INDIRECT);
	put_desc(f, 0, BUF_GPA, 4, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	put_desc(f, 1, BUF_GPA, 4, 0, 0);
	offer(f, 0);
	expect_broken(f, "readable after writable", "after a writable one");
	fake_free(f);

	/* The same across the direct part and a table. */
	f = fake_new(4, FEAT_INDIRECT);
	put_desc(f, 0, BUF_GPA, 4, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	put_desc(f, 1, TABLE_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	put_desc_at(f, TABLE_GPA, 0, BUF_GPA, 4, 0, 0);
	offer(f, 0);
	expect_broken(f, "readable in a table after writable", "after a writable one");
	fake_free(f);
}

Test(virtqueue, indirect_inside_indirect)
{
	struct fake *f = fake_new(4, FEAT_INDIRECT);
	put_desc_at(f, TABLE_GPA + 0x100, 0, BUF_GPA, 4, 0, 0);
	put_desc_at(f, TABLE_GPA, 0, TABLE_GPA + 0x100, 16, VRING_DESC_F_INDIRECT, 0);
	put_desc(f, 0, TABLE_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_broken(f, "nested table", "itself indirect");
	fake_free(f);
}

Test(virtqueue, indirect_table_of_bad_length)
{
	uint32_t lens[] = {0, 8, 24, 17};
	for (unsigned k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		struct fake *f = fake_new(4, FEAT_INDIRECT);
		put_desc_at(f, TABLE_GPA, 0, BUF_GPA, 4, 0, 0);
		put_desc(f, 0, TABLE_GPA, lens[k], VRING_DESC_F_INDIRECT, 0);
		offer(f, 0);
		expect_broken(f, "bad table length", "not a non-zero multiple of 16");
		fake_free(f);
	}
	/* A table that runs out of RAM. */
	struct fake *f = fake_new(4, FEAT_INDIRECT);
	put_desc(f, 0, RAM_GPA + RAM_SIZE - 16, 32, VRING_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_broken(f, "table past RAM", "indirect table [");
	fake_free(f);
}

Test(virtqueue, indirect_with_next_or_without_the_feature)
{
	struct fake *f = fake_new(4, FEAT_INDIRECT);
	put_desc_at(f, TABLE_GPA, 0, BUF_GPA, 4, 0, 0);
	put_desc(f, 0, TABLE_GPA, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
	put_desc(f, 1, BUF_GPA, 4, 0, 0);
	offer(f, 0);
	expect_broken(f, "indirect with NEXT", "has NEXT");
	fake_free(f);

	f = fake_new(4, 0);
	put_desc_at(f, TABLE_GPA, 0, BUF_GPA, 4, 0, 0);
	put_desc(f, 0, TABLE_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_broken(f, "indirect not negotiated", "not negotiated");
	fake_free(f);
}

Test(virtqueue, next_beyond_the_table)
{
	struct fake *f = fake_new(4, FEAT_INDIRECT);
	put_desc(f, 0, BUF_GPA, 4, VRING_DESC_F_NEXT, 4);
	offer(f, 0);
	expect_broken(f, "next >= size", "names next 4");
	fake_free(f);

	f = fake_new(4, FEAT_INDIRECT);
	put_desc_at(f, TABLE_GPA, 0, BUF_GPA, 4, VRING_DESC_F_NEXT, 2);
	put_desc_at(f, TABLE_GPA, 2, BUF_GPA, 4, 0, 0); /* exists in RAM, not in the table */
	put_desc(f, 0, TABLE_GPA, 2 * 16, VRING_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_broken(f, "next beyond the indirect table", "names next 2, beyond 2");
	fake_free(f);
}

Test(virtqueue, head_beyond_the_queue)
{
	struct fake *f = fake_new(4, 0);
	put_desc(f, 0, BUF_GPA, 4, 0, 0);
	offer(f, 4);
	expect_broken(f, "head >= size", "names head 4");
	fake_free(f);
}

Test(virtqueue, avail_idx_too_far_ahead)
{
	struct fake *f = fake_new(4, 0);
	for (unsigned i = 0; i < 4; i++)
		put_desc(f, i, BUF_GPA, 4, 0, 0);
	put_u16(f, AVAIL_GPA + 2, 4); /* exactly a full ring: fine */
	for (unsigned i = 0; i < 4; i++)
		cr_assert_eq(virtqueue_pop(&f->vq, &f->req), 1);
	cr_assert_eq(virtqueue_pop(&f->vq, &f->req), 0);
	put_u16(f, AVAIL_GPA + 2, 4 + 5); /* five more in a four-entry ring */
	int r = virtqueue_pop(&f->vq, &f->req);
	cr_assert_lt(r, 0);
	cr_assert(virtqueue_needs_reset(&f->vq));
	fake_free(f);

	f = fake_new(4, 0);
	put_u16(f, AVAIL_GPA + 2, 0xffff); /* "went backwards" */
	expect_broken(f, "avail idx backwards", "more than the queue size");
	fake_free(f);
}

Test(virtqueue, reset_revives_a_broken_queue)
{
	struct fake *f = fake_new(4, 0);
	put_desc(f, 0, BUF_GPA, 0, 0, 0);
	offer(f, 0);
	expect_broken(f, "zero length", "length 0");
	virtqueue_reset(&f->vq);
	cr_assert(!virtqueue_needs_reset(&f->vq));
	cr_assert(!f->vq.enabled);
	cr_assert_eq(f->vq.size, 256, "the device's maximum again");
	cr_assert_eq(virtqueue_pop(&f->vq, &f->req), 0, "a disabled queue has nothing");
	fake_free(f);
}

Test(virtqueue, enable_checks_the_rings)
{
	struct fake *f = fake_new(4, 0);
	struct errbuf e = {{0}};
	virtqueue_reset(&f->vq);
	virtqueue_set_addrs(&f->vq, DESC_GPA + 8, AVAIL_GPA, USED_GPA);
	cr_assert_eq(virtqueue_enable(&f->vq, &e), -EINVAL, "descriptor table misaligned");
	cr_assert(strstr(e.msg, "aligned"), "%s", e.msg);
	virtqueue_set_addrs(&f->vq, DESC_GPA, AVAIL_GPA + 1, USED_GPA);
	cr_assert_eq(virtqueue_enable(&f->vq, &e), -EINVAL);
	virtqueue_set_addrs(&f->vq, DESC_GPA, AVAIL_GPA, USED_GPA + 2);
	cr_assert_eq(virtqueue_enable(&f->vq, &e), -EINVAL);
	/* 256 entries of used ring (6 + 8 * 256 bytes) do not fit in the last page. */
	virtqueue_set_addrs(&f->vq, DESC_GPA, AVAIL_GPA, RAM_GPA + RAM_SIZE - 0x800);
	cr_assert_eq(virtqueue_enable(&f->vq, &e), -EFAULT);
	cr_assert(strstr(e.msg, "used ring"), "%s", e.msg);
	cr_assert(!f->vq.enabled);
	cr_assert_eq(virtqueue_set_size(&f->vq, 3), -EINVAL);
	cr_assert_eq(virtqueue_set_size(&f->vq, 512), -EINVAL, "above the device's maximum");
	cr_assert_eq(virtqueue_set_size(&f->vq, 0), -EINVAL);
	/* Guest memory whose host side is odd: the atomic ring accesses would be misaligned. */
	struct guest_mem odd = {0};
	cr_assert_eq(guest_mem_add_region(&odd, RAM_GPA, RAM_SIZE - 1, f->ram + 1), 0);
	struct virtqueue vq;
	cr_assert_eq(virtqueue_init(&vq, &odd, 8), 0);
	virtqueue_set_addrs(&vq, DESC_GPA, AVAIL_GPA, USED_GPA);
	cr_assert_eq(virtqueue_enable(&vq, &e), -EINVAL);
	cr_assert(strstr(e.msg, "host memory"), "%s", e.msg);
	cr_assert_eq(virtqueue_init(&vq, &f->mem, 65536), -EINVAL);
	cr_assert_eq(virtqueue_init(&vq, &f->mem, 32768), 0);
	fake_free(f);
}

Test(virtqueue, push_refuses_device_bugs_without_breaking)
{
	struct fake *f = fake_new(4, 0);
	cr_assert_eq(virtqueue_push(&f->vq, 0, 0), -EINVAL, "nothing outstanding");
	put_desc(f, 1, BUF_GPA, 4, 0, 0);
	offer(f, 1);
	cr_assert_eq(virtqueue_pop(&f->vq, &f->req), 1);
	cr_assert_eq(virtqueue_push(&f->vq, 4, 0), -EINVAL, "head >= size");
	cr_assert(!virtqueue_needs_reset(&f->vq));
	cr_assert_eq(virtqueue_push(&f->vq, 1, 0), 0);
	cr_assert_eq(get_u16(f, USED_GPA + 2), 1);
	fake_free(f);
}

/* ---- notification suppression ---- */

static void pop_push_one(struct fake *f)
{
	cr_assert_eq(virtqueue_pop(&f->vq, &f->req), 1, "%s", f->vq.why.msg);
	cr_assert_eq(virtqueue_push(&f->vq, f->req.head, 0), 0);
}

Test(virtqueue, used_notifications_follow_no_interrupt)
{
	struct fake *f = fake_new(4, 0);
	put_desc(f, 0, BUF_GPA, 4, 0, 0);
	offer(f, 0);
	pop_push_one(f);
	cr_assert(virtqueue_should_notify(&f->vq), "flags 0: the device must notify");
	put_u16(f, AVAIL_GPA, VRING_AVAIL_F_NO_INTERRUPT);
	offer(f, 0);
	pop_push_one(f);
	cr_assert(!virtqueue_should_notify(&f->vq), "NO_INTERRUPT: it should not");
	fake_free(f);
}

Test(virtqueue, used_notifications_follow_used_event)
{
	struct fake *f = fake_new(8, FEAT_EVENT_IDX);
	for (unsigned i = 0; i < 8; i++)
		put_desc(f, i, BUF_GPA, 4, 0, 0);
	/* NO_INTERRUPT is ignored with EVENT_IDX (the driver must leave it 0 anyway). */
	put_u16(f, AVAIL_GPA, VRING_AVAIL_F_NO_INTERRUPT);
	put_u16(f, used_event_gpa(f), 0);
	offer(f, 0);
	pop_push_one(f); /* used->idx 0 -> 1: entry 0 written, used_event 0 */
	cr_assert(virtqueue_should_notify(&f->vq), "entry used_event was written");

	put_u16(f, used_event_gpa(f), 3); /* "interrupt me when entry 3 is used" */
	offer(f, 1);
	pop_push_one(f); /* entry 1 */
	cr_assert(!virtqueue_should_notify(&f->vq), "entry 1 < used_event 3");
	offer(f, 2);
	pop_push_one(f); /* entry 2 */
	cr_assert(!virtqueue_should_notify(&f->vq), "entry 2 < used_event 3");
	cr_assert(!virtqueue_should_notify(&f->vq), "nothing new: no notification");
	offer(f, 3);
	offer(f, 4);
	pop_push_one(f); /* entry 3 */
	pop_push_one(f); /* entry 4: one check for the batch still sees entry 3 crossed */
	cr_assert(virtqueue_should_notify(&f->vq), "the batch crossed used_event");
	offer(f, 5);
	pop_push_one(f);
	cr_assert(!virtqueue_should_notify(&f->vq), "already past used_event");
	fake_free(f);
}

/* What Linux's driver does before kicking: vring_need_event(avail_event, new, old). */
static bool driver_would_kick(struct fake *f, uint16_t head)
{
	uint16_t old = f->avail_idx;
	offer(f, head);
	if (f->vq.event_idx)
		return vring_need_event(get_u16(f, avail_event_gpa(f)), f->avail_idx, old);
	return !(get_u16(f, USED_GPA) & VRING_USED_F_NO_NOTIFY);
}

Test(virtqueue, kick_suppression_with_event_idx)
{
	struct fake *f = fake_new(8, FEAT_EVENT_IDX);
	for (unsigned i = 0; i < 8; i++)
		put_desc(f, i, BUF_GPA, 4, 0, 0);
	cr_assert(!virtqueue_set_notification(&f->vq, true), "nothing available yet");
	cr_assert(driver_would_kick(f, 0), "enabled: the first new entry kicks");
	cr_assert_eq(virtqueue_set_notification(&f->vq, false), false);
	cr_assert_eq(get_u16(f, USED_GPA), 0, "with EVENT_IDX used->flags stays 0");
	cr_assert(!driver_would_kick(f, 1), "disabled: no kick");
	pop_push_one(f);
	cr_assert(!driver_would_kick(f, 2), "still disabled while the device works");
	pop_push_one(f);
	pop_push_one(f);
	cr_assert(!virtqueue_set_notification(&f->vq, true), "all popped: go to sleep");
	cr_assert(driver_would_kick(f, 3), "enabled again: the next entry kicks");
	/* Entries that arrived without a kick are reported when enabling. */
	cr_assert_eq(virtqueue_set_notification(&f->vq, false), false);
	cr_assert(!driver_would_kick(f, 4));
	cr_assert(virtqueue_set_notification(&f->vq, true),
		  "enabling sees what came in while disabled");
	fake_free(f);
}

Test(virtqueue, kick_suppression_without_event_idx)
{
	struct fake *f = fake_new(8, 0);
	for (unsigned i = 0; i < 8; i++)
		put_desc(f, i, BUF_GPA, 4, 0, 0);
	cr_assert(driver_would_kick(f, 0));
	virtqueue_set_notification(&f->vq, false);
	cr_assert_eq(get_u16(f, USED_GPA), VRING_USED_F_NO_NOTIFY);
	cr_assert(!driver_would_kick(f, 1));
	cr_assert(virtqueue_set_notification(&f->vq, true), "two entries are waiting");
	cr_assert_eq(get_u16(f, USED_GPA), 0);
	cr_assert(driver_would_kick(f, 2));
	fake_free(f);
}

/* ---- wrap-around ---- */

Test(virtqueue, indices_wrap_at_65536)
{
	struct fake *f = fake_new(4, FEAT_EVENT_IDX);
	for (unsigned i = 0; i < 4; i++)
		put_desc(f, i, BUF_GPA + 0x10 * i, 4, VRING_DESC_F_WRITE, 0);
	unsigned notified = 0;
	put_u16(f, used_event_gpa(f), 0);
	for (unsigned n = 0; n < 70000; n++) {
		/* Two in flight at a time, so the ring positions and the indices drift. */
		offer(f, n % 4);
		offer(f, (n + 1) % 4);
		cr_assert_eq(virtqueue_pop(&f->vq, &f->req), 1, "%u: %s", n, f->vq.why.msg);
		cr_assert_eq(f->req.head, n % 4);
		struct vq_request second;
		cr_assert_eq(virtqueue_pop(&f->vq, &second), 1);
		cr_assert_eq(virtqueue_push(&f->vq, second.head, 2), 0);
		cr_assert_eq(virtqueue_push(&f->vq, f->req.head, 1), 0);
		uint16_t used = get_u16(f, USED_GPA + 2);
		cr_assert_eq(used, (uint16_t)(2 * (n + 1)));
		cr_assert_eq(get_u32(f, USED_GPA + 4 + 8 * ((uint16_t)(used - 1) % 4)), n % 4);
		/* After each interrupt the driver asks for the next one 1000 entries on, its
		 * event index wrapping with used->idx. */
		if (virtqueue_should_notify(&f->vq)) {
			notified++;
			put_u16(f, used_event_gpa(f), (uint16_t)(used + 999));
		}
	}
	cr_assert_eq(f->vq.last_avail_idx, (uint16_t)140000);
	cr_assert_eq(f->vq.used_idx, (uint16_t)140000);
	cr_assert_eq(notified, 140, "one per 1000 entries across two wraps: %u", notified);
	cr_assert(!virtqueue_needs_reset(&f->vq));
	fake_free(f);
}

/* ---- snapshot state ---- */

Test(virtqueue, save_load_round_trip)
{
	struct fake *f = fake_new(8, FEAT_EVENT_IDX | FEAT_INDIRECT);
	for (unsigned i = 0; i < 8; i++)
		put_desc(f, i, BUF_GPA, 4, 0, 0);
	for (unsigned i = 0; i < 5; i++) {
		offer(f, (uint16_t)i);
		pop_push_one(f);
	}
	offer(f, 5); /* offered, not yet popped */

	struct state_writer w = {0};
	cr_assert_eq(virtqueue_save(&f->vq, &w), 0);
	struct virtqueue vq2;
	cr_assert_eq(virtqueue_init(&vq2, &f->mem, 256), 0);
	struct state_reader r = {.buf = w.buf, .len = w.len};
	cr_assert_eq(virtqueue_load(&vq2, &r), 0);
	cr_assert_eq(state_reader_finish(&r), 0);
	cr_assert_eq(vq2.size, 8);
	cr_assert_eq(vq2.desc_gpa, DESC_GPA);
	cr_assert_eq(vq2.avail_gpa, AVAIL_GPA);
	cr_assert_eq(vq2.used_gpa, USED_GPA);
	cr_assert(vq2.enabled && vq2.event_idx && vq2.indirect && !vq2.broken);
	cr_assert_eq(vq2.last_avail_idx, 5);
	cr_assert_eq(vq2.used_idx, 5);

	struct state_writer w2 = {0};
	cr_assert_eq(virtqueue_save(&vq2, &w2), 0);
	cr_assert_eq(w2.len, w.len);
	cr_assert_eq(memcmp(w.buf, w2.buf, w.len), 0, "save -> load -> save gives the same bytes");

	/* The restored queue carries on where the saved one stopped. */
	cr_assert_eq(virtqueue_pop(&vq2, &f->req), 1);
	cr_assert_eq(f->req.head, 5);
	cr_assert_eq(virtqueue_push(&vq2, 5, 0), 0);
	cr_assert_eq(get_u16(f, USED_GPA + 2), 6);
	state_writer_free(&w);
	state_writer_free(&w2);
	fake_free(f);
}

Test(virtqueue, load_refuses_bad_blobs_and_leaves_the_queue_alone)
{
	struct fake *f = fake_new(8, 0);
	struct state_writer w = {0};
	cr_assert_eq(virtqueue_save(&f->vq, &w), 0);
	struct virtqueue before = f->vq;

	struct state_reader r = {.buf = w.buf, .len = w.len - 1};
	cr_assert_eq(virtqueue_load(&f->vq, &r), -EINVAL, "short blob");

	uint8_t *b = malloc(w.len);
	memcpy(b, w.buf, w.len);
	b[0] = 3; /* size 3 */
	r = (struct state_reader){.buf = b, .len = w.len};
	cr_assert_eq(virtqueue_load(&f->vq, &r), -EINVAL, "size not a power of two");

	memcpy(b, w.buf, w.len);
	b[w.len - 4] = 20; /* last_avail_idx 20, used_idx 0: 20 in flight in 8 entries */
	r = (struct state_reader){.buf = b, .len = w.len};
	cr_assert_eq(virtqueue_load(&f->vq, &r), -EINVAL, "indices too far apart");

	memcpy(b, w.buf, w.len);
	b[4 + 8 + 8 + 7] = 0x7f; /* used ring at a high address outside RAM */
	r = (struct state_reader){.buf = b, .len = w.len};
	cr_assert_eq(virtqueue_load(&f->vq, &r), -EINVAL, "enabled with rings outside RAM");
	cr_assert_eq(memcmp(&before, &f->vq, sizeof(before)), 0, "queue unchanged");
	free(b);
	state_writer_free(&w);
	fake_free(f);
}
