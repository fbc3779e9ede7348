/* A polling virtio driver core for the test guests: modern virtio-pci (1.0+) and
 * virtio-mmio version 2 behind one API (a small ops table per transport), split
 * virtqueues in a static pool of guest memory.
 *
 * Typical use (works in ring 0 and in ring 3 through user_call; the guest's memory is
 * identity mapped, so a pointer is its guest-physical address):
 *
 *   struct virtio_dev d;
 *   if (virtio_find(&d, VIRTIO_ID_RNG, cmdline) < 0) ... d.err says why
 *   if (virtio_negotiate(&d, 0, VIRTIO_F_VERSION_1, NULL) < 0) ...
 *   static struct virtq q;
 *   if (virtq_setup(&d, &q, 0, 0, VIRTIO_NO_VECTOR) < 0) ...
 *   virtio_driver_ok(&d);
 *   struct virtq_buf b = { buf, 64 };
 *   virtq_add(&q, &b, 0, 1);               (0 readable buffers, 1 writable)
 *   virtq_kick(&q);
 *   uint32_t len; int id = virtq_wait(&q, TSC_HZ_MAX, &len);
 *
 * Functions return 0 (or a non-negative value) on success and -1 on failure with a
 * sentence in d->err. Not thread-safe; one CPU drives a device. */
#ifndef KIT_VIRTIO_H
#define KIT_VIRTIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Device ids (virtio 1.2 section 5) */
#define VIRTIO_ID_NET	  1
#define VIRTIO_ID_BLOCK	  2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG	  4

/* Status bits */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER	  2
#define VIRTIO_STATUS_DRIVER_OK	  4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED	  0x80

/* Transport-independent feature bits */
#define VIRTIO_F_INDIRECT_DESC	 (1ull << 28)
#define VIRTIO_F_EVENT_IDX	 (1ull << 29)
#define VIRTIO_F_VERSION_1	 (1ull << 32)
#define VIRTIO_F_ACCESS_PLATFORM (1ull << 33)
#define VIRTIO_F_RING_PACKED	 (1ull << 34)

#define VIRTIO_NO_VECTOR  0xffff
#define VIRTIO_ISR_QUEUE  1
#define VIRTIO_ISR_CONFIG 2

/* virtio-pci */
#define VIRTIO_PCI_VENDOR	     0x1af4
#define VIRTIO_PCI_MODERN_DEVICE(id) (0x1040 + (id))
#define VIRTIO_PCI_CAP_COMMON	     1
#define VIRTIO_PCI_CAP_NOTIFY	     2
#define VIRTIO_PCI_CAP_ISR	     3
#define VIRTIO_PCI_CAP_DEVICE	     4
#define VIRTIO_PCI_CAP_PCI_CFG	     5
/* common configuration structure offsets */
#define VPCI_DFSELECT	    0x00
#define VPCI_DF		    0x04
#define VPCI_GFSELECT	    0x08
#define VPCI_GF		    0x0c
#define VPCI_MSIX_CONFIG    0x10
#define VPCI_NUM_QUEUES	    0x12
#define VPCI_STATUS	    0x14
#define VPCI_CFG_GENERATION 0x15
#define VPCI_Q_SELECT	    0x16
#define VPCI_Q_SIZE	    0x18
#define VPCI_Q_MSIX	    0x1a
#define VPCI_Q_ENABLE	    0x1c
#define VPCI_Q_NOTIFY_OFF   0x1e
#define VPCI_Q_DESC	    0x20
#define VPCI_Q_DRIVER	    0x28
#define VPCI_Q_DEVICE	    0x30

/* virtio-mmio version 2 registers (virtio 1.2 section 4.2.2) */
#define VIRTIO_MMIO_BASE	  0xfe000000ull /* kvmini: device n at base + 4 KiB * n */
#define VIRTIO_MMIO_STRIDE	  0x1000ull
#define VIRTIO_MMIO_SLOTS	  32
#define VIRTIO_MMIO_MAGIC	  0x74726976u /* "virt" */
#define VMMIO_MAGIC		  0x000
#define VMMIO_VERSION		  0x004
#define VMMIO_DEVICE_ID		  0x008
#define VMMIO_VENDOR_ID		  0x00c
#define VMMIO_DEVICE_FEATURES	  0x010
#define VMMIO_DEVICE_FEATURES_SEL 0x014
#define VMMIO_DRIVER_FEATURES	  0x020
#define VMMIO_DRIVER_FEATURES_SEL 0x024
#define VMMIO_QUEUE_SEL		  0x030
#define VMMIO_QUEUE_NUM_MAX	  0x034
#define VMMIO_QUEUE_NUM		  0x038
#define VMMIO_QUEUE_READY	  0x044
#define VMMIO_QUEUE_NOTIFY	  0x050
#define VMMIO_INTERRUPT_STATUS	  0x060
#define VMMIO_INTERRUPT_ACK	  0x064
#define VMMIO_STATUS		  0x070
#define VMMIO_QUEUE_DESC_LOW	  0x080
#define VMMIO_QUEUE_DESC_HIGH	  0x084
#define VMMIO_QUEUE_DRIVER_LOW	  0x090
#define VMMIO_QUEUE_DRIVER_HIGH	  0x094
#define VMMIO_QUEUE_DEVICE_LOW	  0x0a0
#define VMMIO_QUEUE_DEVICE_HIGH	  0x0a4
#define VMMIO_CONFIG_GENERATION	  0x0fc
#define VMMIO_CONFIG		  0x100

/* Split virtqueue layout (virtio 1.2 section 2.7) */
#define VIRTQ_DESC_F_NEXT	   1
#define VIRTQ_DESC_F_WRITE	   2
#define VIRTQ_DESC_F_INDIRECT	   4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY	   1
#define VIRTQ_MAX_SIZE		   256

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
struct virtq_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[]; /* then used_event */
};
struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};
struct virtq_used {
	uint16_t flags;
	uint16_t idx;
	struct virtq_used_elem ring[]; /* then avail_event */
};

enum virtio_transport { VIRTIO_PCI, VIRTIO_MMIO };

struct virtio_dev;
struct virtq;

/* What a transport provides; the driver core above calls only these. */
struct virtio_ops {
	const char *name; /* "pci", "mmio" */
	uint8_t (*get_status)(struct virtio_dev *d);
	void (*set_status)(struct virtio_dev *d, uint8_t s);
	uint64_t (*get_features)(struct virtio_dev *d);
	void (*set_features)(struct virtio_dev *d, uint64_t f);
	uint32_t (*generation)(struct virtio_dev *d);
	/* device-specific configuration: one access of 1, 2 or 4 bytes at off */
	uint32_t (*cfg_read)(struct virtio_dev *d, uint32_t off, unsigned size);
	void (*cfg_write)(struct virtio_dev *d, uint32_t off, unsigned size, uint32_t v);
	/* largest size the device offers for queue idx (0: no such queue) */
	uint16_t (*queue_max)(struct virtio_dev *d, uint16_t idx);
	/* programs queue q (size, ring addresses, vector) and enables it; -1 on failure */
	int (*queue_enable)(struct virtio_dev *d, struct virtq *q, uint16_t vector);
	void (*notify)(struct virtq *q);
	/* reads (and, for MMIO, acknowledges) the interrupt status */
	uint8_t (*isr)(struct virtio_dev *d);
};

struct virtio_dev {
	const struct virtio_ops *ops;
	enum virtio_transport transport;
	uint32_t device_id;
	uint64_t device_features; /* what the device offered (after virtio_negotiate) */
	uint64_t features;	  /* what was accepted */
	char err[128];
	/* virtio-pci */
	uint16_t bdf;
	uint64_t common, notify, isr, device_cfg; /* structure addresses (BAR + offset) */
	uint32_t notify_mult, device_cfg_len;
	uint16_t num_queues;
	/* virtio-mmio */
	uint64_t base;
};

struct virtq_buf {
	void *addr;
	uint32_t len;
};

struct virtq {
	struct virtio_dev *dev;
	uint16_t index, size;
	struct virtq_desc *desc;
	struct virtq_avail *avail;
	struct virtq_used *used;
	uint64_t notify_addr; /* PCI: where to write the queue index */
	uint16_t free_head, num_free;
	uint16_t avail_idx;		    /* next avail->idx (ours) */
	uint16_t last_used;		    /* next used entry to consume */
	uint16_t chain_len[VIRTQ_MAX_SIZE]; /* descriptors in the chain headed at i */
	uint64_t kicks, kicks_suppressed;
	struct virtq_desc *indirect; /* VIRTQ_INDIRECT_MAX per head, allocated on first use */
};

#define VIRTQ_INDIRECT_MAX 16

/* Memory for rings and buffers: a bump allocator over a static 512 KiB pool (never freed).
 * Returns zeroed memory aligned to align (a power of two), or NULL when the pool is used
 * up. */
void *virtio_alloc(size_t size, size_t align);

/* Opens the modern virtio-pci function bdf: enables it (pci_enable), finds the common,
 * notify, ISR and device-config capabilities and resolves them through their BARs. */
int virtio_pci_open(struct virtio_dev *d, uint16_t bdf);
/* Opens a virtio-mmio device at base: checks MagicValue and Version 2, reads DeviceID (0:
 * no device there, an error). */
int virtio_mmio_open(struct virtio_dev *d, uint64_t base);
/* Finds the first device of type device_id. The command line chooses the transport:
 * `virtio=mmio@ADDR` opens that MMIO address, `virtio=mmio` scans the 32 slots at
 * VIRTIO_MMIO_BASE, `virtio=pci` searches only PCI; without `virtio=`, the windows the VMM
 * announced as `virtio_mmio.device=4K@0xADDR:GSI` (what Linux reads) are tried first, then
 * PCI bus 0 for vendor 0x1af4, device 0x1040 + device_id (also transitional 0x1000-0x103f
 * with that subsystem id). */
int virtio_find(struct virtio_dev *d, uint32_t device_id, const char *cmdline);

/* Reset: writes status 0 and waits (bounded) until the device reads back 0. */
int virtio_reset(struct virtio_dev *d);
uint8_t virtio_get_status(struct virtio_dev *d);
void virtio_set_status(struct virtio_dev *d, uint8_t s);
/* Reset, ACKNOWLEDGE, DRIVER, reads the device's 64 feature bits, writes
 * wanted & offered, sets FEATURES_OK and checks it stuck. VIRTIO_F_VERSION_1 in `required`
 * (and any other bit there) must be offered, else FAILED is set and -1 returned. `got`
 * (may be NULL) receives the accepted features. */
int virtio_negotiate(struct virtio_dev *d, uint64_t wanted, uint64_t required, uint64_t *got);
/* Sets DRIVER_OK. */
void virtio_driver_ok(struct virtio_dev *d);
/* Reads the interrupt status (PCI: the ISR byte, cleared by the read; MMIO:
 * InterruptStatus, then acknowledged). */
uint8_t virtio_isr(struct virtio_dev *d);
/* Copies len bytes of device-specific configuration at off, retried until the
 * configuration generation is the same before and after (bounded). */
int virtio_cfg_read(struct virtio_dev *d, uint32_t off, void *buf, uint32_t len);
void virtio_cfg_write(struct virtio_dev *d, uint32_t off, const void *buf, uint32_t len);
/* PCI only: the MSI-X vector for configuration changes (VPCI_MSIX_CONFIG); returns what
 * the device reads back (VIRTIO_NO_VECTOR if it refused). */
uint16_t virtio_pci_set_config_vector(struct virtio_dev *d, uint16_t vector);

/* Sets up queue idx with size entries (0: the device's maximum, capped at VIRTQ_MAX_SIZE;
 * must be a power of two), rings from virtio_alloc, MSI-X vector (PCI; VIRTIO_NO_VECTOR for
 * none), and enables it. Call between virtio_negotiate and virtio_driver_ok. */
int virtq_setup(struct virtio_dev *d, struct virtq *q, uint16_t idx, uint16_t size,
		uint16_t vector);
/* Adds a chain: n_out device-readable buffers then n_in device-writable ones. Returns the
 * head descriptor id (the id virtq_poll reports), or -1 when the queue is full. Does not
 * notify. */
int virtq_add(struct virtq *q, const struct virtq_buf *bufs, unsigned n_out, unsigned n_in);
/* The same chain as one descriptor pointing at an indirect table (VIRTQ_INDIRECT_MAX
 * entries at most; the table lives in the queue's own area, taken from the pool on first
 * use: size * 256 bytes). Needs VIRTIO_F_INDIRECT_DESC negotiated; -1 otherwise or when
 * full. */
int virtq_add_indirect(struct virtq *q, const struct virtq_buf *bufs, unsigned n_out,
		       unsigned n_in);
/* Publishes the added chains (release order) and notifies the device, unless it set
 * VIRTQ_USED_F_NO_NOTIFY. */
void virtq_kick(struct virtq *q);
/* Notifies unconditionally. */
void virtq_notify(struct virtq *q);
/* One used entry, if any: returns its id and sets *len (bytes written by the device),
 * frees the chain; -1 if none is ready; -2 if the device returned an id that heads no
 * outstanding chain (q->dev->err says so). With VIRTIO_F_EVENT_IDX negotiated, also sets
 * used_event so the next entry interrupts. */
int virtq_poll(struct virtq *q, uint32_t *len);
/* virtq_poll until an entry arrives or timeout TSC cycles pass; -1 on a timeout or a bad
 * used entry (q->dev->err says which). */
int virtq_wait(struct virtq *q, uint64_t timeout_cycles, uint32_t *len);
/* Sets or clears VIRTQ_AVAIL_F_NO_INTERRUPT. */
void virtq_set_no_interrupt(struct virtq *q, bool on);

#endif
