/* virtio-blk on a raw disk: the device type the registry lists, and a direct constructor
 * for tests and for the option translation. */
#ifndef KVMINI_VIRTIO_BLK_H
#define KVMINI_VIRTIO_BLK_H

#include <stdint.h>

#include "backend/disk.h"
#include "core/guest_mem.h"
#include "util/err.h"

struct virtio_dev;

struct blk_params {
	struct disk_opts disk;
	const char *serial;   /* GET_ID's answer (up to 20 bytes are used), or NULL */
	unsigned queues;      /* 0 or 1: one queue */
	const char *drive_id; /* the -drive's id, for the monitor; may be NULL */
};

/* Opens the disk and builds the device, initialised but not attached; the device list's
 * destroy (virtio_dev_device_ops) frees it. 0 or -errno with e filled. */
int blk_create(const struct guest_mem *mem, const struct blk_params *p, struct virtio_dev **out,
	       struct errbuf *e);

/* The device's counters, summed over its queues (each queue's worker keeps its own). A
 * request counts once it completes: in *_ops (and its bytes) if it succeeded, in failed_*
 * if the host I/O failed, in invalid_* if it was refused before any I/O (past the end, a
 * write to a read-only disk, a bad layout, an operation not negotiated), as QEMU's
 * block accounting does. errors counts every status other than OK. */
struct blk_stats {
	uint64_t requests; /* popped from the rings, whatever their type */
	uint64_t rd_ops, wr_ops, flush_ops, discard_ops, write_zeroes_ops, get_id_ops;
	uint64_t bytes_read, bytes_written, discard_bytes, write_zeroes_bytes;
	uint64_t failed_rd, failed_wr, failed_flush, failed_discard, failed_write_zeroes;
	uint64_t invalid_rd, invalid_wr, invalid_flush, invalid_discard, invalid_write_zeroes;
	uint64_t unsupported; /* an unknown request type (VIRTIO_BLK_S_UNSUPP) */
	uint64_t errors;
	uint64_t wr_highest_offset; /* the end of the furthest write, in bytes */
};
void blk_stats(struct virtio_dev *d, struct blk_stats *s);
/* The same counters in QEMU's block accounting (BlockDeviceStats of query-blockstats):
 * write-zeroes counts as a write and discard as an unmap, as QEMU's virtio-blk does. */
struct blk_acct {
	uint64_t rd_bytes, wr_bytes, unmap_bytes;
	uint64_t rd_operations, wr_operations, flush_operations, unmap_operations;
	uint64_t failed_rd_operations, failed_wr_operations, failed_flush_operations,
	    failed_unmap_operations;
	uint64_t invalid_rd_operations, invalid_wr_operations, invalid_flush_operations,
	    invalid_unmap_operations;
	uint64_t wr_highest_offset;
};
void blk_acct_of(const struct blk_stats *s, struct blk_acct *a);

/* The -drive id the device serves (NULL if it was made without one). */
const char *blk_drive_id(struct virtio_dev *d);

/* For the fuzzer and tests, on a device whose driver is not running it (DRIVER_OK not
 * set, or the queues never started): serves queue q on the calling thread until nothing
 * is available or in flight. 0, or -EBUSY if the queue has its worker. */
int blk_run_queue_once(struct virtio_dev *d, unsigned q);

extern const struct virtio_dev_type virtio_blk_type;

#endif
