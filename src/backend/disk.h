/* A raw disk image (a regular file or a block device) and asynchronous I/O on it.
 *
 * disk_open() opens the file (read-only or read-write, with O_DIRECT for cache=none),
 * takes an advisory lock on it the way QEMU's image locking does (an OFD write lock, or a
 * read lock for a read-only disk, so a second kvmini on the same image is refused),
 * refuses images in a format kvmini does not read (qcow2, vmdk, vdi, vhdx, qed, ...) by
 * their magic, and finds the size (fstat, or BLKGETSIZE64 for a block device).
 *
 * I/O goes through a struct disk_queue: one per virtqueue, owned by one thread, so two
 * queues share no lock. A queue is an io_uring (many requests in flight, completions
 * reaped by its owner); where io_uring is not available (ENOSYS, EPERM under a seccomp
 * policy) the queue runs each request synchronously with preadv/pwritev on the owner
 * thread instead. Either way the caller sees the same calls: disk_queue_submit() and
 * disk_queue_wait(). */
#ifndef KVMINI_BACKEND_DISK_H
#define KVMINI_BACKEND_DISK_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "util/err.h"

struct disk_opts {
	const char *path;
	bool readonly;
	bool direct;   /* cache=none: O_DIRECT */
	bool no_uring; /* tests: the synchronous fallback, as without io_uring */
};

struct disk {
	char *path;
	int fd;	      /* the I/O fd: O_DIRECT when direct */
	int fd_cache; /* without O_DIRECT: sniffing, and requests O_DIRECT cannot take */
	uint64_t size;
	bool readonly, direct, blockdev;
	/* O_DIRECT's alignment of memory and of offsets/lengths (1 when not direct). */
	uint32_t mem_align, io_align;
	uint32_t block_size; /* the logical block size to announce (512, or the DIO one) */
	bool said_sync;	     /* "no io_uring" was logged once */
	bool no_uring;
};

/* Opens o->path; 0 or -errno with e naming the file and the reason. */
int disk_open(struct disk *d, const struct disk_opts *o, struct errbuf *e);
void disk_close(struct disk *d);
/* The format the first bytes of an image announce ("qcow2", "vmdk", ...) or NULL for
 * raw (what kvmini accepts). buf holds len bytes read from offset 0. */
const char *disk_sniff_format(const uint8_t *buf, size_t len);

enum disk_op {
	DISK_READ,
	DISK_WRITE,
	DISK_FLUSH,	   /* fdatasync */
	DISK_DISCARD,	   /* fallocate(PUNCH_HOLE|KEEP_SIZE); unsupported counts as done */
	DISK_WRITE_ZEROES, /* fallocate(ZERO_RANGE), else PUNCH_HOLE, else written zeroes */
	DISK_ZEROES_UNMAP, /* write zeroes that may deallocate: PUNCH_HOLE first */
};

/* One request. The caller owns it (and iov) until it comes back from disk_queue_wait(). */
struct disk_io {
	enum disk_op op;
	bool dsync; /* a write that must be durable when it completes (no FLUSH negotiated) */
	uint64_t offset;
	uint64_t len;	   /* DISCARD / WRITE_ZEROES */
	struct iovec *iov; /* READ / WRITE; the queue may advance it on a short transfer */
	unsigned iovcnt;
	void *opaque; /* the caller's */
	int res;      /* on completion: 0 or -errno */
	/* Private to the queue. */
	uint64_t done; /* bytes transferred so far */
	void *bounce;  /* an aligned copy for O_DIRECT, when iov is not aligned */
	size_t bounce_len;
	struct iovec bounce_iov;
	int stage; /* write-zeroes fallbacks tried */
	struct disk_io *next;
};

#define DISK_QUEUE_KICK_TAG ((uint64_t)1)

struct disk_queue {
	struct disk *disk;
	bool uring; /* false: synchronous fallback */
	struct io_uring ring;
	unsigned depth;
	unsigned inflight; /* in the ring */
	int kick_fd;	   /* eventfd the owner also waits on (or -1) */
	bool kick_armed;   /* a poll on kick_fd is in the ring */
	uint64_t kick_buf;
	struct disk_io *done_head, *done_tail; /* completed, not yet returned */
};

/* A queue for up to depth requests in flight. kick_fd (or -1) is an eventfd that
 * disk_queue_wait() also wakes up for. 0 or -errno. */
int disk_queue_init(struct disk_queue *q, struct disk *d, unsigned depth, int kick_fd,
		    struct errbuf *e);
/* Waits for in-flight requests, then frees the ring. */
void disk_queue_destroy(struct disk_queue *q);
/* Starts io (queued to the ring; sent by the next disk_queue_wait). -EAGAIN when depth
 * requests are already in flight (wait first); an io that cannot start completes with
 * res < 0 through disk_queue_wait. */
int disk_queue_submit(struct disk_queue *q, struct disk_io *io);
bool disk_queue_full(const struct disk_queue *q);
/* Sends what was submitted, then returns up to max completed requests in out. With block,
 * waits until at least one completes or kick_fd is signalled (*kicked set, its counter
 * read). Returns the number of completions or -errno (-EINTR is returned as 0). */
int disk_queue_wait(struct disk_queue *q, struct disk_io **out, unsigned max, bool block,
		    bool *kicked);
static inline unsigned disk_queue_inflight(const struct disk_queue *q)
{
	return q->inflight;
}

#endif
