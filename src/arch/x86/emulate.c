#include "arch/x86/emulate.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#define X86_RFLAGS_AC (1ull << 18)
#define X86_RFLAGS_ZF (1ull << 6)
#define X86_EFER_LMA  (1ull << 10)
#define X86_CR0_MP    (1ull << 1)
#define X86_CR0_TS    (1ull << 3)
#define X86_CR0_NE    (1ull << 5)
#define X86_FSW_ES    (1u << 7)
#define X86_NM_VECTOR 7
#define X86_MF_VECTOR 16
#define X86_BP_VECTOR 3

const char *x86_recovery_name(unsigned r)
{
	if (r > X86_RECOVERED_SIMD && r < X86_COMPLETION_KINDS)
		return x86_simd_kind_name(r - X86_RECOVERED_SIMD);
	switch (r) {
	case X86_RECOVERED_INT3:
		return "int3";
	case X86_RECOVERED_CLAC:
		return "clac";
	case X86_RECOVERED_STAC:
		return "stac";
	case X86_RECOVERED_CMPXCHG:
		return "cmpxchg8b/16b";
	case X86_RECOVERED_FWAIT:
		return "fwait";
	case X86_RECOVERED_FAULT:
		return "fault injected";
	case X86_RECOVERED_REFETCH:
		return "refetched";
	default:
		return "nothing";
	}
}

/* Reads the instruction bytes at RIP, translating once per page (not per byte: on the
 * recovery path this runs for every completed instruction). */
static size_t read_code(int vcpu_fd, const struct guest_mem *mem, const struct kvm_regs *r,
			const struct kvm_sregs *s, uint8_t *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		uint64_t linear = s->cs.base + r->rip + done;
		struct kvm_translation tr = {.linear_address = linear};
		if (ioctl(vcpu_fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid)
			break;
		size_t chunk = 4096 - (linear & 4095);
		if (chunk > len - done)
			chunk = len - done;
		const uint8_t *p = gpa_to_hva(mem, tr.physical_address, chunk);
		if (!p)
			break;
		memcpy(buf + done, p, chunk);
		done += chunk;
	}
	return done;
}

size_t x86_read_code_at_rip(int vcpu_fd, const struct guest_mem *mem, uint8_t *buf, size_t len,
			    uint64_t *rip_out)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	if (ioctl(vcpu_fd, KVM_GET_REGS, &regs) < 0 || ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return 0;
	if (rip_out)
		*rip_out = regs.rip;
	return read_code(vcpu_fd, mem, &regs, &sregs, buf, len);
}

static int advance_rip(int vcpu_fd, struct kvm_regs *r, uint64_t by, int64_t set_ac)
{
	r->rip += by;
	if (set_ac > 0)
		r->rflags |= X86_RFLAGS_AC;
	else if (set_ac == 0)
		r->rflags &= ~X86_RFLAGS_AC;
	return ioctl(vcpu_fd, KVM_SET_REGS, r);
}

bool x86_decode_cmpxchg(const uint8_t *code, size_t n, struct x86_cmpxchg_insn *out)
{
	size_t i = 0;
	uint8_t rex = 0;

	memset(out, 0, sizeof(*out));
	out->base = out->index = -1;
	/* Legacy prefixes: lock, segment overrides; 0x67 (32-bit addressing) is not handled. */
	for (; i < n && i < 4; i++) {
		uint8_t p = code[i];
		if (p == 0x64 || p == 0x65)
			out->segment = p == 0x64 ? 4 : 5;
		else if (p != 0xf0 && p != 0x2e && p != 0x3e && p != 0x26 && p != 0x36)
			break;
	}
	if (i < n && (code[i] & 0xf0) == 0x40)
		rex = code[i++];
	if (i + 3 > n || code[i] != 0x0f || code[i + 1] != 0xc7)
		return false;
	i += 2;
	uint8_t modrm = code[i++];
	unsigned mod = modrm >> 6, reg = (modrm >> 3) & 7, rm = modrm & 7;
	if (mod == 3 || reg != 1)
		return false;
	out->wide = rex & 0x8;
	size_t disp_len = mod == 1 ? 1 : mod == 2 ? 4 : 0;
	if (rm == 4) {
		if (i >= n)
			return false;
		uint8_t sib = code[i++];
		unsigned base = sib & 7, index = ((sib >> 3) & 7) | ((rex & 0x2u) << 2);
		out->scale = 1u << (sib >> 6);
		if (index != 4) /* 4 without REX.X means "no index" */
			out->index = (int)index;
		if (base == 5 && mod == 0)
			disp_len = 4; /* disp32, no base */
		else
			out->base = (int)(base | ((rex & 0x1u) << 3));
	} else if (rm == 5 && mod == 0) {
		out->rip_relative = true;
		disp_len = 4;
	} else {
		out->base = (int)(rm | ((rex & 0x1u) << 3));
	}
	if (i + disp_len > n)
		return false;
	if (disp_len == 1) {
		out->disp = (int8_t)code[i];
	} else if (disp_len == 4) {
		int32_t d;
		memcpy(&d, code + i, 4);
		out->disp = d;
	}
	out->length = (unsigned)(i + disp_len);
	return true;
}

static uint64_t reg_value(const struct kvm_regs *r, int n)
{
	const uint64_t v[16] = {r->rax, r->rcx, r->rdx, r->rbx, r->rsp, r->rbp, r->rsi, r->rdi,
				r->r8,	r->r9,	r->r10, r->r11, r->r12, r->r13, r->r14, r->r15};
	return n >= 0 && n < 16 ? v[n] : 0;
}

uint64_t x86_cmpxchg_address(const struct x86_cmpxchg_insn *in, const struct kvm_regs *r,
			     const struct kvm_sregs *s)
{
	uint64_t a = (uint64_t)in->disp;
	if (in->rip_relative)
		a += r->rip + in->length;
	a += reg_value(r, in->base);
	if (in->index >= 0)
		a += reg_value(r, in->index) * in->scale;
	if (in->segment == 4)
		a += s->fs.base;
	else if (in->segment == 5)
		a += s->gs.base;
	return a;
}

static int inject_exception_code(int vcpu_fd, unsigned vector, bool has_error, uint32_t error)
{
	struct kvm_vcpu_events ev;
	if (ioctl(vcpu_fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return -1;
	ev.exception.injected = 1;
	ev.exception.nr = (uint8_t)vector;
	ev.exception.has_error_code = has_error;
	ev.exception.error_code = error;
	ev.flags = 0;
	return ioctl(vcpu_fd, KVM_SET_VCPU_EVENTS, &ev);
}

static int inject_exception(int vcpu_fd, unsigned vector)
{
	return inject_exception_code(vcpu_fd, vector, false, 0);
}

/* fwait only checks for x87 trouble; everything it depends on is in the vCPU state, so it
 * completes exactly: #NM when CR0.MP and CR0.TS are set, #MF when the status word has an
 * unmasked exception pending (FSW.ES) and CR0.NE asks for it, else nothing. */
static enum x86_recovery complete_fwait(int vcpu_fd, struct kvm_regs *r, const struct kvm_sregs *s)
{
	struct kvm_fpu fpu;
	int ret;
	if (ioctl(vcpu_fd, KVM_GET_FPU, &fpu) < 0)
		return X86_NOT_RECOVERED;
	if ((s->cr0 & X86_CR0_MP) && (s->cr0 & X86_CR0_TS))
		ret = inject_exception(vcpu_fd, X86_NM_VECTOR);
	else if ((fpu.fsw & X86_FSW_ES) && (s->cr0 & X86_CR0_NE))
		ret = inject_exception(vcpu_fd, X86_MF_VECTOR);
	else
		ret = advance_rip(vcpu_fd, r, 1, -1);
	return ret < 0 ? X86_NOT_RECOVERED : X86_RECOVERED_FWAIT;
}

#define PTE_P	 (1ull << 0)
#define PTE_RW	 (1ull << 1)
#define PTE_US	 (1ull << 2)
#define PTE_A	 (1ull << 5)
#define PTE_D	 (1ull << 6)
#define PTE_PS	 (1ull << 7)
#define PTE_ADDR 0x000ffffffffff000ull
#define CR0_WP	 (1ull << 16)
#define CR4_LA57 (1ull << 12)
#define CR4_SMAP (1ull << 21)
#define PF_ERR_P 1u
#define PF_ERR_W 2u

int x86_walk_supervisor(const struct guest_mem *mem, uint64_t cr0, uint64_t cr3, uint64_t cr4,
			uint64_t rflags, uint64_t linear, bool write, uint64_t *phys,
			uint32_t *pf_error)
{
	/* KVM_TRANSLATE reports every page writable, so the checks the CPU would make on a
	 * ring-0 access are made here: each level present, writable when CR0.WP is set (for
	 * a write), and no user page under SMAP unless RFLAGS.AC allows it. */
	uint32_t err = write ? PF_ERR_W : 0;
	if (pf_error)
		*pf_error = err;
	if (cr4 & CR4_LA57)
		return -ENOTSUP;
	if ((uint64_t)((int64_t)(linear << 16) >> 16) != linear)
		return -EINVAL; /* not canonical: #GP */
	uint64_t table = cr3 & PTE_ADDR;
	bool writable = true, user = true;
	for (int level = 3; level >= 0; level--) {
		uint64_t *entry =
		    gpa_to_hva(mem, table + ((linear >> (12 + 9 * level)) & 511) * 8, 8);
		if (!entry)
			return -EFAULT;
		uint64_t e = __atomic_load_n(entry, __ATOMIC_ACQUIRE);
		if (!(e & PTE_P))
			return -EFAULT;
		writable &= (e & PTE_RW) != 0;
		user &= (e & PTE_US) != 0;
		bool leaf = level == 0 || ((level == 1 || level == 2) && (e & PTE_PS));
		if (!leaf) {
			__atomic_fetch_or(entry, PTE_A, __ATOMIC_RELEASE);
			table = e & PTE_ADDR;
			continue;
		}
		if (pf_error)
			*pf_error = err | PF_ERR_P; /* present: any failure now is protection */
		if (write && (cr0 & CR0_WP) && !writable)
			return -EFAULT;
		if (user && (cr4 & CR4_SMAP) && !(rflags & X86_RFLAGS_AC))
			return -EFAULT;
		__atomic_fetch_or(entry, write ? PTE_A | PTE_D : PTE_A, __ATOMIC_RELEASE);
		uint64_t page = 1ull << (12 + 9 * level);
		*phys = ((e & PTE_ADDR) & ~(page - 1)) | (linear & (page - 1));
		return 0;
	}
	return -EFAULT;
}

int x86_walk_for_supervisor_write(const struct guest_mem *mem, uint64_t cr0, uint64_t cr3,
				  uint64_t cr4, uint64_t rflags, uint64_t linear, uint64_t *phys)
{
	int ret = x86_walk_supervisor(mem, cr0, cr3, cr4, rflags, linear, true, phys, NULL);
	return ret == -EINVAL ? -EFAULT : ret;
}

/* cmpxchg8b/16b cannot be emulated by some hosts (PVM); its effect is exactly reproducible
 * with the same instruction on kvmini's mapping of the same guest page, which every vCPU
 * shares, so atomicity against the other vCPUs holds. */
static enum x86_recovery complete_cmpxchg(int vcpu_fd, const struct guest_mem *mem,
					  const uint8_t *code, size_t n, struct kvm_regs *rp,
					  const struct kvm_sregs *sp)
{
	struct x86_cmpxchg_insn in;
	struct kvm_regs r = *rp;
	const struct kvm_sregs s = *sp;
	if (!x86_decode_cmpxchg(code, n, &in))
		return X86_NOT_RECOVERED;
	unsigned size = in.wide ? 16 : 8;
	uint64_t linear = x86_cmpxchg_address(&in, &r, &s);
	if (linear % size)
		return X86_NOT_RECOVERED; /* #GP on hardware for 16b; let the report show it */
	uint64_t phys;
	/* Only ring 0 in 64-bit mode: the decoder knows 64-bit encodings, and a fault the
	 * CPU would raise (a read-only or user page) is left to the report. */
	if (!(s.efer & X86_EFER_LMA) || !s.cs.l || (s.cs.selector & 3) ||
	    x86_walk_for_supervisor_write(mem, s.cr0, s.cr3, s.cr4, r.rflags, linear, &phys) < 0)
		return X86_NOT_RECOVERED;
	void *p = gpa_to_hva(mem, phys, size);
	if (!p)
		return X86_NOT_RECOVERED;
	bool equal;
	if (in.wide) {
		uint64_t lo = r.rax, hi = r.rdx;
		__asm__ volatile("lock cmpxchg16b %[m]"
				 : [m] "+m"(*(unsigned __int128 *)p), "+a"(lo), "+d"(hi),
				   "=@ccz"(equal)
				 : "b"(r.rbx), "c"(r.rcx)
				 : "memory");
		r.rax = lo;
		r.rdx = hi;
	} else {
		uint32_t lo = (uint32_t)r.rax, hi = (uint32_t)r.rdx;
		__asm__ volatile("lock cmpxchg8b %[m]"
				 : [m] "+m"(*(uint64_t *)p), "+a"(lo), "+d"(hi), "=@ccz"(equal)
				 : "b"((uint32_t)r.rbx), "c"((uint32_t)r.rcx)
				 : "memory");
		if (!equal) {
			r.rax = lo;
			r.rdx = hi;
		}
	}
	r.rflags = equal ? (r.rflags | X86_RFLAGS_ZF) : (r.rflags & ~X86_RFLAGS_ZF);
	r.rip += in.length;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &r) < 0)
		return X86_NOT_RECOVERED;
	return X86_RECOVERED_CMPXCHG;
}

/* The next instruction of a run, from the code page already translated when it is the same
 * page (the common case: one KVM_TRANSLATE per page, not per instruction). */
struct code_cursor {
	uint64_t page; /* linear address of the cached page, or 1 when none */
	const uint8_t *hva;
};

static size_t read_next(int vcpu_fd, const struct guest_mem *mem, struct code_cursor *c,
			const struct kvm_regs *r, const struct kvm_sregs *s, uint8_t *buf,
			size_t len)
{
	uint64_t linear = s->cs.base + r->rip;
	uint64_t page = linear & ~4095ull;
	if ((linear & 4095) + len <= 4096) {
		if (c->page != page) {
			struct kvm_translation tr = {.linear_address = page};
			if (ioctl(vcpu_fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid)
				return 0;
			c->hva = gpa_to_hva(mem, tr.physical_address, 4096);
			if (!c->hva)
				return 0;
			c->page = page;
		}
		memcpy(buf, c->hva + (linear & 4095), len);
		return len;
	}
	return read_code(vcpu_fd, mem, r, s, buf, len);
}

/* The guest's x87/SSE state comes from KVM's XSAVE image (its first 512 bytes are the
 * FXSAVE layout) and goes back into it with the x87 and SSE components marked in use, so
 * KVM loads them instead of their initial values.
 * An exit costs far more than an instruction here, and Linux's SIMD code comes in runs
 * (blake2s: dozens of SSE instructions in a row), so after the one that failed the
 * following instructions of the table are completed too, up to X86_SIMD_RUN_MAX, with
 * the state kept in user space between them. The run ends before any other instruction or
 * before one that would fault (the guest then runs it, and it exits again on its own). */
static unsigned complete_simd(int vcpu_fd, const struct guest_mem *mem,
			      const struct x86_simd_insn *first, const struct kvm_regs *r,
			      const struct kvm_sregs *s, atomic_ulong *counts, unsigned *completed)
{
	static_assert(sizeof(struct kvm_xsave) >= 4096, "kvm_xsave");
	struct kvm_xsave xs;
	struct x86_simd_vcpu v;
	struct x86_fault f;
	struct x86_simd_area area;
	struct x86_simd_insn in = *first;
	struct code_cursor cursor = {.page = 1};
	unsigned done = 0;

	if (ioctl(vcpu_fd, KVM_GET_XSAVE, &xs) < 0)
		return X86_NOT_RECOVERED;
	v.regs = *r;
	v.sregs = *s;
	memcpy(v.fx, xs.region, sizeof(v.fx));
	if (x86_simd_area_open(&area) < 0)
		area.base = NULL; /* one mapping per instruction instead */
	for (;;) {
		enum x86_simd_outcome o = x86_simd_complete(&in, &v, mem, &f, &area);
		if (o == X86_SIMD_FAULT && done == 0) {
			x86_simd_area_close(&area);
			if (f.set_cr2) {
				struct kvm_sregs s2 = *s;
				s2.cr2 = f.cr2;
				if (ioctl(vcpu_fd, KVM_SET_SREGS, &s2) < 0)
					return X86_NOT_RECOVERED;
			}
			if (inject_exception_code(vcpu_fd, f.vector, f.has_error_code,
						  f.error_code) < 0)
				return X86_NOT_RECOVERED;
			if (counts)
				atomic_fetch_add(&counts[X86_RECOVERED_FAULT], 1);
			*completed = 1;
			return X86_RECOVERED_FAULT;
		}
		if (o != X86_SIMD_DONE)
			break;
		done++;
		if (counts)
			atomic_fetch_add(&counts[X86_RECOVERED_SIMD + in.kind], 1);
		uint8_t code[15];
		/* RFLAGS.TF: the guest single-steps, each instruction must trap on its own. */
		if (v.regs.rflags & (1ull << 8))
			break;
		if (done >= X86_SIMD_RUN_MAX ||
		    !x86_simd_decode(
			code,
			read_next(vcpu_fd, mem, &cursor, &v.regs, &v.sregs, code, sizeof(code)),
			&in))
			break;
	}
	x86_simd_area_close(&area);
	*completed = done;
	if (done == 0)
		return X86_NOT_RECOVERED;
	if (memcmp(v.fx, xs.region, sizeof(v.fx)) != 0) {
		uint64_t bv;
		memcpy(xs.region, v.fx, sizeof(v.fx));
		memcpy(&bv, (uint8_t *)xs.region + 512, 8);
		bv |= 3; /* x87, SSE */
		memcpy((uint8_t *)xs.region + 512, &bv, 8);
		if (ioctl(vcpu_fd, KVM_SET_XSAVE, &xs) < 0)
			return X86_NOT_RECOVERED;
	}
	if (ioctl(vcpu_fd, KVM_SET_REGS, &v.regs) < 0)
		return X86_NOT_RECOVERED;
	return X86_RECOVERED_SIMD + first->kind;
}

static unsigned counted(atomic_ulong *counts, unsigned *completed, unsigned kind)
{
	if (kind != X86_NOT_RECOVERED) {
		*completed = 1;
		if (counts)
			atomic_fetch_add(&counts[kind], 1);
	}
	return kind;
}

bool x86_code_changed(const uint8_t *seen, size_t seen_n, const uint8_t *now, size_t now_n)
{
	size_t n = seen_n < now_n ? seen_n : now_n;
	return n > 0 && memcmp(seen, now, n) != 0;
}

static unsigned recover(int vcpu_fd, const struct guest_mem *mem, const struct kvm_run *run,
			atomic_ulong *counts, unsigned *completed)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	uint8_t code[15];
	if (ioctl(vcpu_fd, KVM_GET_REGS, &r) < 0 || ioctl(vcpu_fd, KVM_GET_SREGS, &s) < 0)
		return X86_NOT_RECOVERED;
	size_t n = read_code(vcpu_fd, mem, &r, &s, code, sizeof(code));
	if (run && run->exit_reason == KVM_EXIT_INTERNAL_ERROR &&
	    run->emulation_failure.ndata >= 3 &&
	    (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
		size_t seen_n = run->emulation_failure.insn_size;
		if (seen_n > sizeof(run->emulation_failure.insn_bytes))
			seen_n = sizeof(run->emulation_failure.insn_bytes);
		if (x86_code_changed(run->emulation_failure.insn_bytes, seen_n, code, n))
			return X86_RECOVERED_REFETCH;
	}

	if (n >= 1 && code[0] == 0xcc) {
		/* int3 is a trap: the #BP frame must hold the address after it. */
		if (advance_rip(vcpu_fd, &r, 1, -1) < 0 ||
		    inject_exception(vcpu_fd, X86_BP_VECTOR) < 0)
			return X86_NOT_RECOVERED;
		return X86_RECOVERED_INT3;
	}
	if (n >= 1 && code[0] == 0x9b)
		return complete_fwait(vcpu_fd, &r, &s);
	if (n >= 3 && code[0] == 0x0f && code[1] == 0x01 && (code[2] == 0xca || code[2] == 0xcb)) {
		bool stac = code[2] == 0xcb;
		/* At CPL > 0 they raise #UD: not ours to complete. */
		if ((s.cs.selector & 3) || advance_rip(vcpu_fd, &r, 3, stac ? 1 : 0) < 0)
			return X86_NOT_RECOVERED;
		return stac ? X86_RECOVERED_STAC : X86_RECOVERED_CLAC;
	}
	struct x86_simd_insn in;
	if (x86_simd_decode(code, n, &in))
		return complete_simd(vcpu_fd, mem, &in, &r, &s, counts, completed);
	return complete_cmpxchg(vcpu_fd, mem, code, n, &r, &s);
}

unsigned x86_recover_emulation_failure(int vcpu_fd, const struct guest_mem *mem,
				       const struct kvm_run *run, atomic_ulong *counts,
				       unsigned *completed)
{
	unsigned n = 0;
	unsigned kind = recover(vcpu_fd, mem, run, counts, &n);
	if (n == 0) /* the one-instruction completions */
		kind = counted(counts, &n, kind);
	if (completed)
		*completed = n;
	return kind;
}

const char *x86_cmdline_for_emulated_ring0(const char *user, char *buf, size_t len)
{
	for (const char *p = strstr(user, "clearcpuid="); p; p = strstr(p + 1, "clearcpuid="))
		if (p == user || p[-1] == ' ')
			return user;
	int n = snprintf(buf, len, "%s%s%s", user, *user ? " " : "", X86_EMULATED_RING0_PARAMS);
	return n > 0 && (size_t)n < len ? buf : NULL;
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
