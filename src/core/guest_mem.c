#include "core/guest_mem.h"

#include <errno.h>
#include <string.h>

void *gpa_to_hva(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	uint64_t last;

	if (len == 0)
		len = 1;
	if (__builtin_add_overflow(gpa, len - 1, &last))
		return NULL;
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct guest_region *r = &mem->regions[i];
		if (gpa >= r->gpa && last - r->gpa < r->size && gpa - r->gpa < r->size)
			return r->hva + (gpa - r->gpa);
	}
	return NULL;
}

int guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len)
{
	if (len == 0)
		return 0;
	void *dst = gpa_to_hva(mem, gpa, len);
	if (!dst)
		return -EFAULT;
	memcpy(dst, src, len);
	return 0;
}

int guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len)
{
	if (len == 0)
		return 0;
	const void *src = gpa_to_hva(mem, gpa, len);
	if (!src)
		return -EFAULT;
	memcpy(dst, src, len);
	return 0;
}

int guest_mem_add_region(struct guest_mem *mem, uint64_t gpa, uint64_t size, void *hva)
{
	uint64_t end;

	if (size == 0 || !hva || __builtin_add_overflow(gpa, size, &end))
		return -EINVAL;
	if (mem->nregions >= GUEST_MEM_MAX_REGIONS)
		return -ENOSPC;
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct guest_region *r = &mem->regions[i];
		if (gpa < r->gpa + r->size && r->gpa < end)
			return -EINVAL;
	}
	mem->regions[mem->nregions++] = (struct guest_region){gpa, size, hva};
	mem->ram_size += size;
	return 0;
}

uint64_t guest_mem_end_below_4g(const struct guest_mem *mem)
{
	uint64_t end = 0;
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct guest_region *r = &mem->regions[i];
		uint64_t e = r->gpa + r->size;
		if (r->gpa < (1ull << 32) && e > end)
			end = e > (1ull << 32) ? (1ull << 32) : e;
	}
	return end;
}

uint64_t guest_mem_end(const struct guest_mem *mem)
{
	uint64_t end = 0;
	for (unsigned i = 0; i < mem->nregions; i++) {
		uint64_t e = mem->regions[i].gpa + mem->regions[i].size;
		if (e > end)
			end = e;
	}
	return end;
}
