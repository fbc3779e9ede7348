#include "core/guest_mem.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

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

static const struct guest_region *region_of(const struct guest_mem *mem, uint64_t gpa)
{
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct guest_region *r = &mem->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size)
			return r;
	}
	return NULL;
}

/* Bytes of [gpa, gpa+len) from gpa to the end of its region, or 0 if gpa is not RAM. */
static uint64_t chunk_at(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	const struct guest_region *r = region_of(mem, gpa);
	if (!r)
		return 0;
	uint64_t room = r->size - (gpa - r->gpa);
	return len < room ? len : room;
}

/* 0 if every byte of [gpa, gpa+len) (len > 0) is RAM, walking regions that touch. */
static int check_span(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	uint64_t last;
	if (__builtin_add_overflow(gpa, len - 1, &last))
		return -EFAULT;
	while (len > 0) {
		uint64_t n = chunk_at(mem, gpa, len);
		if (n == 0)
			return -EFAULT;
		gpa += n;
		len -= n;
	}
	return 0;
}

static void mark_region(const struct guest_region *r, uint64_t off, uint64_t len)
{
	uint64_t first = off >> GUEST_PAGE_SHIFT, last = (off + len - 1) >> GUEST_PAGE_SHIFT;
	for (uint64_t w = first / 64; w <= last / 64; w++) {
		uint64_t lo = w == first / 64 ? first % 64 : 0;
		uint64_t hi = w == last / 64 ? last % 64 : 63;
		uint64_t mask = (hi == 63 ? ~0ull : (1ull << (hi + 1)) - 1) & ~((1ull << lo) - 1);
		/* Release: the data written before the mark is visible to whoever fetches it. */
		atomic_fetch_or_explicit(&r->dirty[w], mask, memory_order_release);
	}
}

static void mark_slow(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	while (len > 0) {
		const struct guest_region *r = region_of(mem, gpa);
		if (!r)
			return;
		uint64_t off = gpa - r->gpa, room = r->size - off, n = len < room ? len : room;
		if (r->dirty)
			mark_region(r, off, n);
		gpa += n;
		len -= n;
	}
}

void guest_mem_mark_dirty(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	if (__builtin_expect(!atomic_load_explicit(&mem->tracking, memory_order_acquire), 1))
		return;
	uint64_t last;
	if (len == 0 || __builtin_add_overflow(gpa, len - 1, &last))
		return;
	mark_slow(mem, gpa, len);
}

int guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len)
{
	if (len == 0)
		return 0;
	int ret = check_span(mem, gpa, len);
	if (ret < 0)
		return ret;
	const uint8_t *s = src;
	for (uint64_t done = 0; done < len;) {
		uint64_t n = chunk_at(mem, gpa + done, len - done);
		memcpy(gpa_to_hva(mem, gpa + done, n), s + done, n);
		done += n;
	}
	guest_mem_mark_dirty(mem, gpa, len);
	return 0;
}

int guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len)
{
	if (len == 0)
		return 0;
	int ret = check_span(mem, gpa, len);
	if (ret < 0)
		return ret;
	uint8_t *d = dst;
	for (uint64_t done = 0; done < len;) {
		uint64_t n = chunk_at(mem, gpa + done, len - done);
		memcpy(d + done, gpa_to_hva(mem, gpa + done, n), n);
		done += n;
	}
	return 0;
}

const void *guest_mem_read_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	return gpa_to_hva(mem, gpa, len);
}

void *guest_mem_write_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	void *p = gpa_to_hva(mem, gpa, len);
	if (p)
		guest_mem_mark_dirty(mem, gpa, len ? len : 1);
	return p;
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
	mem->regions[mem->nregions++] = (struct guest_region){gpa, size, hva, NULL};
	mem->ram_size += size;
	return 0;
}

void guest_mem_destroy(struct guest_mem *mem)
{
	atomic_store(&mem->tracking, false);
	for (unsigned i = 0; i < mem->nregions; i++) {
		free((void *)mem->regions[i].dirty);
		mem->regions[i].dirty = NULL;
	}
}

size_t guest_mem_dirty_words(const struct guest_mem *mem, unsigned region)
{
	if (region >= mem->nregions)
		return 0;
	uint64_t pages = (mem->regions[region].size + GUEST_PAGE_SIZE - 1) >> GUEST_PAGE_SHIFT;
	return (size_t)((pages + 63) / 64);
}

static int set_slot(const struct guest_mem *mem, int vm_fd, unsigned i, struct errbuf *e)
{
	const struct guest_region *r = &mem->regions[i];
	struct kvm_userspace_memory_region region = {
	    .slot = i,
	    .flags = mem->kvm_dirty_log ? KVM_MEM_LOG_DIRTY_PAGES : 0,
	    .guest_phys_addr = r->gpa,
	    .memory_size = r->size,
	    .userspace_addr = (uint64_t)(uintptr_t)r->hva,
	};
	if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return errf(e, -errno,
			    "KVM_SET_USER_MEMORY_REGION (slot %u, %llu MiB%s) failed: %s", i,
			    (unsigned long long)(r->size >> 20),
			    mem->kvm_dirty_log ? ", dirty logging" : "", strerror(errno));
	return 0;
}

int guest_mem_register_slots(struct guest_mem *mem, int vm_fd, struct errbuf *e)
{
	for (unsigned i = 0; i < mem->nregions; i++) {
		int ret = set_slot(mem, vm_fd, i, e);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int guest_mem_dirty_log_start(struct guest_mem *mem, int vm_fd, struct errbuf *e)
{
	for (unsigned i = 0; i < mem->nregions; i++) {
		if (mem->regions[i].dirty)
			continue;
		size_t words = guest_mem_dirty_words(mem, i);
		mem->regions[i].dirty = calloc(words, sizeof(uint64_t));
		if (!mem->regions[i].dirty)
			return errf(e, -ENOMEM,
				    "cannot allocate the dirty bitmap of slot %u (%zu KiB)", i,
				    words * 8 / 1024);
	}
	/* Release: a writer that sees the flag also sees the bitmaps. */
	atomic_store_explicit(&mem->tracking, true, memory_order_release);
	if (vm_fd < 0)
		return 0;
	mem->kvm_dirty_log = true;
	int ret = guest_mem_register_slots(mem, vm_fd, e);
	if (ret < 0) {
		mem->kvm_dirty_log = false;
		guest_mem_register_slots(mem, vm_fd, NULL);
		atomic_store(&mem->tracking, false);
	}
	return ret;
}

int guest_mem_dirty_log_stop(struct guest_mem *mem, int vm_fd, struct errbuf *e)
{
	atomic_store(&mem->tracking, false);
	if (vm_fd < 0 || !mem->kvm_dirty_log)
		return 0;
	mem->kvm_dirty_log = false;
	return guest_mem_register_slots(mem, vm_fd, e);
}

int guest_mem_fetch_dirty(struct guest_mem *mem, int vm_fd, unsigned region, uint64_t *bitmap,
			  size_t nwords, struct errbuf *e)
{
	size_t words = guest_mem_dirty_words(mem, region);
	if (region >= mem->nregions)
		return errf(e, -EINVAL, "no memory slot %u (there are %u)", region, mem->nregions);
	if (nwords < words)
		return errf(e, -EINVAL, "dirty bitmap of slot %u needs %zu words, got %zu", region,
			    words, nwords);
	memset(bitmap, 0, words * sizeof(uint64_t));
	if (vm_fd >= 0 && mem->kvm_dirty_log) {
		struct kvm_dirty_log log = {.slot = region, .dirty_bitmap = bitmap};
		if (ioctl(vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
			return errf(e, -errno, "KVM_GET_DIRTY_LOG (slot %u) failed: %s", region,
				    strerror(errno));
	}
	_Atomic(uint64_t) *dev = mem->regions[region].dirty;
	if (dev)
		for (size_t i = 0; i < words; i++)
			bitmap[i] |= atomic_exchange_explicit(&dev[i], 0, memory_order_acquire);
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
