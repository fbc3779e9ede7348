/* virtio-blk against fake guest memory and a fake transport that counts interrupts: the
 * test plays the driver (rings, descriptors, kicks) and checks the status bytes, the used
 * lengths and, above all, the host file. Real files in $TMPDIR, real io_uring. */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ring.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend/disk.h"
#include "virtio/blk.h"
#include "virtio/virtio.h"

#define RAM_GPA	  0x100000ull
#define RAM_SIZE  (4u << 20)
#define QSIZE	  128u
#define BUF_GPA	  (RAM_GPA + 0x100000) /* data buffers from here on */
#define DISK_SIZE (1u << 20)

struct fake {
	uint8_t *ram;
	struct guest_mem mem;
	struct virtio_dev *d;
	char path[64];
	atomic_uint queue_irqs, config_irqs;
	uint16_t avail_idx[4], next_desc[4];
	uint64_t buf_next;
};

static void t_notify_queue(void *t, unsigned q)
{
	atomic_fetch_add(&((struct fake *)t)->queue_irqs, 1);
}

static void t_notify_config(void *t)
{
	atomic_fetch_add(&((struct fake *)t)->config_irqs, 1);
}

static const struct virtio_transport_ops t_ops = {t_notify_queue, t_notify_config};

static uint64_t desc_gpa(unsigned q)
{
	return RAM_GPA + q * 0x4000ull;
}
static uint64_t avail_gpa(unsigned q)
{
	return desc_gpa(q) + 0x1000;
}
static uint64_t used_gpa(unsigned q)
{
	return desc_gpa(q) + 0x2000;
}

static void *host(struct fake *f, uint64_t gpa)
{
	cr_assert(gpa >= RAM_GPA && gpa < RAM_GPA + RAM_SIZE);
	return f->ram + (gpa - RAM_GPA);
}

static void make_file(struct fake *f, uint8_t fill)
{
	strcpy(f->path, "/tmp/kvmini-blk-XXXXXX");
	int fd = mkstemp(f->path);
	cr_assert(fd >= 0);
	uint8_t *buf = malloc(DISK_SIZE);
	memset(buf, fill, DISK_SIZE);
	cr_assert_eq(write(fd, buf, DISK_SIZE), DISK_SIZE);
	free(buf);
	close(fd);
}

static void read_file(struct fake *f, uint64_t off, void *buf, size_t len)
{
	int fd = open(f->path, O_RDONLY);
	cr_assert(fd >= 0);
	cr_assert_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

/* A device on f's file with nq queues, negotiated (all offered features but those in
 * drop) and running. */
static int fake_start(struct fake *f, struct blk_params *p, unsigned nq, uint64_t drop,
		      struct errbuf *e)
{
	f->ram = aligned_alloc(4096, RAM_SIZE);
	cr_assert(f->ram);
	memset(f->ram, 0, RAM_SIZE);
	cr_assert_eq(guest_mem_add_region(&f->mem, RAM_GPA, RAM_SIZE, f->ram), 0);
	f->buf_next = BUF_GPA;
	p->disk.path = f->path;
	p->queues = nq;
	int ret = blk_create(&f->mem, p, &f->d, e);
	if (ret)
		return ret;
	virtio_dev_attach(f->d, &t_ops, f);
	uint64_t feat = virtio_dev_offered_features(f->d) & ~drop;
	virtio_dev_set_status(f->d, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	virtio_dev_set_driver_features(f->d, feat);
	uint8_t st =
	    virtio_dev_set_status(f->d, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					    VIRTIO_CONFIG_S_FEATURES_OK);
	cr_assert(st & VIRTIO_CONFIG_S_FEATURES_OK);
	for (unsigned q = 0; q < nq; q++) {
		struct virtqueue *vq = &f->d->vqs[q];
		cr_assert_eq(virtqueue_set_size(vq, QSIZE), 0);
		virtqueue_set_addrs(vq, desc_gpa(q), avail_gpa(q), used_gpa(q));
		cr_assert_eq(virtqueue_enable(vq, e), 0, "%s", e->msg);
		vq->enabled = true;
	}
	st = virtio_dev_set_status(f->d, st | VIRTIO_CONFIG_S_DRIVER_OK);
	cr_assert(!(st & VIRTIO_CONFIG_S_NEEDS_RESET));
	return 0;
}

static struct fake *fake_new(bool ro, bool direct, bool sync, unsigned nq, const char *serial)
{
	struct fake *f = calloc(1, sizeof(*f));
	make_file(f, 0xee);
	struct blk_params p = {.disk = {.readonly = ro, .direct = direct, .no_uring = sync},
			       .serial = serial};
	struct errbuf e = {{0}};
	cr_assert_eq(fake_start(f, &p, nq, 0, &e), 0, "%s", e.msg);
	return f;
}

static void fake_free(struct fake *f)
{
	if (f->d) {
		virtio_dev_destroy(f->d);
		free(f->d);
	}
	guest_mem_destroy(&f->mem);
	free(f->ram);
	unlink(f->path);
	free(f);
}

static uint64_t alloc_buf(struct fake *f, uint32_t len, uint32_t align)
{
	uint64_t g = (f->buf_next + align - 1) / align * align;
	f->buf_next = g + len;
	cr_assert(f->buf_next <= RAM_GPA + RAM_SIZE);
	return g;
}

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

/* Puts a chain on queue q and makes it available (no kick). Returns its head. */
static uint16_t offer(struct fake *f, unsigned q, const struct seg *s, unsigned n)
{
	uint16_t head = f->next_desc[q];
	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((head + i) % QSIZE);
		struct vring_desc dsc = {htole64(s[i].gpa), htole32(s[i].len),
					 htole16((uint16_t)((s[i].write ? VRING_DESC_F_WRITE : 0) |
							    (i + 1 < n ? VRING_DESC_F_NEXT : 0))),
					 htole16((uint16_t)((idx + 1) % QSIZE))};
		memcpy(host(f, desc_gpa(q) + 16ull * idx), &dsc, sizeof(dsc));
	}
	f->next_desc[q] = (uint16_t)((head + n) % QSIZE);
	uint16_t v = htole16(head);
	memcpy(host(f, avail_gpa(q) + 4 + 2 * (f->avail_idx[q] % QSIZE)), &v, 2);
	f->avail_idx[q]++;
	__atomic_store_n((uint16_t *)host(f, avail_gpa(q) + 2), htole16(f->avail_idx[q]),
			 __ATOMIC_RELEASE);
	return head;
}

static uint16_t used_idx(struct fake *f, unsigned q)
{
	return le16toh(__atomic_load_n((uint16_t *)host(f, used_gpa(q) + 2), __ATOMIC_ACQUIRE));
}

/* Waits until queue q has used `count` entries in all. */
static void wait_used(struct fake *f, unsigned q, uint16_t count)
{
	for (int i = 0; i < 5000 && used_idx(f, q) != count; i++)
		usleep(1000);
	cr_assert_eq(used_idx(f, q), count, "queue %u: %u used, expected %u", q, used_idx(f, q),
		     count);
}

static uint32_t used_len(struct fake *f, unsigned q, uint16_t n)
{
	uint32_t v;
	memcpy(&v, host(f, used_gpa(q) + 4 + 8 * (n % QSIZE) + 4), 4);
	return le32toh(v);
}

struct rq {
	uint64_t hdr, status, data;
};

static struct rq hdr_for(struct fake *f, uint32_t type, uint64_t sector)
{
	struct rq r = {.hdr = alloc_buf(f, 16, 16), .status = alloc_buf(f, 1, 1)};
	struct virtio_blk_outhdr h = {htole32(type), 0, htole64(sector)};
	memcpy(host(f, r.hdr), &h, sizeof(h));
	*(uint8_t *)host(f, r.status) = 0xff;
	return r;
}

/* One request of type with data (len bytes at data_gpa, writable for a read) and a
 * status byte; kicks, waits, returns the status. */
static uint8_t do_rw(struct fake *f, unsigned q, uint32_t type, uint64_t sector, uint64_t data,
		     uint32_t len, bool data_write)
{
	struct rq r = hdr_for(f, type, sector);
	struct seg s[3] = {{r.hdr, 16, false}, {data, len, data_write}, {r.status, 1, true}};
	uint16_t before = used_idx(f, q);
	if (len)
		offer(f, q, s, 3);
	else
		offer(f, q, (struct seg[]){s[0], s[2]}, 2);
	virtio_dev_queue_notify(f->d, q);
	wait_used(f, q, (uint16_t)(before + 1));
	return *(uint8_t *)host(f, r.status);
}

static uint8_t do_dz(struct fake *f, uint32_t type, uint64_t sector, uint32_t n, uint32_t flags)
{
	uint64_t g = alloc_buf(f, 16, 16);
	struct virtio_blk_discard_write_zeroes dz = {htole64(sector), htole32(n), htole32(flags)};
	memcpy(host(f, g), &dz, sizeof(dz));
	return do_rw(f, 0, type, 0, g, 16, false) /* sector in hdr unused */;
}

static void write_read_roundtrip(bool direct, bool sync, uint32_t align)
{
	struct fake *f = fake_new(false, direct, sync, 1, NULL);
	uint64_t w = alloc_buf(f, 8192, align), rd = alloc_buf(f, 8192, align);
	for (unsigned i = 0; i < 8192; i++)
		((uint8_t *)host(f, w))[i] = (uint8_t)(i * 7 + 3);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_OUT, 16, w, 8192, false), VIRTIO_BLK_S_OK);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false), VIRTIO_BLK_S_OK);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_IN, 16, rd, 8192, true), VIRTIO_BLK_S_OK);
	cr_assert_eq(used_len(f, 0, 2), 8193, "a read reports data + status written");
	cr_assert_eq(used_len(f, 0, 0), 1, "a write reports only the status");
	cr_assert(!memcmp(host(f, w), host(f, rd), 8192));
	uint8_t file[8192 + 512];
	read_file(f, 16 * 512 - 512, file, sizeof(file));
	cr_assert(!memcmp(file + 512, host(f, w), 8192), "the host file holds the pattern");
	cr_assert_eq(file[0], 0xee, "the sector before is untouched");
	fake_free(f);
}

Test(blk, write_flush_read_io_uring)
{
	write_read_roundtrip(false, false, 4096);
}

Test(blk, write_flush_read_sync_fallback)
{
	write_read_roundtrip(false, true, 4096);
}

Test(blk, cache_none_aligned_and_bounced)
{
	write_read_roundtrip(true, false, 4096);
	write_read_roundtrip(true, false, 8); /* not aligned for O_DIRECT: a bounce buffer */
	write_read_roundtrip(true, true, 8);
}

Test(blk, config_space_and_features)
{
	struct fake *f = fake_new(false, false, false, 2, NULL);
	struct virtio_blk_config c;
	virtio_dev_config_read(f->d, 0, &c, f->d->config_size);
	cr_assert_eq(le64toh(c.capacity), DISK_SIZE / 512);
	cr_assert_eq(le32toh(c.seg_max), 254);
	cr_assert_eq(le32toh(c.blk_size), 512);
	cr_assert_eq(le16toh(c.num_queues), 2);
	cr_assert_eq(le32toh(c.max_discard_seg), 1);
	cr_assert(le32toh(c.max_write_zeroes_sectors) > 0);
	uint64_t feat = virtio_dev_offered_features(f->d);
	cr_assert(feat & (1ull << VIRTIO_BLK_F_FLUSH));
	cr_assert(feat & (1ull << VIRTIO_BLK_F_DISCARD));
	cr_assert(feat & (1ull << VIRTIO_BLK_F_WRITE_ZEROES));
	cr_assert(feat & (1ull << VIRTIO_BLK_F_MQ));
	cr_assert(feat & (1ull << VIRTIO_RING_F_EVENT_IDX));
	cr_assert(!(feat & (1ull << VIRTIO_BLK_F_RO)));
	fake_free(f);
}

Test(blk, past_the_end_is_ioerr_and_writes_nothing)
{
	struct fake *f = fake_new(false, false, false, 1, NULL);
	uint64_t w = alloc_buf(f, 1024, 512);
	memset(host(f, w), 0x55, 1024);
	/* The last sector is fine, one more is not: nothing of the request is written. */
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_OUT, DISK_SIZE / 512 - 1, w, 1024, false),
		     VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_IN, DISK_SIZE / 512, w, 512, true),
		     VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_IN, UINT64_MAX, w, 512, true), VIRTIO_BLK_S_IOERR);
	uint8_t tail[512];
	read_file(f, DISK_SIZE - 512, tail, 512);
	for (int i = 0; i < 512; i++)
		cr_assert_eq(tail[i], 0xee);
	struct stat st;
	stat(f->path, &st);
	cr_assert_eq(st.st_size, DISK_SIZE);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_IN, DISK_SIZE / 512 - 1, w, 512, true),
		     VIRTIO_BLK_S_OK);
	fake_free(f);
}

Test(blk, read_only_refuses_writes)
{
	struct fake *f = fake_new(true, false, false, 1, NULL);
	uint64_t feat = virtio_dev_offered_features(f->d);
	cr_assert(feat & (1ull << VIRTIO_BLK_F_RO));
	cr_assert(!(feat & (1ull << VIRTIO_BLK_F_DISCARD)));
	uint64_t w = alloc_buf(f, 4096, 4096);
	memset(host(f, w), 0x11, 4096);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_OUT, 0, w, 4096, false), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_dz(f, VIRTIO_BLK_T_DISCARD, 0, 8, 0), VIRTIO_BLK_S_UNSUPP);
	cr_assert_eq(do_dz(f, VIRTIO_BLK_T_WRITE_ZEROES, 0, 8, 0), VIRTIO_BLK_S_UNSUPP);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false), VIRTIO_BLK_S_OK);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_IN, 0, w, 4096, true), VIRTIO_BLK_S_OK);
	uint8_t *buf = malloc(DISK_SIZE);
	read_file(f, 0, buf, DISK_SIZE);
	for (unsigned i = 0; i < DISK_SIZE; i++)
		cr_assert_eq(buf[i], 0xee, "byte %u changed", i);
	free(buf);
	fake_free(f);
}

Test(blk, discard_punches_a_hole)
{
	struct fake *f = fake_new(false, false, false, 1, NULL);
	int fd = open(f->path, O_RDONLY);
	fsync(fd);
	struct stat before, after;
	fstat(fd, &before);
	cr_assert_eq(do_dz(f, VIRTIO_BLK_T_DISCARD, 256, 1024, 0), VIRTIO_BLK_S_OK);
	fstat(fd, &after);
	close(fd);
	cr_assert_lt(after.st_blocks, before.st_blocks - 900, "st_blocks %lld -> %lld",
		     (long long)before.st_blocks, (long long)after.st_blocks);
	cr_assert_eq(after.st_size, DISK_SIZE, "the size is kept");
	uint8_t b[512];
	read_file(f, 256 * 512, b, 512);
	cr_assert_eq(b[0], 0);
	read_file(f, 255 * 512, b, 512);
	cr_assert_eq(b[511], 0xee, "the sector before the range keeps its data");
	/* Flags on a discard are unsupported; a range past the end is an error. */
	cr_assert_eq(do_dz(f, VIRTIO_BLK_T_DISCARD, 0, 8, 1), VIRTIO_BLK_S_UNSUPP);
	cr_assert_eq(do_dz(f, VIRTIO_BLK_T_DISCARD, DISK_SIZE / 512 - 4, 8, 0), VIRTIO_BLK_S_IOERR);
	fake_free(f);
}

Test(blk, write_zeroes_with_and_without_unmap)
{
	struct fake *f = fake_new(false, false, false, 1, NULL);
	cr_assert_eq(do_dz(f, VIRTIO_BLK_T_WRITE_ZEROES, 8, 8, 0), VIRTIO_BLK_S_OK);
	cr_assert_eq(
	    do_dz(f, VIRTIO_BLK_T_WRITE_ZEROES, 64, 16, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP),
	    VIRTIO_BLK_S_OK);
	uint8_t b[8192];
	read_file(f, 0, b, sizeof(b));
	for (unsigned i = 0; i < sizeof(b); i++)
		cr_assert_eq(b[i], (i >= 4096 && i < 8192) ? 0 : 0xee, "byte %u", i);
	read_file(f, 64 * 512, b, sizeof(b));
	for (unsigned i = 0; i < sizeof(b); i++)
		cr_assert_eq(b[i], 0, "byte %u", i);
	cr_assert_eq(do_dz(f, VIRTIO_BLK_T_WRITE_ZEROES, 0, 8, 2), VIRTIO_BLK_S_UNSUPP);
	fake_free(f);
}

Test(blk, get_id_returns_the_serial)
{
	struct fake *f = fake_new(false, false, false, 1, "my-disk-serial");
	uint64_t g = alloc_buf(f, 20, 1);
	memset(host(f, g), 0xaa, 20);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_GET_ID, 0, g, 20, true), VIRTIO_BLK_S_OK);
	char id[21] = {0};
	memcpy(id, host(f, g), 20);
	cr_assert_str_eq(id, "my-disk-serial");
	cr_assert_eq(used_len(f, 0, 0), 21);
	fake_free(f);
}

Test(blk, unknown_type_is_unsupp)
{
	struct fake *f = fake_new(false, false, false, 1, NULL);
	uint64_t g = alloc_buf(f, 512, 512);
	cr_assert_eq(do_rw(f, 0, 99, 0, g, 512, true), VIRTIO_BLK_S_UNSUPP);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_SECURE_ERASE, 0, g, 16, false), VIRTIO_BLK_S_UNSUPP);
	fake_free(f);
}

Test(blk, multi_queue_each_queue_served)
{
	struct fake *f = fake_new(false, false, false, 3, NULL);
	for (unsigned q = 0; q < 3; q++) {
		uint64_t w = alloc_buf(f, 512, 512);
		memset(host(f, w), 0x30 + q, 512);
		cr_assert_eq(do_rw(f, q, VIRTIO_BLK_T_OUT, q * 8, w, 512, false), VIRTIO_BLK_S_OK);
	}
	for (unsigned q = 0; q < 3; q++) {
		uint8_t b[512];
		read_file(f, q * 8 * 512, b, 512);
		cr_assert_eq(b[0], 0x30 + q);
		cr_assert_eq(b[511], 0x30 + q);
		cr_assert_eq(used_idx(f, q), 1, "queue %u answered its own request", q);
	}
	struct blk_stats s;
	blk_stats(f->d, &s);
	cr_assert_eq(s.requests, 3);
	cr_assert_eq(s.bytes_written, 3 * 512);
	fake_free(f);
}

Test(blk, many_in_flight_one_interrupt_per_batch)
{
	struct fake *f = fake_new(false, false, false, 1, NULL);
	enum { N = 32 };
	struct rq r[N];
	for (unsigned i = 0; i < N; i++) {
		r[i] = hdr_for(f, VIRTIO_BLK_T_IN, i * 8);
		uint64_t g = alloc_buf(f, 4096, 4096);
		struct seg s[3] = {{r[i].hdr, 16, false}, {g, 4096, true}, {r[i].status, 1, true}};
		offer(f, 0, s, 3);
	}
	virtio_dev_queue_notify(f->d, 0);
	wait_used(f, 0, N);
	for (unsigned i = 0; i < N; i++)
		cr_assert_eq(*(uint8_t *)host(f, r[i].status), VIRTIO_BLK_S_OK);
	unsigned irqs = atomic_load(&f->queue_irqs);
	cr_assert(irqs >= 1 && irqs < N, "%u interrupts for %u requests", irqs, N);
	fake_free(f);
}

/* Malformed requests: answered with an error or the device asks for a reset; kvmini goes
 * on either way. */
Test(blk, header_too_short_is_ioerr)
{
	struct fake *f = fake_new(false, false, false, 1, NULL);
	struct rq r = hdr_for(f, VIRTIO_BLK_T_IN, 0);
	struct seg s[2] = {{r.hdr, 8, false}, {r.status, 1, true}};
	offer(f, 0, s, 2);
	virtio_dev_queue_notify(f->d, 0);
	wait_used(f, 0, 1);
	cr_assert_eq(*(uint8_t *)host(f, r.status), VIRTIO_BLK_S_IOERR);
	fake_free(f);
}

Test(blk, status_byte_missing_or_read_only_needs_reset)
{
	for (int variant = 0; variant < 2; variant++) {
		struct fake *f = fake_new(false, false, false, 1, NULL);
		struct rq r = hdr_for(f, VIRTIO_BLK_T_OUT, 0);
		uint64_t g = alloc_buf(f, 512, 512);
		struct seg s[3] = {{r.hdr, 16, false}, {g, 512, false}, {r.status, 1, false}};
		offer(f, 0, s, variant ? 3 : 2);
		virtio_dev_queue_notify(f->d, 0);
		/* The worker sets the status bit, then sends the configuration interrupt. */
		for (int i = 0;
		     i < 5000 && (!(atomic_load(&f->d->status) & VIRTIO_CONFIG_S_NEEDS_RESET) ||
				  atomic_load(&f->config_irqs) == 0);
		     i++)
			usleep(1000);
		cr_assert(atomic_load(&f->d->status) & VIRTIO_CONFIG_S_NEEDS_RESET);
		cr_assert_eq(*(uint8_t *)host(f, r.status), 0xff, "nothing written");
		cr_assert_eq(atomic_load(&f->config_irqs), 1);
		uint8_t b[512];
		read_file(f, 0, b, 512);
		cr_assert_eq(b[0], 0xee, "the write was not done");
		/* A reset revives the device. */
		virtio_dev_set_status(f->d, 0);
		cr_assert_eq(atomic_load(&f->d->status), 0);
		fake_free(f);
	}
}

Test(blk, wrong_direction_or_partial_sector_is_ioerr)
{
	struct fake *f = fake_new(false, false, false, 1, NULL);
	uint64_t g = alloc_buf(f, 1024, 512);
	memset(host(f, g), 0x77, 1024);
	/* A read whose data buffer is device-readable; a write whose data is writable. */
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_IN, 0, g, 512, false), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_OUT, 0, g, 512, true), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_OUT, 0, g, 100, false), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_IN, 0, g, 700, true), VIRTIO_BLK_S_IOERR);
	for (int i = 0; i < 1024; i++)
		cr_assert_eq(((uint8_t *)host(f, g))[i], 0x77, "guest byte %d changed", i);
	uint8_t b[1024];
	read_file(f, 0, b, sizeof(b));
	for (unsigned i = 0; i < sizeof(b); i++)
		cr_assert_eq(b[i], 0xee);
	fake_free(f);
}

Test(blk, broken_ring_needs_reset_no_crash)
{
	struct fake *f = fake_new(false, false, false, 1, NULL);
	/* A descriptor pointing outside guest RAM. */
	struct seg s[2] = {{0xdead0000000ull, 16, false}, {BUF_GPA, 1, true}};
	offer(f, 0, s, 2);
	virtio_dev_queue_notify(f->d, 0);
	for (int i = 0; i < 5000 && !(atomic_load(&f->d->status) & VIRTIO_CONFIG_S_NEEDS_RESET);
	     i++)
		usleep(1000);
	cr_assert(atomic_load(&f->d->status) & VIRTIO_CONFIG_S_NEEDS_RESET);
	fake_free(f);
}

Test(blk, host_io_error_is_ioerr)
{
	struct fake *f = fake_new(false, false, false, 1, NULL);
	/* The file shrinks under the device: reading what is gone fails, the device lives. */
	cr_assert_eq(truncate(f->path, 4096), 0);
	uint64_t g = alloc_buf(f, 4096, 4096);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_IN, 512, g, 4096, true), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_IN, 0, g, 4096, true), VIRTIO_BLK_S_OK);
	fake_free(f);
}

Test(blk, reset_with_requests_in_flight_then_restart)
{
	struct fake *f = fake_new(false, false, false, 1, NULL);
	for (unsigned i = 0; i < 16; i++) {
		struct rq r = hdr_for(f, VIRTIO_BLK_T_IN, i * 8);
		uint64_t g = alloc_buf(f, 4096, 4096);
		struct seg s[3] = {{r.hdr, 16, false}, {g, 4096, true}, {r.status, 1, true}};
		offer(f, 0, s, 3);
	}
	virtio_dev_queue_notify(f->d, 0);
	virtio_dev_set_status(f->d, 0);
	cr_assert_eq(atomic_load(&f->d->status), 0);
	fake_free(f);
}

/* The VM's pause (device_ops.pause): it returns only once every request in flight is
 * answered, takes nothing new until resume, and a device destroyed while paused ends. */
Test(blk, pause_answers_what_is_in_flight_and_takes_nothing_new)
{
	struct fake *f = fake_new(false, false, false, 1, NULL);
	enum { N = 32, M = 4 };
	struct rq r[N + M];
	for (unsigned i = 0; i < N + M; i++)
		r[i] = hdr_for(f, VIRTIO_BLK_T_IN, i * 8);
	for (unsigned i = 0; i < N; i++) {
		uint64_t g = alloc_buf(f, 4096, 4096);
		struct seg s[3] = {{r[i].hdr, 16, false}, {g, 4096, true}, {r[i].status, 1, true}};
		offer(f, 0, s, 3);
	}
	virtio_dev_queue_notify(f->d, 0);
	/* Pause as soon as the worker has taken requests, while they are in flight. */
	uint16_t *taken = &f->d->vqs[0].last_avail_idx;
	for (int i = 0; i < 20000000 && __atomic_load_n(taken, __ATOMIC_RELAXED) == 0; i++)
		sched_yield();
	virtio_dev_device_ops.pause(f->d);
	uint16_t t = __atomic_load_n(taken, __ATOMIC_RELAXED);
	cr_assert_gt(t, 0, "the worker took no request");
	cr_assert_eq(used_idx(f, 0), t, "pause returned with %u of the %u requests taken answered",
		     used_idx(f, 0), t);
	for (unsigned i = 0; i < t; i++)
		cr_assert_eq(*(uint8_t *)host(f, r[i].status), VIRTIO_BLK_S_OK);
	cr_assert_geq(atomic_load(&f->queue_irqs), 1, "the completions were signalled");
	usleep(50000);
	cr_assert_eq(__atomic_load_n(taken, __ATOMIC_RELAXED), t, "a paused device took more");
	cr_assert_eq(used_idx(f, 0), t, "a paused device answered more");

	for (unsigned i = N; i < N + M; i++) {
		uint64_t g = alloc_buf(f, 4096, 4096);
		struct seg s[3] = {{r[i].hdr, 16, false}, {g, 4096, true}, {r[i].status, 1, true}};
		offer(f, 0, s, 3);
	}
	virtio_dev_queue_notify(f->d, 0);
	usleep(50000);
	cr_assert_eq(used_idx(f, 0), t, "a paused device served a request");
	cr_assert_eq(__atomic_load_n(taken, __ATOMIC_RELAXED), t, "a paused device took one");

	virtio_dev_device_ops.resume(f->d);
	wait_used(f, 0, N + M);
	for (unsigned i = N; i < N + M; i++)
		cr_assert_eq(*(uint8_t *)host(f, r[i].status), VIRTIO_BLK_S_OK);

	virtio_dev_device_ops.pause(f->d);
	fake_free(f); /* destroyed while paused: the worker must still end */
}

Test(blk, save_load_roundtrip)
{
	struct fake *f = fake_new(false, false, false, 1, NULL);
	struct state_writer w = {0};
	cr_assert_eq(virtio_dev_device_ops.save(f->d, &w), 0);
	struct state_reader r = {.buf = w.buf, .len = w.len};
	cr_assert_eq(virtio_dev_device_ops.load(f->d, &r), 0);
	state_writer_free(&w);
	fake_free(f);
}

/* The disk backend's refusals. */
Test(disk, lock_refuses_a_second_user)
{
	struct fake f = {0};
	make_file(&f, 0);
	struct disk a, b, c;
	struct errbuf e = {{0}};
	struct disk_opts rw = {.path = f.path}, ro = {.path = f.path, .readonly = true};
	cr_assert_eq(disk_open(&a, &rw, &e), 0, "%s", e.msg);
	cr_assert_eq(disk_open(&b, &rw, &e), -EBUSY);
	cr_assert(strstr(e.msg, f.path) && strstr(e.msg, "in use"), "%s", e.msg);
	cr_assert_eq(disk_open(&b, &ro, &e), -EBUSY, "a reader is refused next to a writer");
	disk_close(&a);
	cr_assert_eq(disk_open(&b, &ro, &e), 0, "%s", e.msg);
	cr_assert_eq(disk_open(&c, &ro, &e), 0, "two readers share: %s", e.msg);
	cr_assert_eq(disk_open(&a, &rw, &e), -EBUSY, "a writer is refused next to readers");
	disk_close(&b);
	disk_close(&c);
	unlink(f.path);
}

Test(disk, non_raw_formats_are_named)
{
	static const struct {
		const char *magic;
		size_t len, off;
		const char *name;
	} cases[] = {
	    {"QFI\xfb\0\0\0\3", 8, 0, "qcow2"},	  {"KDMV", 4, 0, "vmdk"},
	    {"vhdxfile", 8, 0, "vhdx"},		  {"QED\0", 4, 0, "qed"},
	    {"\x7f\x10\xda\xbe", 4, 0x40, "vdi"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake f = {0};
		make_file(&f, 0);
		int fd = open(f.path, O_WRONLY);
		cr_assert_eq(pwrite(fd, cases[i].magic, cases[i].len, (off_t)cases[i].off),
			     (ssize_t)cases[i].len);
		close(fd);
		struct disk d;
		struct errbuf e = {{0}};
		struct disk_opts o = {.path = f.path};
		cr_assert_eq(disk_open(&d, &o, &e), -EINVAL);
		char want[32];
		snprintf(want, sizeof(want), "a %s image", cases[i].name);
		cr_assert(strstr(e.msg, want) && strstr(e.msg, f.path), "%s", e.msg);
		unlink(f.path);
	}
}

Test(disk, missing_file_and_directory_are_refused)
{
	struct disk d;
	struct errbuf e = {{0}};
	struct disk_opts o = {.path = "/nonexistent/kvmini.img"};
	cr_assert_eq(disk_open(&d, &o, &e), -ENOENT);
	cr_assert(strstr(e.msg, "/nonexistent/kvmini.img"), "%s", e.msg);
	o.path = "/tmp";
	cr_assert_lt(disk_open(&d, &o, &e), 0);
	cr_assert(strstr(e.msg, "'/tmp'"), "%s", e.msg);
	o.path = "/dev/null";
	cr_assert_eq(disk_open(&d, &o, &e), -EINVAL);
	cr_assert(strstr(e.msg, "not a regular file or a block device"), "%s", e.msg);
}

/* Each kind of request lands in its own counter: successes with their bytes, host I/O
 * errors as failed, requests refused before any I/O as invalid (QEMU's accounting), an
 * unknown type as unsupported; the QEMU view folds write-zeroes into writes. */
Test(blk, counters_per_kind_ok_failed_invalid)
{
	struct fake *f = fake_new(false, false, false, 1, "ser");
	uint64_t g = alloc_buf(f, 4096, 4096), id = alloc_buf(f, 20, 1);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_OUT, 8, g, 4096, false), VIRTIO_BLK_S_OK);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_OUT, 16, g, 1024, false), VIRTIO_BLK_S_OK);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false), VIRTIO_BLK_S_OK);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_IN, 0, g, 2048, true), VIRTIO_BLK_S_OK);
	cr_assert_eq(do_dz(f, VIRTIO_BLK_T_DISCARD, 256, 16, 0), VIRTIO_BLK_S_OK);
	cr_assert_eq(do_dz(f, VIRTIO_BLK_T_WRITE_ZEROES, 512, 4, 0), VIRTIO_BLK_S_OK);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_GET_ID, 0, id, 20, true), VIRTIO_BLK_S_OK);
	/* Invalid: past the end (read and write), a discard past the end. */
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_IN, DISK_SIZE / 512, g, 512, true),
		     VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_OUT, DISK_SIZE / 512, g, 512, false),
		     VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_dz(f, VIRTIO_BLK_T_DISCARD, DISK_SIZE / 512 - 4, 8, 0), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_rw(f, 0, 99, 0, g, 512, true), VIRTIO_BLK_S_UNSUPP);
	/* Failed: the file shrinks under the device, the read of what is gone fails. */
	cr_assert_eq(truncate(f->path, 4096), 0);
	cr_assert_eq(do_rw(f, 0, VIRTIO_BLK_T_IN, 512, g, 4096, true), VIRTIO_BLK_S_IOERR);

	struct blk_stats s;
	blk_stats(f->d, &s);
	cr_assert_eq(s.requests, 12);
	cr_assert_eq(s.wr_ops, 2);
	cr_assert_eq(s.bytes_written, 4096 + 1024);
	cr_assert_eq(s.flush_ops, 1);
	cr_assert_eq(s.rd_ops, 1);
	cr_assert_eq(s.bytes_read, 2048);
	cr_assert_eq(s.discard_ops, 1);
	cr_assert_eq(s.discard_bytes, 16 * 512);
	cr_assert_eq(s.write_zeroes_ops, 1);
	cr_assert_eq(s.write_zeroes_bytes, 4 * 512);
	cr_assert_eq(s.get_id_ops, 1);
	cr_assert_eq(s.invalid_rd, 1);
	cr_assert_eq(s.invalid_wr, 1);
	cr_assert_eq(s.invalid_discard, 1);
	cr_assert_eq(s.unsupported, 1);
	cr_assert_eq(s.failed_rd, 1);
	cr_assert_eq(s.failed_wr, 0);
	cr_assert_eq(s.errors, 5);
	cr_assert_eq(s.wr_highest_offset, 16 * 512 + 1024);

	struct blk_acct a;
	blk_acct_of(&s, &a);
	cr_assert_eq(a.wr_operations, 3, "write-zeroes is a write in QEMU's accounting");
	cr_assert_eq(a.wr_bytes, 4096 + 1024 + 4 * 512);
	cr_assert_eq(a.unmap_operations, 1);
	cr_assert_eq(a.unmap_bytes, 16 * 512);
	cr_assert_eq(a.invalid_unmap_operations, 1);
	cr_assert_eq(a.failed_rd_operations, 1);

	/* The generic view the monitor prints has the same numbers. */
	struct virtio_stat st[VIRTIO_STATS_MAX];
	unsigned n = virtio_dev_stats(f->d, st, VIRTIO_STATS_MAX);
	bool seen_errors = false;
	for (unsigned i = 0; i < n; i++)
		if (!strcmp(st[i].name, "errors")) {
			cr_assert_eq(st[i].value, 5);
			seen_errors = true;
		}
	cr_assert(seen_errors);
	cr_assert_eq(virtio_dev_stats(f->d, st, 3), 3, "bounded by max");
	fake_free(f);
}
