#include "core/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int bus_init(struct bus *bus, const char *name)
{
	memset(bus, 0, sizeof(*bus));
	bus->name = name;
	return -pthread_rwlock_init(&bus->lock, NULL);
}

void bus_destroy(struct bus *bus)
{
	free(bus->ranges);
	pthread_rwlock_destroy(&bus->lock);
	bus->ranges = NULL;
	bus->nranges = bus->capacity = 0;
}

/* Index of the first range whose base is > addr. */
static unsigned upper_bound(const struct bus *bus, uint64_t addr)
{
	unsigned lo = 0, hi = bus->nranges;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (bus->ranges[mid].base <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_handler_fn fn, void *opaque,
		 const char *name)
{
	uint64_t last;
	int ret = 0;

	if (len == 0 || !fn || __builtin_add_overflow(base, len - 1, &last))
		return -EINVAL;
	pthread_rwlock_wrlock(&bus->lock);
	unsigned pos = upper_bound(bus, base);
	if (pos > 0) {
		const struct bus_range *prev = &bus->ranges[pos - 1];
		if (base - prev->base < prev->len) {
			ret = -EEXIST;
			goto out;
		}
	}
	if (pos < bus->nranges && bus->ranges[pos].base <= last) {
		ret = -EEXIST;
		goto out;
	}
	if (bus->nranges == bus->capacity) {
		unsigned cap = bus->capacity ? bus->capacity * 2 : 16;
		struct bus_range *r = realloc(bus->ranges, cap * sizeof(*r));
		if (!r) {
			ret = -ENOMEM;
			goto out;
		}
		bus->ranges = r;
		bus->capacity = cap;
	}
	memmove(&bus->ranges[pos + 1], &bus->ranges[pos],
		(bus->nranges - pos) * sizeof(bus->ranges[0]));
	bus->ranges[pos] = (struct bus_range){base, len, fn, opaque, name};
	bus->nranges++;
out:
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

int bus_unregister(struct bus *bus, uint64_t base)
{
	int ret = -ENOENT;
	pthread_rwlock_wrlock(&bus->lock);
	unsigned pos = upper_bound(bus, base);
	if (pos > 0 && bus->ranges[pos - 1].base == base) {
		memmove(&bus->ranges[pos - 1], &bus->ranges[pos],
			(bus->nranges - pos) * sizeof(bus->ranges[0]));
		bus->nranges--;
		ret = 0;
	}
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

bool bus_dispatch(struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
	bool found = false;
	pthread_rwlock_rdlock(&bus->lock);
	unsigned pos = upper_bound(bus, addr);
	if (pos > 0 && len > 0) {
		const struct bus_range *r = &bus->ranges[pos - 1];
		uint64_t off = addr - r->base;
		if (off < r->len && len <= r->len - off) {
			r->fn(r->opaque, off, data, len, is_write);
			found = true;
		}
	}
	pthread_rwlock_unlock(&bus->lock);
	if (!found && !is_write)
		memset(data, 0xff, len);
	return found;
}
