#include "arch/x86/state.h"

#include <errno.h>
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
