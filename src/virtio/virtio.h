/* A virtio device as its transports see it (virtio 1.2, sections 2 and 3): the device
 * status, feature negotiation, the device-specific configuration space, the queues, and the
 * two interrupts a device can send (used buffers, configuration change). A device (rng,
 * blk, net, console, ...) fills a struct virtio_dev_ops and never knows whether it sits on
 * PCI or MMIO; a transport (pci.c, mmio.c) maps its registers onto the calls below and
 * delivers the interrupts through a struct virtio_transport_ops, so neither side names the
 * other. The core here enforces the status state machine (FEATURES_OK only for a subset of
 * what was offered, DRIVER_OK only after it, a write of 0 resets) so devices do not repeat
 * it.
 *
 * Threads: transports call the virtio_dev_* functions from a vCPU thread (a register
 * access) or the loop thread (an ioeventfd); `lock` serialises the control path (status,
 * features, queue set-up, config). The data path (queue_notify and the device's own
 * workers) does not take it: a queue has one owner thread at a time (virtqueue.h). */
#ifndef KVMINI_VIRTIO_VIRTIO_H
#define KVMINI_VIRTIO_VIRTIO_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>

#include "config.h"
#include "core/device.h"
#include "core/guest_mem.h"
#include "core/loop.h"
#include "core/ioeventfd.h"
#include "util/err.h"
#include "virtio/virtqueue.h"

#define VIRTIO_MAX_QUEUES 64

struct virtio_dev;
struct vm_power;

/* One counter of a device, for x-query-virtio-stats and the monitor. */
struct virtio_stat {
	const char *name; /* "rd_bytes", "tx_frames", ...: a static string */
	uint64_t value;
};
#define VIRTIO_STATS_MAX 32

/* A counter updated by one thread at a time (a queue's owner, or under the lock that
 * serialises its writers) and read by anyone: a relaxed load and store, no locked
 * instruction on the data path. */
static inline void virtio_stat_add(atomic_uint_fast64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

struct virtio_dev_ops {
	const char *name;   /* "virtio-rng": the device-list section and messages */
	uint32_t device_id; /* VIRTIO_ID_* from <linux/virtio_ids.h> */
	uint32_t version;   /* of the state blob save() writes */
	/* Device-specific and ring feature bits offered (VIRTIO_RING_F_*, VIRTIO_BLK_F_*, ...);
	 * the core adds VIRTIO_F_VERSION_1 and refuses a driver that does not take it. */
	uint64_t (*features)(struct virtio_dev *d);
	/* The device-specific configuration space, little-endian. The core has bounded offset
	 * and len by config_size; a device ignores writes to read-only fields. */
	void (*config_read)(struct virtio_dev *d, uint32_t offset, void *data, uint32_t len);
	void (*config_write)(struct virtio_dev *d, uint32_t offset, const void *data, uint32_t len);
	/* The driver set DRIVER_OK: d->driver_features is final and the enabled queues are
	 * ready; start serving (threads, backend fds). Returns 0 or -errno (the core then sets
	 * DEVICE_NEEDS_RESET). Optional. */
	int (*start)(struct virtio_dev *d);
	/* The driver kicked queue q (after DRIVER_OK). Called on the loop thread for an
	 * ioeventfd, or on a vCPU thread for a notify register that has none: hand the work
	 * to the queue's worker or do it now, but never block. */
	void (*queue_notify)(struct virtio_dev *d, unsigned q);
	/* An eventfd the device's own thread waits on for queue q's kicks, or -1: the transport
	 * then has KVM signal it directly (KVM_IOEVENTFD), so a kick wakes that thread without
	 * a hop through the loop; queue_notify still serves kicks KVM did not absorb. The fd
	 * lives as long as the device. Optional. */
	int (*kick_fd)(struct virtio_dev *d, unsigned q);
	/* A device reset (the driver wrote status 0, or the VM reset): stop serving and drop
	 * in-flight work before returning; the core resets the queues and the status after. */
	void (*reset)(struct virtio_dev *d);
	int (*save)(struct virtio_dev *d, struct state_writer *w);
	int (*load)(struct virtio_dev *d, struct state_reader *r);
	/* The VM pauses / runs again (struct device_ops): quiesce the data path, finishing or
	 * putting back in-flight work, then serve again. Optional; called only between
	 * DRIVER_OK and a reset for pause, always for resume. */
	void (*pause)(struct virtio_dev *d);
	void (*resume)(struct virtio_dev *d);
	void (*destroy)(struct virtio_dev *d);
	/* The device's counters (requests, bytes, errors), at most max of them, read from any
	 * thread without stopping the device. Returns how many. Optional. */
	unsigned (*stats)(struct virtio_dev *d, struct virtio_stat *out, unsigned max);
};

/* What a transport provides to the devices on it. */
struct virtio_transport_ops {
	/* Interrupt the driver: buffers were used in queue q (the queue's MSI-X vector, or the
	 * ISR's queue bit and INTx / the MMIO interrupt line). */
	void (*notify_queue)(void *transport, unsigned q);
	/* The configuration space (or NEEDS_RESET) changed. */
	void (*notify_config)(void *transport);
};

struct virtio_dev {
	const struct virtio_dev_ops *ops;
	void *priv; /* the device's own state */
	const struct guest_mem *mem;
	uint32_t config_size;
	unsigned nqueues;
	struct virtqueue *vqs; /* nqueues of them */
	pthread_mutex_t lock;  /* control path: status, features, queue set-up, config */
	atomic_uchar status;   /* VIRTIO_CONFIG_S_* */
	uint64_t driver_features;
	atomic_uint config_generation;
	const struct virtio_transport_ops *tops;
	void *transport;
	/* For the monitor: where the transport put the device ("pci" and "00:01.0", "mmio"
	 * and "0xfe000000"; empty until attached) and its QOM-style path, as QEMU names
	 * the backend of a -device (/machine/peripheral/ID/virtio-backend, or
	 * /machine/peripheral-anon/device[N]/virtio-backend without id=). */
	char transport_name[8];
	char address[24];
	char qdev[96];
};

/* Sets up d with nqueues queues of max_queue_size; returns 0 or -errno. The transport
 * calls virtio_dev_attach() once it exists. */
int virtio_dev_init(struct virtio_dev *d, const struct virtio_dev_ops *ops, void *priv,
		    const struct guest_mem *mem, unsigned nqueues, unsigned max_queue_size,
		    uint32_t config_size);
void virtio_dev_attach(struct virtio_dev *d, const struct virtio_transport_ops *tops,
		       void *transport);
/* Calls ops->destroy and frees the queues. */
void virtio_dev_destroy(struct virtio_dev *d);

/* For transports. */
uint64_t virtio_dev_offered_features(struct virtio_dev *d); /* with VIRTIO_F_VERSION_1 */
/* Before FEATURES_OK only; bits not offered are dropped (and FEATURES_OK then refused). */
void virtio_dev_set_driver_features(struct virtio_dev *d, uint64_t features);
/* A status write: 0 resets the device; FEATURES_OK is kept only if the features are a
 * subset of the offer that includes VERSION_1; DRIVER_OK enables the device's start().
 * Returns the status as the driver will read it back. */
uint8_t virtio_dev_set_status(struct virtio_dev *d, uint8_t status);
void virtio_dev_reset(struct virtio_dev *d);
void virtio_dev_config_read(struct virtio_dev *d, uint32_t offset, void *data, uint32_t len);
void virtio_dev_config_write(struct virtio_dev *d, uint32_t offset, const void *data, uint32_t len);
/* Sets up io, queue q's notification eventfd: the device's own (ops->kick_fd) when it has
 * one, else a new one on loop that calls fn(opaque, q). 0 or -errno with e filled. */
static inline int virtio_dev_ioeventfd_init(struct virtio_dev *d, unsigned q, struct ioeventfd *io,
					    int vm_fd, struct event_loop *loop, ioeventfd_fn fn,
					    void *opaque, struct errbuf *e)
{
	int fd = d->ops->kick_fd ? d->ops->kick_fd(d, q) : -1;
	if (fd >= 0) {
		ioeventfd_init_fd(io, vm_fd, fd);
		return 0;
	}
	return ioeventfd_init(io, vm_fd, loop, fn, opaque, q, e);
}
/* A kick for queue q: ignored unless DRIVER_OK is set and q is enabled. */
void virtio_dev_queue_notify(struct virtio_dev *d, unsigned q);

/* For devices. After pushing used buffers on q: interrupts the driver if the queue's
 * suppression rules (virtqueue_should_notify) allow. */
void virtio_dev_used(struct virtio_dev *d, unsigned q);
/* The driver broke the rules (a broken queue) or the backend failed for good: sets
 * DEVICE_NEEDS_RESET and sends a configuration interrupt. */
void virtio_dev_needs_reset(struct virtio_dev *d, const char *why);
/* The device changed its configuration space (capacity, link status). */
void virtio_dev_config_changed(struct virtio_dev *d);
static inline bool virtio_dev_has_feature(const struct virtio_dev *d, unsigned bit)
{
	return d->driver_features & (1ull << bit);
}

/* The device's counters through ops->stats (0 if it has none). */
unsigned virtio_dev_stats(struct virtio_dev *d, struct virtio_stat *out, unsigned max);
/* The virtio device a device-list entry holds, or NULL if the entry is something else. */
struct virtio_dev *virtio_dev_of(const struct device *entry);

/* The device list's operations for a virtio device (reset, save/load of status, features,
 * queue positions and the device's own blob, destroy), for whoever registers one. */
extern const struct device_ops virtio_dev_device_ops;

/* Device types, found by name so that vm.c does not name them: each device file defines
 * one struct virtio_dev_type, and virtio/registry.c lists them in a table. `create` reads
 * its options (-device's keys, or the kvmini option's), builds the device and returns it
 * initialised but not attached. */
struct virtio_create_ctx {
	const struct guest_mem *mem;
	struct event_loop *loop;
	struct vm_power *power; /* stop requests (a console's Ctrl-A x); may be NULL */
	const struct vm_config *cfg;
};
struct virtio_dev_type {
	const char *name; /* "virtio-rng", the part of QEMU's driver name before -pci/-device */
	int (*create)(const struct virtio_create_ctx *ctx, const struct keyed_opts *opts,
		      struct virtio_dev **out, struct errbuf *e);
};
/* The type for a QEMU driver name: "virtio-rng-pci", "virtio-rng-device" (MMIO) and
 * "virtio-rng" all find virtio-rng. NULL if kvmini has no such device. */
const struct virtio_dev_type *virtio_find_type(const char *driver);

#endif
