/* KVM_IOEVENTFD: a guest write to a notify register signals an eventfd inside KVM, and the
 * event loop runs the device's callback, so the vCPU never leaves the kernel for a queue
 * notification. With a datamatch only writes of that value (and that width) signal the fd;
 * other writes still exit to user space and reach the bus handler as usual.
 * With vm_fd < 0 (unit tests) nothing is assigned and ioeventfd_init returns -ENODEV: the
 * caller keeps its plain write path. */
#ifndef KVMINI_CORE_IOEVENTFD_H
#define KVMINI_CORE_IOEVENTFD_H

#include <stdbool.h>
#include <stdint.h>

#include "core/loop.h"
#include "util/err.h"

typedef void (*ioeventfd_fn)(void *opaque);

struct ioeventfd {
	int vm_fd;
	int fd; /* -1 when not assigned */
	struct event_loop *loop;
	uint64_t addr;
	uint32_t len;
	bool pio;
	bool has_datamatch;
	uint64_t datamatch;
	ioeventfd_fn fn;
	void *opaque;
};

/* Assigns an eventfd to writes of len bytes at addr (port I/O if pio) and watches it on
 * loop. Returns 0 or -errno with e filled; on failure nothing is left assigned. */
int ioeventfd_init(struct ioeventfd *io, int vm_fd, struct event_loop *loop, uint64_t addr,
		   uint32_t len, bool pio, bool has_datamatch, uint64_t datamatch, ioeventfd_fn fn,
		   void *opaque, struct errbuf *e);
/* Stops watching, deassigns and closes; a running callback has returned (loop_del_fd).
 * Safe on an ioeventfd that failed or was never set up (fd = -1). */
void ioeventfd_destroy(struct ioeventfd *io);

#endif
