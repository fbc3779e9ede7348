/* Segment descriptors: the same value is written into the guest's GDT and, decoded, into
 * the vCPU's hidden segment state, so the two can never disagree. */
#ifndef KVMINI_ARCH_X86_GDT_H
#define KVMINI_ARCH_X86_GDT_H

#include <stdint.h>

#include <linux/kvm.h>

/* flags: the 12 bits of access byte (bits 0-7) and G/DB/L/AVL (bits 12-15) as in the
 * descriptor's bits 40-55. */
static inline uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
	return ((uint64_t)(base & 0xff000000u) << 32) | ((uint64_t)(flags & 0xf0ffu) << 40) |
	       ((uint64_t)(limit & 0x000f0000u) << 32) | ((uint64_t)(base & 0x00ffffffu) << 16) |
	       (uint64_t)(limit & 0x0000ffffu);
}

#define GDT_CODE64 0xa09b /* G, L, present, DPL 0, execute/read, accessed */
#define GDT_CODE32 0xc09b /* G, D/B, present, DPL 0, execute/read, accessed */
#define GDT_DATA   0xc093 /* G, D/B, present, DPL 0, read/write, accessed */
#define GDT_TSS	   0x008b /* present, busy TSS */

static inline struct kvm_segment gdt_to_kvm_segment(uint64_t entry, uint16_t selector)
{
	struct kvm_segment s = {
	    .base = (uint32_t)(((entry >> 16) & 0xffffff) | (((entry >> 56) & 0xff) << 24)),
	    .limit = (uint32_t)((entry & 0xffff) | (((entry >> 48) & 0xf) << 16)),
	    .selector = selector,
	    .type = (uint8_t)((entry >> 40) & 0xf),
	    .present = (uint8_t)((entry >> 47) & 1),
	    .dpl = (uint8_t)((entry >> 45) & 3),
	    .db = (uint8_t)((entry >> 54) & 1),
	    .s = (uint8_t)((entry >> 44) & 1),
	    .l = (uint8_t)((entry >> 53) & 1),
	    .g = (uint8_t)((entry >> 55) & 1),
	    .avl = (uint8_t)((entry >> 52) & 1),
	};
	if (s.g)
		s.limit = (s.limit << 12) | 0xfff;
	return s;
}

#endif
