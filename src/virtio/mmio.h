/* The virtio-mmio transport, version 2 (virtio 1.2, section 4.2.2): one 4 KiB register
 * window per device (registers at 0x000-0x0fc, the device's configuration space from
 * 0x100), and one interrupt line. The line is level: it is up while InterruptStatus has a
 * bit set (used buffer, configuration change) and goes down when the driver acknowledges
 * the last one. Queue notifications go through KVM_IOEVENTFD where the VM has one (one
 * eventfd per queue, the queue index as datamatch), and through the plain write path
 * otherwise (unit tests, or a value no eventfd matches).
 *
 * The guest is hostile: a register access that is not a naturally aligned 32-bit one
 * (4.2.2.2: "32-bit wide and aligned" for the control registers), a configuration-space
 * access that is not 1, 2, 4 or 8 bytes naturally aligned (the widths of its fields), a
 * QueueSel past the last queue, a queue register written while the queue is ready, or a
 * write to a read-only register is ignored (reads give 0, writes are dropped), counted in
 * bad_accesses and logged once per device, and kvmini carries on. The legacy interface
 * (Version 1) is not offered. */
#ifndef KVMINI_VIRTIO_MMIO_H
#define KVMINI_VIRTIO_MMIO_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <linux/virtio_mmio.h>

#include "core/bus.h"
#include "core/device.h"
#include "core/ioeventfd.h"
#include "core/irq.h"
#include "core/loop.h"
#include "util/err.h"
#include "virtio/virtio.h"

#define VIRTIO_MMIO_WINDOW	  0x1000u
#define VIRTIO_MMIO_KVMINI_VENDOR 0x494d564bu /* "KVMI", little-endian */
#define VIRTIO_MMIO_MAX_DEVICES	  17u	      /* as many as VIRTIO_MMIO_GSIS has lines */

/* The GSI of the n-th virtio-mmio device (n < VIRTIO_MMIO_MAX_DEVICES): the ISA IRQs no
 * legacy device uses (5, 6, 7, 10, 11, 12, 13, 14, 15: not the PIT 0, i8042 1, cascade 2,
 * serial 3/4, RTC 8, ACPI SCI 9), then the IOAPIC-only pins 16-23. */
unsigned virtio_mmio_gsi(unsigned n);

struct virtio_mmio_queue {
	uint32_t num; /* QueueNum as written; checked when the queue is made ready */
	uint64_t desc, driver, device;
};

struct virtio_mmio {
	struct virtio_dev *dev;
	uint64_t base;
	struct irq irq;
	struct bus *bus;
	pthread_mutex_t lock; /* the register file; taken before dev->lock */
	uint32_t device_features_sel, driver_features_sel, queue_sel;
	uint64_t driver_features;
	struct virtio_mmio_queue *queues; /* dev->nqueues of them */
	/* InterruptStatus and the line, changed together under irq_lock. */
	pthread_mutex_t irq_lock;
	uint32_t interrupt_status;
	/* dev->nqueues: QueueNotify's ioeventfds, queue index as datamatch (fd -1: none). */
	struct ioeventfd *kicks;
	/* Ignored hostile accesses, for tests and statistics; the first is logged (a
	 * warning), the rest only counted. */
	atomic_uint bad_accesses;
	atomic_bool bad_logged;
};

/* Puts device d (initialised, not attached) behind a register window at base on bus, with
 * its interrupt on gsi (KVM_IRQ_LINE on vm_fd; vm_fd < 0 only records the level, as unit
 * tests want), and assigns an ioeventfd per queue when vm_fd >= 0 and loop is given (a
 * failure there only logs: the write path serves). Returns 0 or -errno with e filled. */
int virtio_mmio_init(struct virtio_mmio *m, struct virtio_dev *d, struct bus *bus, uint64_t base,
		     unsigned gsi, int vm_fd, struct event_loop *loop, struct errbuf *e);
/* Unregisters the window and the ioeventfds; does not destroy the device. */
void virtio_mmio_destroy(struct virtio_mmio *m);
/* The register file's handler (bus_handler_fn), for tests and the fuzzer. */
void virtio_mmio_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);
/* Back to power-on state (the device too), as at a VM reset. */
void virtio_mmio_reset(struct virtio_mmio *m);

/* Device-list operations for a struct virtio_mmio from virtio_mmio_create: reset, save and
 * load of the register file, destroy (unregisters and frees it). The device has its own
 * entry (virtio_dev_device_ops), registered before the transport's so that the transport
 * is destroyed first. */
extern const struct device_ops virtio_mmio_device_ops;

/* The VM's virtio-mmio windows, handed out in order: window n at 0xfe000000 + 4 KiB * n on
 * GSI virtio_mmio_gsi(n). What the kernel command line announces. */
struct virtio_mmio_layout {
	unsigned n;
	uint64_t base[VIRTIO_MMIO_MAX_DEVICES];
	unsigned gsi[VIRTIO_MMIO_MAX_DEVICES];
};

/* Puts d behind the next window of layout (a heap-allocated transport in *out, for
 * virtio_mmio_device_ops). -ENOSPC once every window is taken. */
int virtio_mmio_create(struct virtio_mmio_layout *layout, struct virtio_dev *d, struct bus *bus,
		       int vm_fd, struct event_loop *loop, struct virtio_mmio **out,
		       struct errbuf *e);

/* virtio_mmio.device=4K@0xADDR:GSI for the kernel command line (what Linux's virtio_mmio
 * module parses). Returns the length snprintf would. */
int virtio_mmio_cmdline(char *buf, size_t size, uint64_t base, unsigned gsi);
/* The user's command line with virtio_mmio.device= appended for every window of layout it
 * does not already name (by its address); malloc'd, NULL when out of memory. */
char *virtio_mmio_cmdline_extend(const char *user, const struct virtio_mmio_layout *layout);

#endif
