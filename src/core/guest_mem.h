/* Guest-physical memory: a few regions of host memory, and the one checked way to turn a
 * guest address into a host pointer. Every guest-supplied address and length goes through
 * gpa_to_hva() (or the read/write helpers built on it) before it is used. */
#ifndef KVMINI_CORE_GUEST_MEM_H
#define KVMINI_CORE_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_MEM_MAX_REGIONS 4

struct guest_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
};

struct guest_mem {
	struct guest_region regions[GUEST_MEM_MAX_REGIONS];
	unsigned nregions;
	uint64_t ram_size; /* total bytes of RAM over all regions */
};

/* Host pointer for [gpa, gpa+len), or NULL if the range overflows or is not wholly inside
 * one RAM region. len == 0 is treated as 1 byte (the address itself must be valid). */
void *gpa_to_hva(const struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* Copy to/from guest memory; return 0 or -EFAULT if the range is not RAM. */
int guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len);
int guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len);

/* Adds a region; regions must not overlap. Returns 0 or -EINVAL/-ENOSPC. */
int guest_mem_add_region(struct guest_mem *mem, uint64_t gpa, uint64_t size, void *hva);

/* End of RAM below 4 GiB (exclusive) and the highest RAM address + 1. */
uint64_t guest_mem_end_below_4g(const struct guest_mem *mem);
uint64_t guest_mem_end(const struct guest_mem *mem);

#endif
