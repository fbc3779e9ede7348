#include "arch/x86/state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define STATE_IOCTL(fd, req, arg, what, e)                                                  \
	do {                                                                                \
		if (ioctl((fd), (req), (arg)) < 0)                                          \
			return errf((e), -errno, "%s failed: %s", (what), strerror(errno)); \
	} while (0)

int x86_vcpu_get_state(int fd, struct x86_vcpu_state *s, struct errbuf *e)
{
	memset(s, 0, sizeof(*s));
	STATE_IOCTL(fd, KVM_GET_REGS, &s->regs, "KVM_GET_REGS", e);
	STATE_IOCTL(fd, KVM_GET_SREGS, &s->sregs, "KVM_GET_SREGS", e);
	STATE_IOCTL(fd, KVM_GET_FPU, &s->fpu, "KVM_GET_FPU", e);
	/* XCRs exist only where the host has XSAVE. */
	s->has_xcrs = ioctl(fd, KVM_GET_XCRS, &s->xcrs) == 0;
	STATE_IOCTL(fd, KVM_GET_LAPIC, &s->lapic, "KVM_GET_LAPIC", e);
	STATE_IOCTL(fd, KVM_GET_MP_STATE, &s->mp_state, "KVM_GET_MP_STATE", e);
	STATE_IOCTL(fd, KVM_GET_VCPU_EVENTS, &s->events, "KVM_GET_VCPU_EVENTS", e);
	STATE_IOCTL(fd, KVM_GET_DEBUGREGS, &s->debugregs, "KVM_GET_DEBUGREGS", e);
	return 0;
}

int x86_vcpu_put_state(int fd, const struct x86_vcpu_state *s, struct errbuf *e)
{
	STATE_IOCTL(fd, KVM_SET_REGS, &s->regs, "KVM_SET_REGS", e);
	STATE_IOCTL(fd, KVM_SET_FPU, &s->fpu, "KVM_SET_FPU", e);
	if (s->has_xcrs)
		STATE_IOCTL(fd, KVM_SET_XCRS, &s->xcrs, "KVM_SET_XCRS", e);
	STATE_IOCTL(fd, KVM_SET_SREGS, &s->sregs, "KVM_SET_SREGS", e);
	STATE_IOCTL(fd, KVM_SET_MP_STATE, &s->mp_state, "KVM_SET_MP_STATE", e);
	STATE_IOCTL(fd, KVM_SET_LAPIC, &s->lapic, "KVM_SET_LAPIC", e);
	struct kvm_vcpu_events ev = s->events;
	ev.flags &= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
		    KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
	STATE_IOCTL(fd, KVM_SET_VCPU_EVENTS, &ev, "KVM_SET_VCPU_EVENTS", e);
	STATE_IOCTL(fd, KVM_SET_DEBUGREGS, &s->debugregs, "KVM_SET_DEBUGREGS", e);
	return 0;
}

int x86_vm_get_state(int vm_fd, struct x86_vm_state *s, struct errbuf *e)
{
	memset(s, 0, sizeof(*s));
	s->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	s->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	s->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	STATE_IOCTL(vm_fd, KVM_GET_IRQCHIP, &s->pic_master, "KVM_GET_IRQCHIP (PIC master)", e);
	STATE_IOCTL(vm_fd, KVM_GET_IRQCHIP, &s->pic_slave, "KVM_GET_IRQCHIP (PIC slave)", e);
	STATE_IOCTL(vm_fd, KVM_GET_IRQCHIP, &s->ioapic, "KVM_GET_IRQCHIP (IOAPIC)", e);
	STATE_IOCTL(vm_fd, KVM_GET_PIT2, &s->pit, "KVM_GET_PIT2", e);
	return 0;
}

int x86_vm_put_state(int vm_fd, const struct x86_vm_state *s, struct errbuf *e)
{
	STATE_IOCTL(vm_fd, KVM_SET_IRQCHIP, &s->pic_master, "KVM_SET_IRQCHIP (PIC master)", e);
	STATE_IOCTL(vm_fd, KVM_SET_IRQCHIP, &s->pic_slave, "KVM_SET_IRQCHIP (PIC slave)", e);
	STATE_IOCTL(vm_fd, KVM_SET_IRQCHIP, &s->ioapic, "KVM_SET_IRQCHIP (IOAPIC)", e);
	STATE_IOCTL(vm_fd, KVM_SET_PIT2, &s->pit, "KVM_SET_PIT2", e);
	return 0;
}

int x86_msr_index_list(int kvm_fd, uint32_t **list, uint32_t *n, struct errbuf *e)
{
	struct kvm_msr_list probe = {.nmsrs = 0};
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return errf(e, -errno, "KVM_GET_MSR_INDEX_LIST failed: %s", strerror(errno));
	struct kvm_msr_list *l = malloc(sizeof(*l) + (size_t)probe.nmsrs * sizeof(uint32_t));
	if (!l)
		return errf(e, -ENOMEM, "out of memory");
	l->nmsrs = probe.nmsrs;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		int err = errno;
		free(l);
		return errf(e, -err, "KVM_GET_MSR_INDEX_LIST failed: %s", strerror(err));
	}
	*n = l->nmsrs;
	*list = malloc((size_t)l->nmsrs * sizeof(uint32_t) + 1);
	if (!*list) {
		free(l);
		return errf(e, -ENOMEM, "out of memory");
	}
	memcpy(*list, l->indices, (size_t)l->nmsrs * sizeof(uint32_t));
	free(l);
	return 0;
}

int x86_vcpu_get_extra(int fd, uint32_t xsave_size, const uint32_t *msr_list, uint32_t nmsr_list,
		       struct x86_vcpu_extra *x, struct errbuf *e)
{
	memset(x, 0, sizeof(*x));
	uint32_t size =
	    xsave_size > sizeof(struct kvm_xsave) ? xsave_size : (uint32_t)sizeof(struct kvm_xsave);
	x->xsave = calloc(1, size);
	if (!x->xsave)
		return errf(e, -ENOMEM, "out of memory");
	x->xsave_size = size;
	if (!(xsave_size && ioctl(fd, KVM_GET_XSAVE2, x->xsave) == 0) &&
	    ioctl(fd, KVM_GET_XSAVE, x->xsave) < 0) {
		/* No XSAVE on this host: the legacy FPU state carries it. */
		free(x->xsave);
		x->xsave = NULL;
		x->xsave_size = 0;
	}

	struct kvm_msrs *m =
	    calloc(1, sizeof(*m) + (size_t)(nmsr_list + 1) * sizeof(m->entries[0]));
	x->msrs = calloc(nmsr_list + 1, sizeof(*x->msrs));
	if (!m || !x->msrs) {
		free(m);
		x86_vcpu_extra_free(x);
		return errf(e, -ENOMEM, "out of memory");
	}
	/* KVM_GET_MSRS stops at the first MSR it cannot read: skip that one, go on. */
	for (uint32_t i = 0; i < nmsr_list;) {
		m->nmsrs = nmsr_list - i;
		for (uint32_t j = 0; j < m->nmsrs; j++)
			m->entries[j] = (struct kvm_msr_entry){.index = msr_list[i + j]};
		int got = ioctl(fd, KVM_GET_MSRS, m);
		if (got < 0) {
			int err = errno;
			free(m);
			x86_vcpu_extra_free(x);
			return errf(e, -err, "KVM_GET_MSRS failed: %s", strerror(err));
		}
		for (int j = 0; j < got; j++)
			x->msrs[x->nmsrs++] = m->entries[j];
		i += (uint32_t)got + 1;
	}
	free(m);
	int khz = ioctl(fd, KVM_GET_TSC_KHZ, 0);
	x->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
	return 0;
}

int x86_vcpu_put_extra(int fd, const struct x86_vcpu_extra *x, struct errbuf *e)
{
	if (x->tsc_khz) {
		int khz = ioctl(fd, KVM_GET_TSC_KHZ, 0);
		if (khz > 0 && (uint32_t)khz != x->tsc_khz &&
		    ioctl(fd, KVM_SET_TSC_KHZ, (unsigned long)x->tsc_khz) < 0)
			return errf(e, -errno,
				    "the snapshot's TSC runs at %u kHz, this host's at %d kHz, and "
				    "KVM_SET_TSC_KHZ failed: %s",
				    x->tsc_khz, khz, strerror(errno));
	}
	if (x->xsave)
		STATE_IOCTL(fd, KVM_SET_XSAVE, x->xsave, "KVM_SET_XSAVE", e);
	if (!x->nmsrs)
		return 0;
	struct kvm_msrs *m = calloc(1, sizeof(*m) + (size_t)x->nmsrs * sizeof(m->entries[0]));
	if (!m)
		return errf(e, -ENOMEM, "out of memory");
	m->nmsrs = x->nmsrs;
	memcpy(m->entries, x->msrs, (size_t)x->nmsrs * sizeof(m->entries[0]));
	int n = ioctl(fd, KVM_SET_MSRS, m);
	int err = errno;
	uint32_t bad = n >= 0 && (uint32_t)n < x->nmsrs ? m->entries[n].index : 0;
	free(m);
	if (n < 0)
		return errf(e, -err, "KVM_SET_MSRS failed: %s", strerror(err));
	if ((uint32_t)n < x->nmsrs)
		return errf(e, -EINVAL, "KVM_SET_MSRS refused MSR 0x%x from the snapshot", bad);
	return 0;
}

void x86_vcpu_extra_free(struct x86_vcpu_extra *x)
{
	free(x->xsave);
	free(x->msrs);
	memset(x, 0, sizeof(*x));
}

int x86_vm_get_clock(int vm_fd, struct kvm_clock_data *c, struct errbuf *e)
{
	memset(c, 0, sizeof(*c));
	STATE_IOCTL(vm_fd, KVM_GET_CLOCK, c, "KVM_GET_CLOCK", e);
	return 0;
}

int x86_vm_put_clock(int vm_fd, const struct kvm_clock_data *c, struct errbuf *e)
{
	/* The guest's clock continues from the saved value: no jump by the time between. */
	struct kvm_clock_data d = {.clock = c->clock};
	STATE_IOCTL(vm_fd, KVM_SET_CLOCK, &d, "KVM_SET_CLOCK", e);
	return 0;
}
