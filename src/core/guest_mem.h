/* Guest-physical memory: a few regions of host memory (one KVM memory slot each), and the
 * one checked way to turn a guest address into a host pointer. Every guest-supplied address
 * and length goes through gpa_to_hva(), directly or through the helpers below, before it is
 * used.
 *
 * Access with intent: devices read guest memory with guest_mem_read() (copy-out) and write
 * it with guest_mem_write() (copy-in) or through guest_mem_write_ptr(); the writing helpers
 * record the pages they touch in a per-region dirty bitmap while dirty tracking is on (for
 * live migration: KVM's dirty log sees only the guest's own writes). With tracking off, the
 * cost is one predictable branch. gpa_to_hva() itself records nothing: it is for reads and
 * for what the VMM writes before the guest runs. */
#ifndef KVMINI_CORE_GUEST_MEM_H
#define KVMINI_CORE_GUEST_MEM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define GUEST_MEM_MAX_REGIONS 4
#define GUEST_PAGE_SHIFT      12
#define GUEST_PAGE_SIZE	      (1ull << GUEST_PAGE_SHIFT)

struct guest_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
	/* Pages written by devices since the last fetch, one bit per 4 KiB page (bit i of
	 * word i / 64, KVM's layout). Allocated when tracking first starts; kept until
	 * guest_mem_destroy() because a device thread may be marking it. */
	_Atomic(uint64_t) *dirty;
};

struct guest_mem {
	struct guest_region regions[GUEST_MEM_MAX_REGIONS];
	unsigned nregions;    /* region i is KVM memory slot i */
	uint64_t ram_size;    /* total bytes of RAM over all regions */
	atomic_bool tracking; /* device writes are being recorded */
	bool kvm_dirty_log;   /* the slots carry KVM_MEM_LOG_DIRTY_PAGES */
};

/* Host pointer for [gpa, gpa+len), or NULL if the range overflows or is not wholly inside
 * one RAM region. len == 0 is treated as 1 byte (the address itself must be valid). */
void *gpa_to_hva(const struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* Copy-in / copy-out. The range may span regions that touch; any byte outside RAM (or an
 * overflowing range) makes it -EFAULT before anything is copied. Writes mark their pages
 * dirty. len == 0 is a no-op. */
int guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len);
int guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len);

/* Checked pointers for in-place access (gpa_to_hva's rules). The writable one marks
 * [gpa, gpa+len) dirty when called; a device that keeps writing through it after a dirty
 * fetch may have run (a long disk read into guest memory) calls guest_mem_mark_dirty()
 * again when it finishes. */
const void *guest_mem_read_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len);
void *guest_mem_write_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len);
/* Records [gpa, gpa+len) as written (the RAM parts of it). Cheap when tracking is off. */
void guest_mem_mark_dirty(const struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* Adds a region; regions must not overlap. Returns 0 or -EINVAL/-ENOSPC. */
int guest_mem_add_region(struct guest_mem *mem, uint64_t gpa, uint64_t size, void *hva);
/* Frees the dirty bitmaps (not the RAM, which the caller mapped). */
void guest_mem_destroy(struct guest_mem *mem);

/* Registers every region as KVM memory slot i (KVM_SET_USER_MEMORY_REGION), with
 * KVM_MEM_LOG_DIRTY_PAGES while dirty logging is on. */
int guest_mem_register_slots(struct guest_mem *mem, int vm_fd, struct errbuf *e);
/* Starts/stops recording writes: device writes in the bitmaps and, with vm_fd >= 0, the
 * guest's writes in KVM's dirty log (the slots are registered again with/without the
 * flag). Start clears nothing: pages dirtied before it are not reported. */
int guest_mem_dirty_log_start(struct guest_mem *mem, int vm_fd, struct errbuf *e);
int guest_mem_dirty_log_stop(struct guest_mem *mem, int vm_fd, struct errbuf *e);
/* 64-bit words in region i's bitmap. */
size_t guest_mem_dirty_words(const struct guest_mem *mem, unsigned region);
/* Fills bitmap (nwords >= guest_mem_dirty_words) with the pages of region i written since
 * the last fetch, by the guest (KVM_GET_DIRTY_LOG, if KVM logs the slot) or by devices,
 * and clears both records. */
int guest_mem_fetch_dirty(struct guest_mem *mem, int vm_fd, unsigned region, uint64_t *bitmap,
			  size_t nwords, struct errbuf *e);

/* End of RAM below 4 GiB (exclusive) and the highest RAM address + 1. */
uint64_t guest_mem_end_below_4g(const struct guest_mem *mem);
uint64_t guest_mem_end(const struct guest_mem *mem);

#endif
