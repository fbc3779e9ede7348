/* x86 state KVM keeps for a vCPU and for the in-kernel interrupt controllers and timer,
 * read and written as a whole. Captured once right after creation it is the power-on
 * state a guest reset returns to; snapshot and migration will carry the same structs. */
#ifndef KVMINI_ARCH_X86_STATE_H
#define KVMINI_ARCH_X86_STATE_H

#include <stdbool.h>

#include <linux/kvm.h>

#include "util/err.h"

struct x86_vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_xcrs xcrs;
	bool has_xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_mp_state mp_state;
	struct kvm_vcpu_events events;
	struct kvm_debugregs debugregs;
};

struct x86_vm_state {
	struct kvm_irqchip pic_master, pic_slave, ioapic;
	struct kvm_pit_state2 pit;
};

int x86_vcpu_get_state(int vcpu_fd, struct x86_vcpu_state *s, struct errbuf *e);
/* In the order KVM needs: registers before the LAPIC and MP state, events last. */
int x86_vcpu_put_state(int vcpu_fd, const struct x86_vcpu_state *s, struct errbuf *e);
int x86_vm_get_state(int vm_fd, struct x86_vm_state *s, struct errbuf *e);
int x86_vm_put_state(int vm_fd, const struct x86_vm_state *s, struct errbuf *e);

#endif
