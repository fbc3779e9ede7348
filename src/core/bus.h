/* A trap bus: maps address ranges (port I/O or MMIO) to device handlers. The bus knows
 * ranges, not devices. Ranges may be added and removed while vCPUs dispatch (a rwlock
 * guards the table); a handler must not (un)register on the bus that called it. */
#ifndef KVMINI_CORE_BUS_H
#define KVMINI_CORE_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* offset is relative to the range's base; data holds len bytes (1..8), little-endian.
 * For reads the handler fills data; for writes it consumes it. */
typedef void (*bus_handler_fn)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			       bool is_write);

struct bus_range {
	uint64_t base;
	uint64_t len;
	bus_handler_fn fn;
	void *opaque;
	const char *name;
};

struct bus {
	const char *name; /* "pio" or "mmio", for messages */
	pthread_rwlock_t lock;
	struct bus_range *ranges; /* sorted by base, non-overlapping */
	unsigned nranges, capacity;
};

int bus_init(struct bus *bus, const char *name);
void bus_destroy(struct bus *bus);
/* Returns 0, -EEXIST if the range overlaps another, -EINVAL for an empty/overflowing one. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_handler_fn fn, void *opaque,
		 const char *name);
int bus_unregister(struct bus *bus, uint64_t base);
/* Runs the handler for addr. Returns false if no range covers [addr, addr+len): then a read
 * is filled with 0xff (what an empty ISA/PCI bus returns) and a write is dropped. */
bool bus_dispatch(struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write);

#endif
