/* x86 state KVM keeps for a vCPU and for the in-kernel interrupt controllers and timer,
 * read and written as a whole. Captured once right after creation it is the power-on
 * state a guest reset returns to; snapshot and migration will carry the same structs. */
#ifndef KVMINI_ARCH_X86_STATE_H
#define KVMINI_ARCH_X86_STATE_H

#include <stdbool.h>
#include <stdint.h>

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

/* What a snapshot carries beyond the reset state: the extended FPU state, the MSRs KVM
 * lists (those that read back; a few listed ones fail on some hosts) and the TSC rate.
 * Heap buffers: x86_vcpu_extra_free(). */
struct x86_vcpu_extra {
	uint8_t *xsave; /* KVM_GET_XSAVE2/KVM_GET_XSAVE buffer, NULL if neither works */
	uint32_t xsave_size;
	struct kvm_msr_entry *msrs;
	uint32_t nmsrs;
	uint32_t tsc_khz; /* 0 if KVM_GET_TSC_KHZ is not there */
};

/* The MSR indices KVM saves (KVM_GET_MSR_INDEX_LIST on /dev/kvm); *list is malloc'd. */
int x86_msr_index_list(int kvm_fd, uint32_t **list, uint32_t *n, struct errbuf *e);
/* xsave_size: KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) on the VM (0: use struct kvm_xsave). */
int x86_vcpu_get_extra(int vcpu_fd, uint32_t xsave_size, const uint32_t *msr_list,
		       uint32_t nmsr_list, struct x86_vcpu_extra *x, struct errbuf *e);
/* After x86_vcpu_put_state (XSAVE supersedes the FPU; MSRs after the special registers). */
int x86_vcpu_put_extra(int vcpu_fd, const struct x86_vcpu_extra *x, struct errbuf *e);
void x86_vcpu_extra_free(struct x86_vcpu_extra *x);
/* The VM's clock (kvmclock's base), KVM_GET_CLOCK/KVM_SET_CLOCK. */
int x86_vm_get_clock(int vm_fd, struct kvm_clock_data *c, struct errbuf *e);
int x86_vm_put_clock(int vm_fd, const struct kvm_clock_data *c, struct errbuf *e);

int x86_vcpu_get_state(int vcpu_fd, struct x86_vcpu_state *s, struct errbuf *e);
/* In the order KVM needs: registers before the LAPIC and MP state, events last. */
int x86_vcpu_put_state(int vcpu_fd, const struct x86_vcpu_state *s, struct errbuf *e);
int x86_vm_get_state(int vm_fd, struct x86_vm_state *s, struct errbuf *e);
int x86_vm_put_state(int vm_fd, const struct x86_vm_state *s, struct errbuf *e);

#endif
