#include "backend/disk.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"

/* Magic numbers at the start of the image formats people mistake for raw ones (QEMU's
 * block drivers probe the same bytes). */
const char *disk_sniff_format(const uint8_t *buf, size_t len)
{
	static const struct {
		size_t off;
		const char *magic;
		size_t n;
		const char *name;
	} magics[] = {
	    {0, "KDMV", 4, "vmdk"},
	    {0, "COWD", 4, "vmdk"},
	    {0, "# Disk DescriptorFile", 21, "vmdk"},
	    {0, "vhdxfile", 8, "vhdx"},
	    {0, "QED\0", 4, "qed"},
	    {0, "conectix", 8, "vpc (VHD)"},
	    {0, "WithoutFreeSpace", 16, "parallels"},
	    {0, "WithouFreSpacExt", 16, "parallels"},
	    {0, "LUKS\xba\xbe", 6, "luks"},
	    {0x40, "\x7f\x10\xda\xbe", 4, "vdi"},
	};
	if (len >= 8 && !memcmp(buf, "QFI\xfb", 4)) {
		uint32_t version = (uint32_t)buf[4] << 24 | (uint32_t)buf[5] << 16 |
				   (uint32_t)buf[6] << 8 | buf[7];
		return version == 1 ? "qcow" : "qcow2";
	}
	for (size_t i = 0; i < sizeof(magics) / sizeof(magics[0]); i++)
		if (len >= magics[i].off + magics[i].n &&
		    !memcmp(buf + magics[i].off, magics[i].magic, magics[i].n))
			return magics[i].name;
	return NULL;
}

static void dio_alignment(struct disk *d)
{
	struct statx stx;
	uint32_t mem = 0, io = 0;

	if (statx(d->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN)) {
		mem = stx.stx_dio_mem_align;
		io = stx.stx_dio_offset_align;
	}
	if (!io && d->blockdev) {
		int lbs;
		if (ioctl(d->fd, BLKSSZGET, &lbs) == 0 && lbs > 0)
			io = (uint32_t)lbs;
	}
	if (!io)
		io = 4096; /* what no file system asks more than */
	if (!mem)
		mem = io;
	d->mem_align = mem;
	d->io_align = io;
	d->block_size = io > 512 ? io : 512;
}

int disk_open(struct disk *d, const struct disk_opts *o, struct errbuf *e)
{
	int flags = (o->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct stat st;
	uint8_t head[4096];
	ssize_t n;
	int err;

	memset(d, 0, sizeof(*d));
	d->fd = d->fd_cache = -1;
	d->readonly = o->readonly;
	d->direct = o->direct;
	d->no_uring = o->no_uring;
	d->mem_align = d->io_align = 1;
	d->block_size = 512;
	d->path = strdup(o->path);
	if (!d->path)
		return -ENOMEM;
	d->fd_cache = open(o->path, flags);
	if (d->fd_cache < 0) {
		err = -errno;
		errf(e, err, "cannot open disk '%s': %s%s", o->path, strerror(-err),
		     (!o->readonly && (err == -EROFS || err == -EACCES))
			 ? " (add ,ro for a read-only disk)"
			 : "");
		goto fail;
	}
	if (fstat(d->fd_cache, &st) < 0) {
		err = -errno;
		errf(e, err, "cannot stat disk '%s': %s", o->path, strerror(-err));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		err = -EINVAL;
		errf(e, err, "disk '%s' is not a regular file or a block device", o->path);
		goto fail;
	}
	d->blockdev = S_ISBLK(st.st_mode);
	/* QEMU's image locking, in its simplest form: writers exclude everyone, readers
	 * exclude writers. OFD locks belong to the open file, so they also stop the same
	 * image being given twice to one kvmini. */
	struct flock fl = {.l_type = o->readonly ? F_RDLCK : F_WRLCK, .l_whence = SEEK_SET};
	if (fcntl(d->fd_cache, F_OFD_SETLK, &fl) < 0) {
		err = -errno;
		if (err == -EAGAIN || err == -EACCES) {
			err = -EBUSY;
			errf(e, err,
			     "disk '%s' is in use: another kvmini (or another program) holds a "
			     "lock on it",
			     o->path);
		} else {
			errf(e, err, "cannot lock disk '%s': %s", o->path, strerror(-err));
		}
		goto fail;
	}
	n = pread(d->fd_cache, head, sizeof(head), 0);
	if (n < 0) {
		err = -errno;
		errf(e, err, "cannot read disk '%s': %s", o->path, strerror(-err));
		goto fail;
	}
	const char *fmt = disk_sniff_format(head, (size_t)n);
	if (fmt) {
		err = -EINVAL;
		errf(e, err,
		     "disk '%s' is a %s image; kvmini reads raw images only (convert it "
		     "with qemu-img convert -O raw)",
		     o->path, fmt);
		goto fail;
	}
	if (d->blockdev) {
		if (ioctl(d->fd_cache, BLKGETSIZE64, &d->size) < 0) {
			err = -errno;
			errf(e, err, "cannot get the size of disk '%s': %s", o->path,
			     strerror(-err));
			goto fail;
		}
	} else {
		d->size = (uint64_t)st.st_size;
	}
	if (o->direct) {
		d->fd = open(o->path, flags | O_DIRECT);
		if (d->fd < 0) {
			err = -errno;
			errf(e, err, "cannot open disk '%s' with cache=none (O_DIRECT): %s",
			     o->path, strerror(-err));
			goto fail;
		}
		dio_alignment(d);
	} else {
		d->fd = d->fd_cache;
	}
	return 0;
fail:
	disk_close(d);
	return err;
}

void disk_close(struct disk *d)
{
	if (d->fd >= 0 && d->fd != d->fd_cache)
		close(d->fd);
	if (d->fd_cache >= 0)
		close(d->fd_cache);
	d->fd = d->fd_cache = -1;
	free(d->path);
	d->path = NULL;
}

/* --- requests --- */

static uint64_t iov_total(const struct iovec *iov, unsigned n)
{
	uint64_t t = 0;
	for (unsigned i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

static bool iov_aligned(const struct disk *d, const struct iovec *iov, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (((uintptr_t)iov[i].iov_base & (d->mem_align - 1)) ||
		    (iov[i].iov_len & (d->io_align - 1)))
			return false;
	return true;
}

static void iov_copy_from(const struct iovec *iov, unsigned n, uint8_t *dst)
{
	for (unsigned i = 0; i < n; i++) {
		memcpy(dst, iov[i].iov_base, iov[i].iov_len);
		dst += iov[i].iov_len;
	}
}

static void iov_copy_to(const struct iovec *iov, unsigned n, const uint8_t *src)
{
	for (unsigned i = 0; i < n; i++) {
		memcpy(iov[i].iov_base, src, iov[i].iov_len);
		src += iov[i].iov_len;
	}
}

/* Skips `bytes` of the front of *iov (a short transfer continues where it stopped). */
static void iov_advance(struct iovec **iov, unsigned *n, uint64_t bytes)
{
	while (*n && bytes >= (*iov)->iov_len) {
		bytes -= (*iov)->iov_len;
		(*iov)++;
		(*n)--;
	}
	if (*n && bytes) {
		(*iov)->iov_base = (uint8_t *)(*iov)->iov_base + bytes;
		(*iov)->iov_len -= bytes;
	}
}

/* The fd and buffers a read or write uses. With O_DIRECT, a request whose offset or length
 * is not aligned goes through the cached fd (the kernel keeps the two coherent: direct I/O
 * writes back and drops the cached range first); one whose memory is not aligned goes
 * through an aligned bounce buffer. */
struct rw_plan {
	int fd;
	struct iovec *iov;
	unsigned iovcnt;
};

static int plan_rw(struct disk *d, struct disk_io *io, struct rw_plan *p)
{
	p->fd = d->fd;
	p->iov = io->iov;
	p->iovcnt = io->iovcnt;
	if (!d->direct)
		return 0;
	uint64_t total = io->bounce ? io->bounce_len : iov_total(io->iov, io->iovcnt);
	if ((io->offset | total) & (d->io_align - 1)) {
		p->fd = d->fd_cache;
		return 0;
	}
	if (!io->bounce && !iov_aligned(d, io->iov, io->iovcnt)) {
		size_t align = d->mem_align > d->io_align ? d->mem_align : d->io_align;
		io->bounce = aligned_alloc(align, (total + align - 1) / align * align);
		if (!io->bounce)
			return -ENOMEM;
		io->bounce_len = total;
		if (io->op == DISK_WRITE)
			iov_copy_from(io->iov, io->iovcnt, io->bounce);
	}
	if (io->bounce) {
		io->bounce_iov.iov_base = (uint8_t *)io->bounce + io->done;
		io->bounce_iov.iov_len = io->bounce_len - io->done;
		p->iov = &io->bounce_iov;
		p->iovcnt = 1;
	}
	return 0;
}

static const int zero_stages_write[] = {FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
					FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, -1};
static const int zero_stages_unmap[] = {FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, -1};

static int falloc_mode(const struct disk_io *io)
{
	switch (io->op) {
	case DISK_DISCARD:
		return FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	case DISK_WRITE_ZEROES:
		return zero_stages_write[io->stage];
	case DISK_ZEROES_UNMAP:
		return zero_stages_unmap[io->stage];
	default:
		return -1;
	}
}

/* The last resort of write-zeroes: zeroes written out (on the owner thread). */
static int write_zeroes_slow(struct disk *d, const struct disk_io *io)
{
	static const uint8_t zeroes[65536];
	uint64_t off = io->offset, left = io->len;
	while (left) {
		size_t n = left < sizeof(zeroes) ? left : sizeof(zeroes);
		ssize_t w = pwrite(d->fd_cache, zeroes, n, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		off += (uint64_t)w;
		left -= (uint64_t)w;
	}
	if (io->dsync && fdatasync(d->fd_cache) < 0)
		return -errno;
	return 0;
}

/* A result arrived for io: true when io is finished (io->res set), false when it must be
 * sent again (a short transfer, a fallback). */
static bool io_finish(struct disk *d, struct disk_io *io, int res)
{
	switch (io->op) {
	case DISK_READ:
	case DISK_WRITE: {
		uint64_t total = io->bounce ? io->bounce_len : 0;
		if (res > 0) {
			io->done += (uint64_t)res;
			if (!io->bounce) {
				iov_advance(&io->iov, &io->iovcnt, (uint64_t)res);
				if (io->iovcnt)
					return false;
			} else if (io->done < total) {
				return false;
			}
			res = 0;
		} else if (res == 0) {
			res = -EIO; /* end of file inside the disk: it shrank under us */
		}
		if (io->bounce) {
			if (res == 0 && io->op == DISK_READ)
				iov_copy_to(io->iov, io->iovcnt, io->bounce);
			free(io->bounce);
			io->bounce = NULL;
		}
		break;
	}
	case DISK_DISCARD:
		/* A discard is a hint: a file system without holes just keeps the data. */
		if (res == -EOPNOTSUPP || res == -EINVAL)
			res = 0;
		break;
	case DISK_WRITE_ZEROES:
	case DISK_ZEROES_UNMAP:
		if (res == -EOPNOTSUPP || res == -EINVAL) {
			io->stage++;
			if (falloc_mode(io) >= 0)
				return false;
			res = write_zeroes_slow(d, io);
		} else if (res == 0 && io->dsync && fdatasync(d->fd_cache) < 0) {
			res = -errno;
		}
		break;
	case DISK_FLUSH:
		break;
	}
	io->res = res < 0 ? res : 0;
	return true;
}

static int io_sync(struct disk *d, struct disk_io *io)
{
	struct rw_plan p;
	ssize_t r;
	int ret;

	switch (io->op) {
	case DISK_READ:
	case DISK_WRITE:
		if ((ret = plan_rw(d, io, &p)))
			return ret;
		do {
			if (io->op == DISK_READ)
				r = preadv(p.fd, p.iov, (int)p.iovcnt,
					   (off_t)(io->offset + io->done));
			else
				r = pwritev2(p.fd, p.iov, (int)p.iovcnt,
					     (off_t)(io->offset + io->done),
					     io->dsync ? RWF_DSYNC : 0);
		} while (r < 0 && errno == EINTR);
		return r < 0 ? -errno : (int)r;
	case DISK_FLUSH:
		return fdatasync(d->fd) < 0 ? -errno : 0;
	default:
		return fallocate(d->fd, falloc_mode(io), (off_t)io->offset, (off_t)io->len) < 0
			   ? -errno
			   : 0;
	}
}

static void done_push(struct disk_queue *q, struct disk_io *io)
{
	io->next = NULL;
	if (q->done_tail)
		q->done_tail->next = io;
	else
		q->done_head = io;
	q->done_tail = io;
}

static struct io_uring_sqe *get_sqe(struct disk_queue *q)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
	if (!sqe) {
		io_uring_submit(&q->ring);
		sqe = io_uring_get_sqe(&q->ring);
	}
	return sqe;
}

/* Puts io in the ring; 0, or -errno when it cannot start (io then is not in flight). */
static int uring_queue(struct disk_queue *q, struct disk_io *io)
{
	struct disk *d = q->disk;
	struct rw_plan p;
	int ret;

	struct io_uring_sqe *sqe = get_sqe(q);
	if (!sqe)
		return -EBUSY;
	switch (io->op) {
	case DISK_READ:
	case DISK_WRITE:
		if ((ret = plan_rw(d, io, &p)))
			return ret;
		if (io->op == DISK_READ)
			io_uring_prep_readv(sqe, p.fd, p.iov, p.iovcnt, io->offset + io->done);
		else
			io_uring_prep_writev2(sqe, p.fd, p.iov, p.iovcnt, io->offset + io->done,
					      io->dsync ? RWF_DSYNC : 0);
		break;
	case DISK_FLUSH:
		io_uring_prep_fsync(sqe, d->fd, IORING_FSYNC_DATASYNC);
		break;
	default:
		io_uring_prep_fallocate(sqe, d->fd, falloc_mode(io), io->offset, io->len);
		break;
	}
	io_uring_sqe_set_data(sqe, io);
	return 0;
}

int disk_queue_init(struct disk_queue *q, struct disk *d, unsigned depth, int kick_fd,
		    struct errbuf *e)
{
	memset(q, 0, sizeof(*q));
	q->disk = d;
	q->depth = depth ? depth : 1;
	q->kick_fd = kick_fd;
	/* Room for every request, a re-sent one per request and the kick's poll. */
	int ret = d->no_uring ? -ENOSYS : io_uring_queue_init(2 * q->depth + 2, &q->ring, 0);
	if (ret == 0) {
		q->uring = true;
		return 0;
	}
	if (ret != -ENOSYS && ret != -EPERM && ret != -ENOMEM) {
		errf(e, ret, "cannot set up io_uring for disk '%s': %s", d->path, strerror(-ret));
		return ret;
	}
	if (!d->said_sync) {
		d->said_sync = true;
		log_info("disk %s: io_uring is not available (%s): one request at a time with "
			 "preadv/pwritev",
			 d->path, strerror(-ret));
	}
	return 0;
}

bool disk_queue_full(const struct disk_queue *q)
{
	return q->uring && q->inflight >= q->depth;
}

int disk_queue_submit(struct disk_queue *q, struct disk_io *io)
{
	io->done = 0;
	io->stage = 0;
	io->bounce = NULL;
	io->res = 0;
	if (io->op == DISK_FLUSH && q->disk->readonly) {
		done_push(q, io);
		return 0;
	}
	if (!q->uring) {
		while (!io_finish(q->disk, io, io_sync(q->disk, io)))
			;
		done_push(q, io);
		return 0;
	}
	if (q->inflight >= q->depth)
		return -EAGAIN;
	int ret = uring_queue(q, io);
	if (ret) {
		io->res = ret;
		done_push(q, io);
		return 0;
	}
	q->inflight++;
	return 0;
}

static void reap(struct disk_queue *q, bool *kicked)
{
	struct io_uring_cqe *cqe;
	while (io_uring_peek_cqe(&q->ring, &cqe) == 0) {
		uint64_t tag = cqe->user_data;
		int res = cqe->res;
		io_uring_cqe_seen(&q->ring, cqe);
		if (tag == DISK_QUEUE_KICK_TAG) {
			uint64_t v;
			q->kick_armed = false;
			if (read(q->kick_fd, &v, sizeof(v)) < 0) {
				/* nothing pending: a spurious wake-up */
			}
			if (kicked)
				*kicked = true;
			continue;
		}
		struct disk_io *io = (struct disk_io *)(uintptr_t)tag;
		if (!io_finish(q->disk, io, res)) {
			int ret = uring_queue(q, io);
			if (ret == 0)
				continue;
			if (io->bounce) {
				free(io->bounce);
				io->bounce = NULL;
			}
			io->res = ret;
		}
		q->inflight--;
		done_push(q, io);
	}
}

int disk_queue_wait(struct disk_queue *q, struct disk_io **out, unsigned max, bool block,
		    bool *kicked)
{
	if (kicked)
		*kicked = false;
	if (q->uring) {
		if (q->kick_fd >= 0 && !q->kick_armed) {
			struct io_uring_sqe *sqe = get_sqe(q);
			if (sqe) {
				io_uring_prep_poll_add(sqe, q->kick_fd, POLLIN);
				io_uring_sqe_set_data64(sqe, DISK_QUEUE_KICK_TAG);
				q->kick_armed = true;
			}
		}
		int ret;
		if (block && !q->done_head && io_uring_cq_ready(&q->ring) == 0)
			ret = io_uring_submit_and_wait(&q->ring, 1);
		else
			ret = io_uring_submit(&q->ring);
		if (ret < 0 && ret != -EINTR && ret != -EBUSY && ret != -EAGAIN)
			return ret;
		reap(q, kicked);
	} else if (block && !q->done_head && q->kick_fd >= 0) {
		struct pollfd pfd = {.fd = q->kick_fd, .events = POLLIN};
		if (poll(&pfd, 1, -1) > 0) {
			uint64_t v;
			if (read(q->kick_fd, &v, sizeof(v)) == sizeof(v) && kicked)
				*kicked = true;
		}
	}
	unsigned n = 0;
	while (n < max && q->done_head) {
		struct disk_io *io = q->done_head;
		q->done_head = io->next;
		if (!q->done_head)
			q->done_tail = NULL;
		out[n++] = io;
	}
	return (int)n;
}

void disk_queue_destroy(struct disk_queue *q)
{
	if (!q->uring)
		return;
	/* Requests in flight write into buffers the caller is about to free. */
	while (q->inflight) {
		if (io_uring_submit_and_wait(&q->ring, 1) < 0 && errno != EINTR)
			break;
		reap(q, NULL);
	}
	io_uring_queue_exit(&q->ring);
	q->uring = false;
}
