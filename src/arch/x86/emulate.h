/* Hosts whose KVM emulates guest ring 0 (PVM) fail to emulate some instructions and report
 * KVM_EXIT_INTERNAL_ERROR / KVM_INTERNAL_ERROR_EMULATION. A few can be finished in user
 * space; for the rest we describe the vCPU well enough to debug it. */
#ifndef KVMINI_ARCH_X86_EMULATE_H
#define KVMINI_ARCH_X86_EMULATE_H

#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "util/guest_mem.h"

enum x86_recovery {
	X86_NOT_RECOVERED = 0,
	X86_RECOVERED_INT3, /* RIP advanced past int3, #BP injected */
	X86_RECOVERED_CLAC, /* RFLAGS.AC cleared, RIP += 3 */
	X86_RECOVERED_STAC, /* RFLAGS.AC set, RIP += 3 */
};

/* Looks at the instruction at RIP and completes it if it is one we know. */
enum x86_recovery x86_recover_emulation_failure(int vcpu_fd, const struct guest_mem *mem);

/* Reads up to len bytes at the guest's RIP (through its page tables). Returns the count. */
size_t x86_read_code_at_rip(int vcpu_fd, const struct guest_mem *mem, uint8_t *buf, size_t len,
			    uint64_t *rip);

/* One multi-line, human description of a vCPU: registers, control registers, the bytes at
 * RIP, and the exit's own data. */
void x86_describe_vcpu(int vcpu_fd, const struct guest_mem *mem, const struct kvm_run *run,
		       char *buf, size_t len);

#endif
