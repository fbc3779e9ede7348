/* Queue notifications absorbed by KVM: an eventfd that KVM signals when the guest writes a
 * given MMIO address (KVM_IOEVENTFD), drained on the event loop, which then calls fn. The
 * vCPU that wrote never leaves the kernel, and never runs device code. When the ioctl is
 * refused (no KVM in tests, or a kernel without it) the caller keeps handling the write
 * in its MMIO handler: assign's result says which. */
#ifndef KVMINI_CORE_IOEVENTFD_H
#define KVMINI_CORE_IOEVENTFD_H

#include <stdbool.h>
#include <stdint.h>

#include "core/loop.h"
#include "util/err.h"

typedef void (*ioeventfd_fn)(void *opaque, unsigned arg);

struct ioeventfd {
	int vm_fd;
	int fd; /* the eventfd, on the loop; -1 before init */
	struct event_loop *loop;
	ioeventfd_fn fn;
	void *opaque;
	unsigned arg;
	uint64_t addr;
	uint32_t len; /* 0: any access width (KVM_CAP_IOEVENTFD_ANY_LENGTH) */
	bool assigned;
	bool has_datamatch; /* bound with ioeventfd_assign_datamatch */
	bool borrowed;	    /* fd belongs to whoever waits on it (ioeventfd_init_fd) */
	uint64_t datamatch;
};

/* Creates the eventfd and puts it on loop (fn(opaque, arg) runs there for each batch of
 * writes). Nothing is assigned yet. 0 or -errno with e filled. */
int ioeventfd_init(struct ioeventfd *io, int vm_fd, struct event_loop *loop, ioeventfd_fn fn,
		   void *opaque, unsigned arg, struct errbuf *e);
/* The same with an eventfd someone else owns and waits on (a device's queue worker): KVM
 * signals that thread directly, nothing goes through the loop, and destroy leaves the fd
 * open. */
void ioeventfd_init_fd(struct ioeventfd *io, int vm_fd, int fd);
/* Binds the eventfd to an MMIO write of any width at addr (else of len bytes), moving it if
 * it was bound elsewhere. 0, or -errno (then nothing is bound: handle the write by hand). */
int ioeventfd_assign(struct ioeventfd *io, uint64_t addr, uint32_t len);
/* The same for writes of exactly len bytes of value at addr (KVM_IOEVENTFD_FLAG_DATAMATCH):
 * several eventfds can share one register, one per value (virtio-mmio's QueueNotify, one
 * per queue index); other values exit to user space as usual. */
int ioeventfd_assign_datamatch(struct ioeventfd *io, uint64_t addr, uint32_t len, uint64_t value);
void ioeventfd_deassign(struct ioeventfd *io);
/* Deassigns, takes the fd off the loop (waiting for a running callback) and closes it. */
void ioeventfd_destroy(struct ioeventfd *io);

#endif
