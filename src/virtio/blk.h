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
	const char *serial; /* GET_ID's answer (up to 20 bytes are used), or NULL */
	unsigned queues;    /* 0 or 1: one queue */
};

/* Opens the disk and builds the device, initialised but not attached; the device list's
 * destroy (virtio_dev_device_ops) frees it. 0 or -errno with e filled. */
int blk_create(const struct guest_mem *mem, const struct blk_params *p, struct virtio_dev **out,
	       struct errbuf *e);

struct blk_stats {
	uint64_t requests, bytes_read, bytes_written, errors;
};
void blk_stats(struct virtio_dev *d, struct blk_stats *s);

/* For the fuzzer and tests, on a device whose driver is not running it (DRIVER_OK not
 * set, or the queues never started): serves queue q on the calling thread until nothing
 * is available or in flight. 0, or -EBUSY if the queue has its worker. */
int blk_run_queue_once(struct virtio_dev *d, unsigned q);

extern const struct virtio_dev_type virtio_blk_type;

#endif
