#include "arch/x86/cpu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/gdt.h"
#include "arch/x86/layout.h"
#include "util/log.h"

#define CPUID_MAX_ENTRIES 256

#define X86_CR0_PE   (1u << 0)
#define X86_CR0_ET   (1u << 4)
#define X86_CR0_NE   (1u << 5)
#define X86_CR0_PG   (1u << 31)
#define X86_CR4_PAE  (1u << 5)
#define X86_EFER_LME (1u << 8)
#define X86_EFER_LMA (1u << 10)

int x86_get_supported_cpuid(int kvm_fd, struct kvm_cpuid2 **out, struct errbuf *e)
{
	size_t size =
	    sizeof(struct kvm_cpuid2) + CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = calloc(1, size);
	if (!c)
		return errf(e, -ENOMEM, "out of memory");
	c->nent = CPUID_MAX_ENTRIES;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		int err = errno;
		free(c);
		return errf(e, -err, "KVM_GET_SUPPORTED_CPUID failed: %s", strerror(err));
	}
	*out = c;
	return 0;
}

static unsigned order_base_2(unsigned n)
{
	unsigned b = 0;
	while ((1u << b) < n)
		b++;
	return b;
}

struct kvm_cpuid2 *x86_cpuid_for_vcpu(const struct kvm_cpuid2 *supported, unsigned id,
				      unsigned ncpus)
{
	/* Room for one added leaf (the KVM signature) if the host did not list it. */
	size_t size = sizeof(*supported) + (supported->nent + 1) * sizeof(supported->entries[0]);
	struct kvm_cpuid2 *c = calloc(1, size);
	if (!c)
		return NULL;
	memcpy(c, supported, sizeof(*supported) + supported->nent * sizeof(supported->entries[0]));
	bool have_sig = false;
	/* One socket of ncpus cores, one thread each: what --cpus N means to a user. */
	unsigned core_bits = order_base_2(ncpus);
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *ent = &c->entries[i];
		switch (ent->function) {
		case 1:
			ent->ebx = (ent->ebx & 0x0000ffffu) | (id << 24) | ((ncpus & 0xff) << 16);
			if (ncpus > 1)
				ent->edx |= 1u << 28; /* HTT: the count in EBX[23:16] is valid */
			ent->ecx |= 1u << 31;	      /* running on a hypervisor */
			break;
		case 4:
			/* Cores per package - 1 in EAX[31:26], for cache leaves that exist. */
			if (ent->eax & 0x1f)
				ent->eax = (ent->eax & 0x03ffffffu) | ((ncpus - 1) << 26);
			break;
		case 0xb:
		case 0x1f:
			ent->edx = id; /* x2APIC ID */
			if (ent->index == 0) {
				ent->eax = 0;
				ent->ebx = 1;
				ent->ecx = (1u << 8) | 0; /* SMT level */
			} else if (ent->index == 1) {
				ent->eax = core_bits;
				ent->ebx = ncpus;
				ent->ecx = (2u << 8) | 1; /* core level */
			} else {
				ent->eax = ent->ebx = 0;
				ent->ecx = ent->index;
			}
			break;
		case 0x40000000:
			have_sig = true;
			break;
		}
	}
	if (!have_sig) {
		struct kvm_cpuid_entry2 *ent = &c->entries[c->nent++];
		memset(ent, 0, sizeof(*ent));
		ent->function = 0x40000000;
		ent->eax = 0x40000001;
		memcpy(&ent->ebx, "KVMK", 4);
		memcpy(&ent->ecx, "VMKV", 4);
		memcpy(&ent->edx, "M\0\0\0", 4);
	}
	return c;
}

int x86_vcpu_set_cpuid(int vcpu_fd, const struct kvm_cpuid2 *supported, unsigned id, unsigned ncpus,
		       struct errbuf *e)
{
	struct kvm_cpuid2 *c = x86_cpuid_for_vcpu(supported, id, ncpus);
	if (!c)
		return errf(e, -ENOMEM, "out of memory");
	int ret = ioctl(vcpu_fd, KVM_SET_CPUID2, c) < 0 ? -errno : 0;
	free(c);
	if (ret < 0)
		return errf(e, ret, "KVM_SET_CPUID2 on vCPU %u failed: %s", id, strerror(-ret));
	return 0;
}

int x86_vcpu_set_msrs(int vcpu_fd, struct errbuf *e)
{
	static const struct {
		uint32_t index;
		uint64_t value;
	} reset_msrs[] = {
	    {0x174, 0},		     /* IA32_SYSENTER_CS */
	    {0x175, 0},		     /* IA32_SYSENTER_ESP */
	    {0x176, 0},		     /* IA32_SYSENTER_EIP */
	    {0xc0000081, 0},	     /* STAR */
	    {0xc0000082, 0},	     /* LSTAR */
	    {0xc0000083, 0},	     /* CSTAR */
	    {0xc0000084, 0},	     /* SYSCALL_MASK */
	    {0xc0000102, 0},	     /* KERNEL_GS_BASE */
	    {0x1a0, 1},		     /* IA32_MISC_ENABLE: fast strings */
	    {0x2ff, (1u << 11) | 6}, /* MTRR default type: enabled, write-back */
	};
	enum { N = sizeof(reset_msrs) / sizeof(reset_msrs[0]) };
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry entries[N];
	} msrs;
	memset(&msrs, 0, sizeof(msrs));
	msrs.hdr.nmsrs = N;
	for (unsigned i = 0; i < N; i++) {
		msrs.entries[i].index = reset_msrs[i].index;
		msrs.entries[i].data = reset_msrs[i].value;
	}
	int n = ioctl(vcpu_fd, KVM_SET_MSRS, &msrs);
	if (n < 0)
		return errf(e, -errno, "KVM_SET_MSRS failed: %s", strerror(errno));
	if (n < N)
		return errf(e, -EINVAL, "KVM_SET_MSRS: the host refused MSR 0x%x",
			    reset_msrs[n].index);
	return 0;
}

/* KVM's paravirtual MSRs point the host at guest memory (kvmclock, steal time, async page
 * faults, PV EOI): after a reboot the old addresses belong to someone else, so they are
 * switched off as at power-on (a new vCPU has them off already). One call; an MSR a host
 * lacks stops KVM_SET_MSRS there, and the rest are set from the next one. */
void x86_vcpu_clear_pv_msrs(int vcpu_fd)
{
	static const uint32_t kvm_pv_msrs[] = {
	    0x11,	/* MSR_KVM_WALL_CLOCK */
	    0x12,	/* MSR_KVM_SYSTEM_TIME */
	    0x4b564d00, /* MSR_KVM_WALL_CLOCK_NEW */
	    0x4b564d01, /* MSR_KVM_SYSTEM_TIME_NEW */
	    0x4b564d02, /* MSR_KVM_ASYNC_PF_EN */
	    0x4b564d03, /* MSR_KVM_STEAL_TIME */
	    0x4b564d04, /* MSR_KVM_PV_EOI_EN */
	};
	enum { N = sizeof(kvm_pv_msrs) / sizeof(kvm_pv_msrs[0]) };
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry entries[N];
	} msrs;
	for (unsigned first = 0; first < N;) {
		memset(&msrs, 0, sizeof(msrs));
		msrs.hdr.nmsrs = N - first;
		for (unsigned i = first; i < N; i++)
			msrs.entries[i - first].index = kvm_pv_msrs[i];
		int n = ioctl(vcpu_fd, KVM_SET_MSRS, &msrs);
		if (n < 0)
			return;
		first += (unsigned)n + 1; /* past the one refused (if any) */
	}
}

int x86_vcpu_set_boot_regs(int vcpu_fd, const struct x86_boot_setup *s, struct errbuf *e)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return errf(e, -errno, "KVM_GET_SREGS failed: %s", strerror(errno));

	bool longmode = s->mode == X86_ENTRY_LINUX64;
	uint64_t code = gdt_entry(longmode ? GDT_CODE64 : GDT_CODE32, 0, 0xfffff);
	uint64_t data = gdt_entry(GDT_DATA, 0, 0xfffff);
	uint64_t tss = gdt_entry(GDT_TSS, 0, 0x67);

	sregs.gdt.base = X86_GDT_ADDR;
	sregs.gdt.limit = 6 * 8 - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cs = gdt_to_kvm_segment(code, X86_GDT_CODE_SEL);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss =
	    gdt_to_kvm_segment(data, X86_GDT_DATA_SEL);
	sregs.tr = gdt_to_kvm_segment(tss, X86_GDT_TSS_SEL);
	if (longmode) {
		sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_NE | X86_CR0_PG;
		sregs.cr3 = X86_PML4_ADDR;
		sregs.cr4 = X86_CR4_PAE;
		sregs.efer = X86_EFER_LME | X86_EFER_LMA;
	} else {
		/* PVH: flat 32-bit protected mode, paging off. */
		sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
		sregs.cr3 = 0;
		sregs.cr4 = 0;
		sregs.efer = 0;
	}
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return errf(e, -errno, "KVM_SET_SREGS failed: %s", strerror(errno));

	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2;
	regs.rip = s->entry;
	regs.rsp = regs.rbp = X86_BOOT_STACK_TOP;
	if (longmode)
		regs.rsi = s->boot_params;
	else
		regs.rbx = s->start_info;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return errf(e, -errno, "KVM_SET_REGS failed: %s", strerror(errno));
	return 0;
}
