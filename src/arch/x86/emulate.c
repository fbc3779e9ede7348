#include "arch/x86/emulate.h"

#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#define X86_RFLAGS_AC (1ull << 18)
#define X86_BP_VECTOR 3

size_t x86_read_code_at_rip(int vcpu_fd, const struct guest_mem *mem, uint8_t *buf, size_t len,
			    uint64_t *rip_out)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	if (ioctl(vcpu_fd, KVM_GET_REGS, &regs) < 0 || ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return 0;
	if (rip_out)
		*rip_out = regs.rip;
	size_t done = 0;
	/* Byte by byte: the instruction may straddle a page boundary. */
	while (done < len) {
		struct kvm_translation tr = {.linear_address = sregs.cs.base + regs.rip + done};
		if (ioctl(vcpu_fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid)
			break;
		const uint8_t *p = gpa_to_hva(mem, tr.physical_address, 1);
		if (!p)
			break;
		buf[done++] = *p;
	}
	return done;
}

static int advance_rip(int vcpu_fd, uint64_t by, int64_t set_ac)
{
	struct kvm_regs regs;
	if (ioctl(vcpu_fd, KVM_GET_REGS, &regs) < 0)
		return -1;
	regs.rip += by;
	if (set_ac > 0)
		regs.rflags |= X86_RFLAGS_AC;
	else if (set_ac == 0)
		regs.rflags &= ~X86_RFLAGS_AC;
	return ioctl(vcpu_fd, KVM_SET_REGS, &regs);
}

enum x86_recovery x86_recover_emulation_failure(int vcpu_fd, const struct guest_mem *mem)
{
	uint8_t code[3];
	size_t n = x86_read_code_at_rip(vcpu_fd, mem, code, sizeof(code), NULL);

	if (n >= 1 && code[0] == 0xcc) {
		/* int3 is a trap: the #BP frame must hold the address after it. */
		struct kvm_vcpu_events ev;
		if (advance_rip(vcpu_fd, 1, -1) < 0 || ioctl(vcpu_fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
			return X86_NOT_RECOVERED;
		ev.exception.injected = 1;
		ev.exception.nr = X86_BP_VECTOR;
		ev.exception.has_error_code = 0;
		ev.exception.error_code = 0;
		ev.flags = 0;
		if (ioctl(vcpu_fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
			return X86_NOT_RECOVERED;
		return X86_RECOVERED_INT3;
	}
	if (n == 3 && code[0] == 0x0f && code[1] == 0x01 && (code[2] == 0xca || code[2] == 0xcb)) {
		bool stac = code[2] == 0xcb;
		if (advance_rip(vcpu_fd, 3, stac ? 1 : 0) < 0)
			return X86_NOT_RECOVERED;
		return stac ? X86_RECOVERED_STAC : X86_RECOVERED_CLAC;
	}
	return X86_NOT_RECOVERED;
}

#define APPEND(...)                                                           \
	do {                                                                  \
		if (off < len) {                                              \
			int w_ = snprintf(buf + off, len - off, __VA_ARGS__); \
			if (w_ > 0)                                           \
				off += (size_t)w_;                            \
		}                                                             \
	} while (0)

void x86_describe_vcpu(int vcpu_fd, const struct guest_mem *mem, const struct kvm_run *run,
		       char *buf, size_t len)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	size_t off = 0;

	buf[0] = '\0';
	if (ioctl(vcpu_fd, KVM_GET_REGS, &r) < 0 || ioctl(vcpu_fd, KVM_GET_SREGS, &s) < 0) {
		APPEND("(vCPU registers unavailable)");
		return;
	}
	APPEND("  rip %016llx rsp %016llx rflags %08llx\n", r.rip, r.rsp, r.rflags);
	APPEND("  rax %016llx rbx %016llx rcx %016llx rdx %016llx\n", r.rax, r.rbx, r.rcx, r.rdx);
	APPEND("  rsi %016llx rdi %016llx rbp %016llx r8  %016llx\n", r.rsi, r.rdi, r.rbp, r.r8);
	APPEND("  r9  %016llx r10 %016llx r11 %016llx r12 %016llx\n", r.r9, r.r10, r.r11, r.r12);
	APPEND("  r13 %016llx r14 %016llx r15 %016llx\n", r.r13, r.r14, r.r15);
	APPEND("  cr0 %016llx cr2 %016llx cr3 %016llx cr4 %016llx efer %llx\n", s.cr0, s.cr2, s.cr3,
	       s.cr4, s.efer);
	APPEND("  cs %04x (base %llx, dpl %u, l %u) ss %04x idt %llx/%x gdt %llx/%x\n",
	       s.cs.selector, s.cs.base, s.cs.dpl, s.cs.l, s.ss.selector, s.idt.base, s.idt.limit,
	       s.gdt.base, s.gdt.limit);
	uint8_t code[16];
	size_t n = x86_read_code_at_rip(vcpu_fd, mem, code, sizeof(code), NULL);
	APPEND("  code at rip:");
	for (size_t i = 0; i < n; i++)
		APPEND(" %02x", code[i]);
	if (n == 0)
		APPEND(" (not mapped)");
	APPEND("\n");
	if (run && run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
		unsigned nd = run->internal.ndata;
		if (nd > sizeof(run->internal.data) / sizeof(run->internal.data[0]))
			nd = sizeof(run->internal.data) / sizeof(run->internal.data[0]);
		APPEND("  internal error suberror %u, data:", run->internal.suberror);
		for (unsigned i = 0; i < nd; i++)
			APPEND(" %llx", (unsigned long long)run->internal.data[i]);
		APPEND("\n");
	}
	if (off && buf[off - 1 < len ? off - 1 : len - 1] == '\n')
		buf[(off < len ? off : len) - 1] = '\0';
}
