/* Per-vCPU x86 state: entry registers for the boot CPU, CPUID, and the MSRs a vCPU needs
 * at reset. */
#ifndef KVMINI_ARCH_X86_CPU_H
#define KVMINI_ARCH_X86_CPU_H

#include <linux/kvm.h>

#include "arch/x86/boot.h"
#include "util/err.h"

/* KVM_GET_SUPPORTED_CPUID into a malloc'ed table. */
int x86_get_supported_cpuid(int kvm_fd, struct kvm_cpuid2 **out, struct errbuf *e);
/* A copy of `supported` patched for vCPU `id` of `ncpus` (APIC ID, topology leaves, the
 * hypervisor bit and KVM signature leaf). Caller frees. Pure: unit-testable. */
struct kvm_cpuid2 *x86_cpuid_for_vcpu(const struct kvm_cpuid2 *supported, unsigned id,
				      unsigned ncpus);
int x86_vcpu_set_cpuid(int vcpu_fd, const struct kvm_cpuid2 *supported, unsigned id, unsigned ncpus,
		       struct errbuf *e);
int x86_vcpu_set_msrs(int vcpu_fd, struct errbuf *e);
/* Turns KVM's paravirtual MSRs off again (after a guest reset). */
void x86_vcpu_clear_pv_msrs(int vcpu_fd);
/* Registers and segments of the boot CPU for the chosen entry mode. */
int x86_vcpu_set_boot_regs(int vcpu_fd, const struct x86_boot_setup *s, struct errbuf *e);

#endif
