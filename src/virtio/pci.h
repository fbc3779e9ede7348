/* The virtio-pci modern transport (virtio 1.2, 4.1): a PCI function 1af4:(0x1040 + device
 * id), revision 1, with one 32-bit memory BAR holding the common configuration, the
 * notification addresses (one per queue, 4 bytes apart), the ISR, the device
 * configuration and the MSI-X table and PBA; the virtio vendor capabilities (common,
 * notify, ISR, device, PCI config access window) and an MSI-X capability point into it.
 *
 * Interrupts: MSI-X vectors are irqfds on MSI routes of the VM's router (the route follows
 * the table entry; a masked vector sets its PBA bit and fires when unmasked); with MSI-X
 * off, the ISR bit and a level-triggered IOAPIC line (lowered when the driver reads the
 * ISR). Queue notifications are KVM ioeventfds drained on the event loop; the MMIO write
 * path does the same when KVM refuses one. */
#ifndef KVMINI_VIRTIO_PCI_H
#define KVMINI_VIRTIO_PCI_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/device.h"
#include "core/ioeventfd.h"
#include "core/irq.h"
#include "core/loop.h"
#include "devices/pci.h"
#include "util/err.h"
#include "virtio/virtio.h"

/* BAR 0 layout (a power of two). */
#define VIRTIO_PCI_BAR_SIZE	 0x8000u
#define VIRTIO_PCI_COMMON_OFFSET 0x0000u
#define VIRTIO_PCI_ISR_OFFSET	 0x1000u
#define VIRTIO_PCI_DEVICE_OFFSET 0x2000u
#define VIRTIO_PCI_NOTIFY_OFFSET 0x3000u
#define VIRTIO_PCI_MSIX_TABLE	 0x4000u
#define VIRTIO_PCI_MSIX_PBA	 0x5000u
#define VIRTIO_PCI_REGION_SIZE	 0x1000u
#define VIRTIO_PCI_NOTIFY_MULT	 4u
#define VIRTIO_PCI_VENDOR	 0x1af4
#define VIRTIO_PCI_DEVICE_BASE	 0x1040
#define VIRTIO_PCI_SUBSYS_VENDOR 0x1af4
#define VIRTIO_PCI_INTX_GSI_BASE 16 /* INTA of slot s on IOAPIC pin 16 + s % 8 */
/* The MSI-X table's room: 0x4000-0x5000 of 16-byte entries. */
#define VIRTIO_PCI_MAX_VECTORS ((VIRTIO_PCI_MSIX_PBA - VIRTIO_PCI_MSIX_TABLE) / 16)

struct virtio_pci_env {
	struct pci_host *host;
	struct irq_router *router;
	struct event_loop *loop;
	int vm_fd; /* < 0: nothing reaches KVM (unit tests) */
	/* MSI-X table entries (QEMU's vectors=), when vectors_given: 0 is no MSI-X capability
	 * at all (INTx only), at most VIRTIO_PCI_MAX_VECTORS. Otherwise one per queue plus one
	 * for configuration changes. */
	bool vectors_given;
	unsigned vectors;
};

struct virtio_pci_vector {
	uint32_t addr_lo, addr_hi, data, ctrl; /* the table entry as the guest wrote it */
	bool pending;			       /* the PBA bit */
	bool have_irq;			       /* irq holds an MSI route */
	struct irq irq;
};

struct virtio_pci {
	struct pci_function fn;
	struct virtio_dev *dev;
	struct virtio_pci_env env;
	/* Lock order: lock, then the device's d->lock, then irq_lock (a leaf: nothing is
	 * taken under it), so a device worker interrupting during a reset that waits for it
	 * never waits for a vCPU stuck behind the reset. */
	pthread_mutex_t lock;	  /* selectors and queue vectors (the common configuration) */
	pthread_mutex_t irq_lock; /* the MSI-X table, PBA and enable bits, the ISR, INTx */
	uint32_t device_feature_select, driver_feature_select;
	uint64_t driver_features; /* as written, both halves */
	uint16_t queue_select;
	uint16_t msix_config;
	uint16_t queue_vector[VIRTIO_MAX_QUEUES];
	bool msix_enabled, msix_masked;
	unsigned nvectors;
	struct virtio_pci_vector *vec;
	atomic_uchar isr;
	struct irq intx;
	bool intx_on_loop;	   /* intx.resample_fd is watched by the loop */
	uint8_t msix_cap, cfg_cap; /* config-space offsets of those capabilities (msix_cap 0:
				    * none, vectors=0) */
	struct ioeventfd notify[VIRTIO_MAX_QUEUES];
	bool notify_in_kernel[VIRTIO_MAX_QUEUES];
};

/* Puts d on the PCI bus as a new function and attaches it (virtio_dev_attach). The
 * transport does not own d. 0 or -errno with e filled. */
int virtio_pci_create(const struct virtio_pci_env *env, struct virtio_dev *d,
		      struct virtio_pci **out, struct errbuf *e);
/* The device list's view: reset (vectors, ISR, selectors), save/load, destroy (takes the
 * function off the bus, closes fds, frees). */
extern const struct device_ops virtio_pci_device_ops;

/* The BAR 0 handler, exposed for unit tests and the fuzzer. */
void virtio_pci_bar_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

#endif
