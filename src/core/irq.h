/* Interrupts into the in-kernel interrupt controllers, behind one interface.
 *
 * A device holds a struct irq and calls irq_raise / irq_lower / irq_trigger; what is behind
 * it is fixed when the irq is set up by whoever wires the device:
 *   - a line: an IOAPIC/PIC pin (GSI), driven by KVM_IRQ_LINE, or by an irqfd (KVM_IRQFD;
 *     for a level-triggered line with a resample eventfd, which KVM signals at the guest's
 *     EOI so a still-asserted line is raised again);
 *   - an MSI message (address/data): KVM_SIGNAL_MSI, or an irqfd on a GSI whose route the
 *     VM's irq_router holds.
 * With vm_fd < 0 nothing reaches KVM: the irq records its level, raises and last message,
 * which is what unit tests observe.
 *
 * struct irq_line (KVM_IRQ_LINE only) is the older interface the serial port uses. */
#ifndef KVMINI_CORE_IRQ_H
#define KVMINI_CORE_IRQ_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"

struct irq_line {
	int vm_fd;
	unsigned gsi;
	bool level;	/* last level set */
	unsigned edges; /* count of 0->1 transitions, for tests and statistics */
};

void irq_line_init(struct irq_line *line, int vm_fd, unsigned gsi);
/* Sets the line's level (KVM_IRQ_LINE). Returns 0 or -errno. */
int irq_line_set(struct irq_line *line, bool level);
/* Sets the line again to its last level (after the irqchip's state was replaced). */
int irq_line_resync(struct irq_line *line);

/* The GSIs KVM routes to the PIC and IOAPIC by default (0-15: PIC and IOAPIC pin, 16-23:
 * IOAPIC only); MSI routes are allocated above them. */
#define IRQ_ROUTER_IOAPIC_PINS 24
#define IRQ_ROUTER_MAX_GSI     1024

/* The VM's GSI routing table. KVM_SET_GSI_ROUTING replaces the whole table, so this one
 * always carries the default PIC/IOAPIC routes next to the MSI routes it hands out.
 * Changes take effect at irq_router_commit(). Thread-safe. */
struct irq_router {
	int vm_fd;
	pthread_mutex_t lock;
	struct kvm_irq_routing_entry *entries; /* defaults first, then MSI routes */
	unsigned nentries, capacity;
	unsigned ndefault;
	bool dirty;	  /* entries differ from what KVM has */
	unsigned commits; /* KVM_SET_GSI_ROUTING calls made (or recorded, vm_fd < 0) */
};

int irq_router_init(struct irq_router *r, int vm_fd);
void irq_router_destroy(struct irq_router *r);
/* A new MSI route; *gsi receives its GSI (>= IRQ_ROUTER_IOAPIC_PINS). -ENOSPC, -ENOMEM. */
int irq_router_alloc_msi(struct irq_router *r, uint64_t addr, uint32_t data, unsigned *gsi);
/* Changes the message of an MSI route (-ENOENT if gsi is not one). */
int irq_router_set_msi(struct irq_router *r, unsigned gsi, uint64_t addr, uint32_t data);
void irq_router_free_msi(struct irq_router *r, unsigned gsi);
/* Installs the table with KVM_SET_GSI_ROUTING if it changed. */
int irq_router_commit(struct irq_router *r, struct errbuf *e);
/* The route of gsi: 0, or -ENOENT. For tests and the monitor. */
int irq_router_lookup(struct irq_router *r, unsigned gsi, struct kvm_irq_routing_entry *out);

enum irq_kind {
	IRQ_KIND_LINE,	     /* KVM_IRQ_LINE on gsi */
	IRQ_KIND_LINE_IRQFD, /* eventfd bound to gsi; level-triggered ones have a resample fd */
	IRQ_KIND_MSI,	     /* KVM_SIGNAL_MSI with addr/data */
	IRQ_KIND_MSI_IRQFD,  /* eventfd bound to an MSI route of the router */
};

struct irq {
	enum irq_kind kind;
	int vm_fd;
	unsigned gsi;
	int fd;		 /* the irqfd's eventfd, or -1 */
	int resample_fd; /* level-triggered irqfd: KVM signals it at EOI; or -1 */
	uint64_t msi_addr;
	uint32_t msi_data;
	struct irq_router *router; /* IRQ_KIND_MSI_IRQFD */
	atomic_bool level;	   /* the device's view of a line */
	atomic_uint raises;	   /* interrupts sent: edges of a line, messages */
};

/* Set-ups; each returns 0 or -errno with e filled. */
int irq_init_line(struct irq *irq, int vm_fd, unsigned gsi);
int irq_init_line_irqfd(struct irq *irq, int vm_fd, unsigned gsi, bool level_triggered,
			struct errbuf *e);
int irq_init_msi(struct irq *irq, int vm_fd, uint64_t addr, uint32_t data);
/* Allocates a route in r (commit it before the first trigger) and binds an irqfd to it. */
int irq_init_msi_irqfd(struct irq *irq, struct irq_router *r, uint64_t addr, uint32_t data,
		       struct errbuf *e);
/* Deassigns an irqfd, closes its fds and frees an MSI route. */
void irq_destroy(struct irq *irq);

/* Asserts a line (level stays up until irq_lower) or sends the message. */
int irq_raise(struct irq *irq);
/* Deasserts a line; nothing for a message. */
int irq_lower(struct irq *irq);
/* An edge: a line goes up and down, a message is sent. */
int irq_trigger(struct irq *irq);
/* New message for an MSI irq (a guest rewrote its MSI-X entry). Commit the router after. */
int irq_set_msi(struct irq *irq, uint64_t addr, uint32_t data);
/* For the event loop, when resample_fd is readable: KVM lowered the line at the guest's
 * EOI; if the device still asserts it, raise it again. */
int irq_resample(struct irq *irq);
/* Drives a line again at the device's level (after the irqchip's state was replaced): a
 * KVM_IRQ_LINE line is set to it, a resampled irqfd line is signalled again if asserted
 * (KVM lowers it at EOI itself). Nothing for a message. Counts no new raise. */
int irq_resync(struct irq *irq);

#endif
