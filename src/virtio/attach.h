/* From the configuration to virtio devices on their transports: walks cfg->devices, finds
 * each virtio-* driver's type in the registry, creates the device, puts it on the transport
 * its name (virtio-X-pci, virtio-X-device) or the default asks for, and registers both in
 * the VM's device list (reset, save/load, destroy). vm.c calls this once; it names no
 * device. */
#ifndef KVMINI_VIRTIO_ATTACH_H
#define KVMINI_VIRTIO_ATTACH_H

#include "config.h"
#include "core/bus.h"
#include "core/device.h"
#include "core/guest_mem.h"
#include "core/irq.h"
#include "core/loop.h"
#include "util/err.h"

struct pci_host;
struct virtio_mmio_layout;
struct vm_power;

enum virtio_transport_kind {
	VIRTIO_TRANSPORT_PCI = 0,
	VIRTIO_TRANSPORT_MMIO,
};

/* What the transports need from the VM, passed down (nothing here calls up into vm.c). */
struct virtio_attach_env {
	const struct vm_config *cfg;
	const struct guest_mem *mem;
	struct event_loop *loop;
	struct vm_power *power; /* for a console's Ctrl-A x; may be NULL */
	struct device_list *devices;
	struct pci_host *pci; /* the host bridge the PCI transport puts functions on */
	struct bus *mmio;     /* the MMIO bus (virtio-mmio registers) */
	struct irq_router *irq_router;
	/* The virtio-mmio windows handed out so far: the kernel command line announces them
	 * (virtio_mmio_cmdline_extend). */
	struct virtio_mmio_layout *mmio_layout;
	int vm_fd; /* < 0: no KVM (unit tests): interrupts and ioeventfds are recorded only */
	/* For a driver name without -pci/-device (virtio-rng, --rng): --virtio-transport. */
	enum virtio_transport_kind default_transport;
};

/* The transport a -device driver name asks for: "-pci" PCI, "-device" MMIO, otherwise
 * dflt. */
enum virtio_transport_kind virtio_transport_for(const char *driver,
						enum virtio_transport_kind dflt);

/* Creates every virtio device of env->cfg->devices (other drivers are left to their own
 * code). A virtio-* driver kvmini has no type for is refused with one line naming it.
 * Returns 0 or -errno with e filled. */
int virtio_attach_devices(const struct virtio_attach_env *env, struct errbuf *e);

#endif
