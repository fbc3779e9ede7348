/* Completing SSE/FPU (and popcnt/crc32-style) instructions a host's KVM could not emulate in
 * guest ring 0. The instruction is decoded once against a table of the forms kvmini knows;
 * its faults (#UD, #NM, #GP, #SS, #PF) are computed from the vCPU state as the CPU computes
 * them; otherwise the same instruction runs on the host, re-encoded with its memory operand
 * pointing at a bounce copy of the guest bytes (read through the guest's page tables), the
 * guest's general registers, flags and FXSAVE image loaded into the host CPU around it. */
#ifndef KVMINI_ARCH_X86_SIMD_H
#define KVMINI_ARCH_X86_SIMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "core/guest_mem.h"

/* Upper bound on the kinds x86_simd_kind_name() names (table entries), for statistics. */
#define X86_SIMD_KINDS 160

/* One decoded instruction of the table. */
struct x86_simd_insn {
	uint8_t code[15];
	unsigned length; /* bytes, prefixes and immediate included */
	unsigned kind;	 /* table entry: 1..X86_SIMD_KINDS-1 */
	uint8_t map;	 /* 0 one-byte (x87), 1 0f, 2 0f 38, 3 0f 3a */
	uint8_t opcode;
	uint8_t rex;
	bool has_66;
	unsigned reg; /* ModRM.reg with REX.R */
	unsigned rm;  /* ModRM.rm with REX.B (a register when !mem) */
	bool mem;     /* the operand is in memory */
	/* memory operand: segment base + base + index * scale + disp (+ next RIP) */
	int base, index;
	unsigned scale;
	int64_t disp;
	bool rip_relative;
	int segment;	   /* 0, or 4 fs / 5 gs */
	unsigned mem_size; /* bytes the instruction reads or writes */
	bool mem_write;	   /* it writes them (else reads) */
	unsigned align;	   /* alignment required, or 1 */
	size_t prefix_len; /* legacy prefixes */
	size_t opcode_off; /* first opcode byte (after REX) */
	size_t modrm_off;  /* ModRM */
	int imm8;	   /* -1: none */
	unsigned flags;	   /* table flags (see simd.c) */
};

/* Decodes code[0..n) against the table. False for anything it does not know, including
 * VEX/EVEX, lock, 32-bit addressing, and encodings the host would reject. Pure. */
bool x86_simd_decode(const uint8_t *code, size_t n, struct x86_simd_insn *out);

/* A short name for a kind ("ldmxcsr", "sse2 integer", ...). */
const char *x86_simd_kind_name(unsigned kind);

/* What an instruction needs and returns: the vCPU registers (in/out), the special registers
 * (in), and the 512-byte FXSAVE image of the guest's x87/SSE state (in/out). */
struct x86_simd_vcpu {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint8_t fx[512] __attribute__((aligned(64)));
};

/* An exception to inject instead of completing the instruction. */
struct x86_fault {
	unsigned vector;
	bool has_error_code;
	uint32_t error_code;
	bool set_cr2;
	uint64_t cr2;
};

enum x86_simd_outcome {
	X86_SIMD_NOT_DONE = 0, /* not ours, or not exactly reproducible: leave it to the report */
	X86_SIMD_DONE,	       /* state updated, RIP advanced */
	X86_SIMD_FAULT,	       /* *fault holds what the CPU would raise; nothing else changed */
};

/* Executable memory for the generated host code of a run of instructions (one writable and
 * executable page, reused for each). A run is at most X86_SIMD_RUN_MAX instructions. */
#define X86_SIMD_RUN_MAX 2048
struct x86_simd_area {
	uint8_t *base;
	unsigned used;
};
int x86_simd_area_open(struct x86_simd_area *a);
void x86_simd_area_close(struct x86_simd_area *a);

/* Runs a decoded instruction against v and guest memory (page walk with the checks a ring-0
 * access makes: present, writable under CR0.WP, SMAP, accessed/dirty bits). Executes the
 * instruction on the host CPU, from area when one is open and has room (else from a page
 * mapped for this one instruction); no KVM calls. For unit tests and the recovery path. */
enum x86_simd_outcome x86_simd_complete(const struct x86_simd_insn *in, struct x86_simd_vcpu *v,
					const struct guest_mem *mem, struct x86_fault *fault,
					struct x86_simd_area *area);

#endif
