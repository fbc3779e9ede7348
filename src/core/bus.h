/* A trap bus: maps address ranges (port I/O or MMIO) to device handlers. The bus knows
 * ranges, not devices.
 *
 * Dispatch takes no lock. The range table is copy-on-write: bus_register, bus_unregister
 * and bus_move build a new sorted table under a writers' mutex and publish it with one
 * atomic store; bus_dispatch reads whichever table is current. So a handler may register,
 * remove or move ranges on the bus that called it (a PCI BAR moved by a config-space
 * write), and a slow handler never holds up a writer. A replaced table is freed only once
 * no dispatch can still be reading it: readers announce themselves in one of two counters
 * (an SRCU-style epoch; see bus.c). */
#ifndef KVMINI_CORE_BUS_H
#define KVMINI_CORE_BUS_H

#include <pthread.h>
#include <stdatomic.h>
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

struct bus_table; /* immutable once published */

struct bus {
	const char *name;     /* "pio" or "mmio", for messages */
	pthread_mutex_t lock; /* writers only */
	_Atomic(struct bus_table *) table;
	atomic_uint epoch;	   /* low bit: the counter new readers enter */
	atomic_long active[2];	   /* dispatches in progress, per epoch parity */
	struct bus_table *retired; /* replaced tables not yet freed (under lock) */
};

int bus_init(struct bus *bus, const char *name);
/* No dispatch may be running. */
void bus_destroy(struct bus *bus);
/* Returns 0, -EEXIST if the range overlaps another, -EINVAL for an empty/overflowing one,
 * -ENOMEM. Safe from any thread, including from inside a handler of this bus. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_handler_fn fn, void *opaque,
		 const char *name);
/* Removes the range that starts at base (-ENOENT if none). A dispatch that began before
 * may still be running its handler: call bus_synchronize() before freeing its opaque. */
int bus_unregister(struct bus *bus, uint64_t base);
/* Moves the range at old_base to new_base in one step (no dispatch sees it at both or at
 * neither). -ENOENT, -EEXIST (the new place overlaps another range), -EINVAL. */
int bus_move(struct bus *bus, uint64_t old_base, uint64_t new_base);
/* Returns once every dispatch on this bus that began before the call has returned, except
 * those of the calling thread itself (a handler tearing down a device waits for the other
 * vCPUs, not for itself). Never takes the writers' lock. Two handlers that synchronize
 * the same bus at the same time wait for each other: teardown from a handler is for one
 * device at a time (hand anything bigger to the loop thread). */
void bus_synchronize(struct bus *bus);
/* Runs the handler for addr. Returns false if no range covers [addr, addr+len): then a read
 * is filled with 0xff (what an empty ISA/PCI bus returns) and a write is dropped. */
bool bus_dispatch(struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write);

#endif
