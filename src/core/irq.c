#include "core/irq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

void irq_line_init(struct irq_line *line, int vm_fd, unsigned gsi)
{
	line->vm_fd = vm_fd;
	line->gsi = gsi;
	line->level = false;
	line->edges = 0;
}

int irq_line_set(struct irq_line *line, bool level)
{
	if (level && !line->level)
		line->edges++;
	line->level = level;
	if (line->vm_fd < 0)
		return 0;
	struct kvm_irq_level irq = {.irq = line->gsi, .level = level};
	if (ioctl(line->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		return -errno;
	return 0;
}

int irq_line_resync(struct irq_line *line)
{
	if (line->vm_fd < 0)
		return 0;
	struct kvm_irq_level irq = {.irq = line->gsi, .level = line->level};
	return ioctl(line->vm_fd, KVM_IRQ_LINE, &irq) < 0 ? -errno : 0;
}

/* --- the routing table ------------------------------------------------------------------ */

static struct kvm_irq_routing_entry chip_route(unsigned gsi, unsigned chip, unsigned pin)
{
	struct kvm_irq_routing_entry r = {.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP};
	r.u.irqchip.irqchip = chip;
	r.u.irqchip.pin = pin;
	return r;
}

static int router_reserve(struct irq_router *r, unsigned n)
{
	if (r->nentries + n <= r->capacity)
		return 0;
	unsigned cap = r->capacity ? r->capacity * 2 : 64;
	while (cap < r->nentries + n)
		cap *= 2;
	struct kvm_irq_routing_entry *e = realloc(r->entries, cap * sizeof(*e));
	if (!e)
		return -ENOMEM;
	r->entries = e;
	r->capacity = cap;
	return 0;
}

int irq_router_init(struct irq_router *r, int vm_fd)
{
	memset(r, 0, sizeof(*r));
	r->vm_fd = vm_fd;
	if (router_reserve(r, 16 * 2 + 8) < 0)
		return -ENOMEM;
	/* KVM's own default table: GSI n is PIC pin n (0-15) and IOAPIC pin n (0-23). */
	for (unsigned gsi = 0; gsi < IRQ_ROUTER_IOAPIC_PINS; gsi++) {
		if (gsi < 16)
			r->entries[r->nentries++] = chip_route(
			    gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, gsi % 8);
		r->entries[r->nentries++] = chip_route(gsi, KVM_IRQCHIP_IOAPIC, gsi);
	}
	r->ndefault = r->nentries;
	int ret = pthread_mutex_init(&r->lock, NULL);
	if (ret) {
		free(r->entries);
		return -ret;
	}
	return 0;
}

void irq_router_destroy(struct irq_router *r)
{
	free(r->entries);
	r->entries = NULL;
	r->nentries = r->capacity = 0;
	pthread_mutex_destroy(&r->lock);
}

static struct kvm_irq_routing_entry *find_msi(struct irq_router *r, unsigned gsi)
{
	for (unsigned i = r->ndefault; i < r->nentries; i++)
		if (r->entries[i].gsi == gsi)
			return &r->entries[i];
	return NULL;
}

static void set_msi_entry(struct kvm_irq_routing_entry *e, uint64_t addr, uint32_t data)
{
	e->u.msi.address_lo = (uint32_t)addr;
	e->u.msi.address_hi = (uint32_t)(addr >> 32);
	e->u.msi.data = data;
}

int irq_router_alloc_msi(struct irq_router *r, uint64_t addr, uint32_t data, unsigned *gsi)
{
	int ret = -ENOSPC;
	pthread_mutex_lock(&r->lock);
	for (unsigned g = IRQ_ROUTER_IOAPIC_PINS; g < IRQ_ROUTER_MAX_GSI; g++) {
		if (find_msi(r, g))
			continue;
		ret = router_reserve(r, 1);
		if (ret < 0)
			break;
		struct kvm_irq_routing_entry *e = &r->entries[r->nentries++];
		*e = (struct kvm_irq_routing_entry){.gsi = g, .type = KVM_IRQ_ROUTING_MSI};
		set_msi_entry(e, addr, data);
		r->dirty = true;
		*gsi = g;
		break;
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int irq_router_set_msi(struct irq_router *r, unsigned gsi, uint64_t addr, uint32_t data)
{
	pthread_mutex_lock(&r->lock);
	struct kvm_irq_routing_entry *e = find_msi(r, gsi);
	if (e) {
		set_msi_entry(e, addr, data);
		r->dirty = true;
	}
	pthread_mutex_unlock(&r->lock);
	return e ? 0 : -ENOENT;
}

void irq_router_free_msi(struct irq_router *r, unsigned gsi)
{
	pthread_mutex_lock(&r->lock);
	struct kvm_irq_routing_entry *e = find_msi(r, gsi);
	if (e) {
		*e = r->entries[--r->nentries];
		r->dirty = true;
	}
	pthread_mutex_unlock(&r->lock);
}

int irq_router_commit(struct irq_router *r, struct errbuf *e)
{
	int ret = 0;
	pthread_mutex_lock(&r->lock);
	if (!r->dirty)
		goto out;
	if (r->vm_fd >= 0) {
		size_t bytes = sizeof(struct kvm_irq_routing) +
			       r->nentries * sizeof(struct kvm_irq_routing_entry);
		struct kvm_irq_routing *table = calloc(1, bytes);
		if (!table) {
			ret = errf(e, -ENOMEM, "cannot allocate the GSI routing table");
			goto out;
		}
		table->nr = r->nentries;
		memcpy(table->entries, r->entries, r->nentries * sizeof(r->entries[0]));
		if (ioctl(r->vm_fd, KVM_SET_GSI_ROUTING, table) < 0)
			ret = errf(e, -errno, "KVM_SET_GSI_ROUTING (%u routes) failed: %s",
				   r->nentries, strerror(errno));
		free(table);
		if (ret < 0)
			goto out;
	}
	r->dirty = false;
	r->commits++;
out:
	pthread_mutex_unlock(&r->lock);
	return ret;
}

int irq_router_lookup(struct irq_router *r, unsigned gsi, struct kvm_irq_routing_entry *out)
{
	int ret = -ENOENT;
	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < r->nentries; i++) {
		/* The default GSIs have two routes (PIC and IOAPIC): report the IOAPIC one. */
		if (r->entries[i].gsi == gsi) {
			*out = r->entries[i];
			ret = 0;
			if (out->type != KVM_IRQ_ROUTING_IRQCHIP ||
			    out->u.irqchip.irqchip == KVM_IRQCHIP_IOAPIC)
				break;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

/* --- interrupts ------------------------------------------------------------------------- */

static void irq_clear(struct irq *irq, enum irq_kind kind, int vm_fd)
{
	memset(irq, 0, sizeof(*irq));
	irq->kind = kind;
	irq->vm_fd = vm_fd;
	irq->fd = irq->resample_fd = -1;
	atomic_init(&irq->level, false);
	atomic_init(&irq->raises, 0);
}

int irq_init_line(struct irq *irq, int vm_fd, unsigned gsi)
{
	irq_clear(irq, IRQ_KIND_LINE, vm_fd);
	irq->gsi = gsi;
	return 0;
}

int irq_init_msi(struct irq *irq, int vm_fd, uint64_t addr, uint32_t data)
{
	irq_clear(irq, IRQ_KIND_MSI, vm_fd);
	irq->msi_addr = addr;
	irq->msi_data = data;
	return 0;
}

/* Creates the eventfd(s) and binds them to irq->gsi. */
static int bind_irqfd(struct irq *irq, bool resample, struct errbuf *e)
{
	irq->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (irq->fd < 0)
		return errf(e, -errno, "eventfd for the irqfd of GSI %u: %s", irq->gsi,
			    strerror(errno));
	struct kvm_irqfd req = {.fd = (uint32_t)irq->fd, .gsi = irq->gsi};
	if (resample) {
		irq->resample_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (irq->resample_fd < 0) {
			int err = errno;
			close(irq->fd);
			irq->fd = -1;
			return errf(e, -err, "eventfd for the resample fd of GSI %u: %s", irq->gsi,
				    strerror(err));
		}
		req.flags = KVM_IRQFD_FLAG_RESAMPLE;
		req.resamplefd = (uint32_t)irq->resample_fd;
	}
	if (irq->vm_fd >= 0 && ioctl(irq->vm_fd, KVM_IRQFD, &req) < 0) {
		int err = errno;
		close(irq->fd);
		if (irq->resample_fd >= 0)
			close(irq->resample_fd);
		irq->fd = irq->resample_fd = -1;
		return errf(e, -err, "KVM_IRQFD (GSI %u%s) failed: %s", irq->gsi,
			    resample ? ", level-triggered with resample" : "", strerror(err));
	}
	return 0;
}

int irq_init_line_irqfd(struct irq *irq, int vm_fd, unsigned gsi, bool level_triggered,
			struct errbuf *e)
{
	irq_clear(irq, IRQ_KIND_LINE_IRQFD, vm_fd);
	irq->gsi = gsi;
	return bind_irqfd(irq, level_triggered, e);
}

int irq_init_msi_irqfd(struct irq *irq, struct irq_router *r, uint64_t addr, uint32_t data,
		       struct errbuf *e)
{
	irq_clear(irq, IRQ_KIND_MSI_IRQFD, r->vm_fd);
	irq->msi_addr = addr;
	irq->msi_data = data;
	int ret = irq_router_alloc_msi(r, addr, data, &irq->gsi);
	if (ret == -ENOSPC)
		return errf(e, ret, "no free GSI for an MSI route (all %d in use)",
			    IRQ_ROUTER_MAX_GSI - IRQ_ROUTER_IOAPIC_PINS);
	if (ret < 0)
		return errf(e, ret, "cannot allocate an MSI route: %s", strerror(-ret));
	irq->router = r;
	ret = bind_irqfd(irq, false, e);
	if (ret < 0) {
		irq_router_free_msi(r, irq->gsi);
		irq->router = NULL;
	}
	return ret;
}

void irq_destroy(struct irq *irq)
{
	if (irq->fd >= 0) {
		if (irq->vm_fd >= 0) {
			struct kvm_irqfd req = {.fd = (uint32_t)irq->fd,
						.gsi = irq->gsi,
						.flags = KVM_IRQFD_FLAG_DEASSIGN};
			ioctl(irq->vm_fd, KVM_IRQFD, &req);
		}
		close(irq->fd);
		irq->fd = -1;
	}
	if (irq->resample_fd >= 0)
		close(irq->resample_fd);
	irq->resample_fd = -1;
	if (irq->router)
		irq_router_free_msi(irq->router, irq->gsi);
	irq->router = NULL;
}

static int kick_eventfd(int fd)
{
	uint64_t one = 1;
	/* EAGAIN: the counter is saturated, so an interrupt is pending anyway. */
	if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}

static int set_line(struct irq *irq, bool level)
{
	if (irq->vm_fd < 0)
		return 0;
	struct kvm_irq_level req = {.irq = irq->gsi, .level = level};
	return ioctl(irq->vm_fd, KVM_IRQ_LINE, &req) < 0 ? -errno : 0;
}

static int send_msi(struct irq *irq)
{
	atomic_fetch_add(&irq->raises, 1);
	if (irq->vm_fd < 0)
		return 0;
	struct kvm_msi msi = {.address_lo = (uint32_t)irq->msi_addr,
			      .address_hi = (uint32_t)(irq->msi_addr >> 32),
			      .data = irq->msi_data};
	/* > 0 delivered, 0 blocked by the guest (masked): neither is an error. */
	return ioctl(irq->vm_fd, KVM_SIGNAL_MSI, &msi) < 0 ? -errno : 0;
}

int irq_raise(struct irq *irq)
{
	switch (irq->kind) {
	/* A level line already up stays up: KVM delivers it again after each EOI while it is
	 * (KVM_IRQ_LINE), or signals the resample fd and irq_resample raises it again, so a
	 * second raise would be one more system call for nothing (a device that completes a
	 * request at a time on INTx would make one per request). irq_resync re-drives it. */
	case IRQ_KIND_LINE:
		if (atomic_exchange(&irq->level, true))
			return 0;
		atomic_fetch_add(&irq->raises, 1);
		return set_line(irq, true);
	case IRQ_KIND_LINE_IRQFD:
		if (irq->resample_fd < 0)
			return irq_trigger(irq);
		if (atomic_exchange(&irq->level, true))
			return 0;
		atomic_fetch_add(&irq->raises, 1);
		return kick_eventfd(irq->fd);
	case IRQ_KIND_MSI:
		return send_msi(irq);
	case IRQ_KIND_MSI_IRQFD:
		atomic_fetch_add(&irq->raises, 1);
		return kick_eventfd(irq->fd);
	}
	return -EINVAL;
}

int irq_lower(struct irq *irq)
{
	switch (irq->kind) {
	case IRQ_KIND_LINE:
		atomic_store(&irq->level, false);
		return set_line(irq, false);
	case IRQ_KIND_LINE_IRQFD:
		/* KVM lowers a resampled line itself at EOI; irq_resample() then sees that the
		 * device no longer asserts it. */
		atomic_store(&irq->level, false);
		return 0;
	case IRQ_KIND_MSI:
	case IRQ_KIND_MSI_IRQFD:
		return 0;
	}
	return -EINVAL;
}

int irq_trigger(struct irq *irq)
{
	int ret;
	switch (irq->kind) {
	case IRQ_KIND_LINE:
		atomic_fetch_add(&irq->raises, 1);
		if ((ret = set_line(irq, true)) < 0)
			return ret;
		atomic_store(&irq->level, false);
		return set_line(irq, false);
	case IRQ_KIND_LINE_IRQFD:
	case IRQ_KIND_MSI_IRQFD:
		/* An irqfd without resample is an edge: KVM raises and lowers the GSI. */
		atomic_fetch_add(&irq->raises, 1);
		return kick_eventfd(irq->fd);
	case IRQ_KIND_MSI:
		return send_msi(irq);
	}
	return -EINVAL;
}

int irq_set_msi(struct irq *irq, uint64_t addr, uint32_t data)
{
	irq->msi_addr = addr;
	irq->msi_data = data;
	if (irq->kind == IRQ_KIND_MSI_IRQFD)
		return irq_router_set_msi(irq->router, irq->gsi, addr, data);
	return irq->kind == IRQ_KIND_MSI ? 0 : -EINVAL;
}

int irq_resample(struct irq *irq)
{
	uint64_t v;
	if (irq->resample_fd < 0)
		return -EINVAL;
	if (read(irq->resample_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return -errno;
	if (atomic_load(&irq->level))
		return kick_eventfd(irq->fd);
	return 0;
}

int irq_resync(struct irq *irq)
{
	switch (irq->kind) {
	case IRQ_KIND_LINE:
		return set_line(irq, atomic_load(&irq->level));
	case IRQ_KIND_LINE_IRQFD:
		if (irq->resample_fd >= 0 && atomic_load(&irq->level))
			return kick_eventfd(irq->fd);
		return 0;
	case IRQ_KIND_MSI:
	case IRQ_KIND_MSI_IRQFD:
		return 0;
	}
	return -EINVAL;
}
