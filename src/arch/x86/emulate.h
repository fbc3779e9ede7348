/* Hosts whose KVM emulates guest ring 0 (PVM) fail to emulate some instructions and report
 * KVM_EXIT_INTERNAL_ERROR / KVM_INTERNAL_ERROR_EMULATION. A few can be finished in user
 * space; for the rest we describe the vCPU well enough to debug it. */
#ifndef KVMINI_ARCH_X86_EMULATE_H
#define KVMINI_ARCH_X86_EMULATE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "arch/x86/simd.h"
#include "core/guest_mem.h"

enum x86_recovery {
	X86_NOT_RECOVERED = 0,
	X86_RECOVERED_INT3, /* RIP advanced past int3, #BP injected */
	X86_RECOVERED_CLAC, /* RFLAGS.AC cleared, RIP += 3 */
	X86_RECOVERED_STAC, /* RFLAGS.AC set, RIP += 3 */
	X86_RECOVERED_CMPXCHG,
	X86_RECOVERED_FWAIT,   /* no-op, or #NM / #MF injected as the CPU would */
	X86_RECOVERED_FAULT,   /* the exception the instruction raises was injected */
	X86_RECOVERED_REFETCH, /* the code changed since KVM fetched it: run again, unchanged */
	X86_RECOVERED_SIMD,    /* + x86_simd kind: an SSE/FPU/... instruction run on the host */
};
/* Every value x86_recover_emulation_failure() returns is below this (for statistics). */
#define X86_COMPLETION_KINDS (X86_RECOVERED_SIMD + X86_SIMD_KINDS)

/* A decoded [prefixes] 0f c7 /1 (cmpxchg8b, or cmpxchg16b with REX.W) memory operand:
 * linear address = segment base + base + index * scale + disp (+ next RIP if rip_relative). */
struct x86_cmpxchg_insn {
	unsigned length; /* bytes, prefixes included */
	bool wide;	 /* cmpxchg16b */
	int base;	 /* register number 0-15, or -1 */
	int index;	 /* register number 0-15, or -1 */
	unsigned scale;
	int64_t disp;
	bool rip_relative;
	int segment; /* 0 none, 4 fs, 5 gs (others have base 0 in 64-bit mode) */
};

/* Decodes a cmpxchg8b/16b at code[0..n). Returns false for anything else, including forms
 * we do not complete (register operand, 32-bit addressing). Pure, for unit tests. */
bool x86_decode_cmpxchg(const uint8_t *code, size_t n, struct x86_cmpxchg_insn *out);
/* The operand's linear address given the registers (RIP = the instruction's address). */
uint64_t x86_cmpxchg_address(const struct x86_cmpxchg_insn *in, const struct kvm_regs *r,
			     const struct kvm_sregs *s);

/* The physical address of a ring-0 write to `linear`, checked as the CPU checks it (4-level
 * paging: present and writable at every level under CR0.WP, SMAP for user pages); sets the
 * accessed and dirty bits as the CPU would. Returns 0, or -EFAULT where the CPU would fault
 * (or -ENOTSUP for 5-level paging). Pure guest-memory work, for unit tests. */
int x86_walk_for_supervisor_write(const struct guest_mem *mem, uint64_t cr0, uint64_t cr3,
				  uint64_t cr4, uint64_t rflags, uint64_t linear, uint64_t *phys);

/* The walk behind any ring-0 data access (read or write), with the same checks; sets the
 * accessed bit (and dirty for a write). Returns 0, -EFAULT with *pf_error holding the #PF
 * error code the CPU would push, -EINVAL for a non-canonical address (#GP), -ENOTSUP. */
int x86_walk_supervisor(const struct guest_mem *mem, uint64_t cr0, uint64_t cr3, uint64_t cr4,
			uint64_t rflags, uint64_t linear, bool write, uint64_t *phys,
			uint32_t *pf_error);

/* Looks at the instruction at RIP and completes it if it is one we know: returns what was
 * done to it (an enum x86_recovery value, or X86_RECOVERED_SIMD + kind), X86_NOT_RECOVERED
 * if nothing. SIMD instructions that follow it may be completed in the same call:
 * *completed (if not NULL) says how many instructions were, and counts (if not NULL,
 * X86_COMPLETION_KINDS entries) gets one more for each, by kind. */
unsigned x86_recover_emulation_failure(int vcpu_fd, const struct guest_mem *mem,
				       const struct kvm_run *run, atomic_ulong *counts,
				       unsigned *completed);

/* Whether the bytes KVM's emulator fetched (seen, from the exit's emulation_failure) differ
 * from those at RIP now: another vCPU rewrote the instruction in between (Linux patches live
 * code: int3 first, then the rest, then the first byte). The failed instruction had no
 * effect, so running it again is what a CPU that fetched it a moment later would do. Pure,
 * for unit tests. */
bool x86_code_changed(const uint8_t *seen, size_t seen_n, const uint8_t *now, size_t now_n);

const char *x86_recovery_name(unsigned r);

/* Reads up to len bytes at the guest's RIP (through its page tables). Returns the count. */
size_t x86_read_code_at_rip(int vcpu_fd, const struct guest_mem *mem, uint8_t *buf, size_t len,
			    uint64_t *rip);

/* What Linux is asked on hosts that emulate guest ring 0 (PVM). XSAVES/XRSTORS are
 * privileged, so kvmini cannot run them for the guest on the host, and with XSAVE on the
 * kernel also picks AVX code paths for its SIMD sections; popcnt would cost one exit to
 * user space each (~60 us here) where the kernel's software fallback takes a few dozen
 * instructions. */
#define X86_EMULATED_RING0_PARAMS "clearcpuid=xsave,popcnt"

/* The command line for a Linux guest on such a host: user's own, with
 * X86_EMULATED_RING0_PARAMS appended (in buf) unless it already has a clearcpuid= (the
 * user's word wins). Returns user itself when nothing is added, or NULL if buf is short. */
const char *x86_cmdline_for_emulated_ring0(const char *user, char *buf, size_t len);

/* One multi-line, human description of a vCPU: registers, control registers, the bytes at
 * RIP, and the exit's own data. */
void x86_describe_vcpu(int vcpu_fd, const struct guest_mem *mem, const struct kvm_run *run,
		       char *buf, size_t len);

#endif
