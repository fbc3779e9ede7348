/* A tap interface as a network backend: /dev/net/tun opened with IFF_TAP | IFF_NO_PI |
 * IFF_VNET_HDR (IFF_MULTI_QUEUE for more than one queue) on a named interface, which the
 * kernel creates when it does not exist (as QEMU's ifname= does). Each queue is one
 * non-blocking fd; every frame read or written starts with a virtio-net header of
 * vnet_hdr_len bytes (TUNSETVNETHDRSZ). The offloads the tap accepts (TUNSETOFFLOAD) are
 * probed at open, so a device offers the guest only those. */
#ifndef KVMINI_BACKEND_TAP_H
#define KVMINI_BACKEND_TAP_H

#include <net/if.h>
#include <stdbool.h>

#include "util/err.h"

#define TAP_MAX_QUEUES 16

struct tap {
	char ifname[IFNAMSIZ];
	unsigned nqueues;
	int fds[TAP_MAX_QUEUES]; /* O_NONBLOCK | O_CLOEXEC */
	/* TUN_F_* bits (CSUM, TSO4, TSO6, TSO_ECN) that TUNSETOFFLOAD accepted at open: what
	 * the tap may hand us (partial checksums, GSO frames) once the guest takes them. */
	unsigned offloads;
};

/* The path tap_open() uses; $KVMINI_TUN_PATH overrides it (tests). */
const char *tap_device_path(void);

/* Opens nqueues (1..TAP_MAX_QUEUES) queues of ifname with a vnet header of vnet_hdr_len
 * bytes (10 or 12), probes the offloads, then turns them all off (tap_set_offload() turns
 * on those the guest negotiated). Returns 0 or -errno with one line in e: /dev/net/tun
 * missing, permission denied (CAP_NET_ADMIN or a tap owned by this user), a name that is
 * too long, an existing interface that is not a tap or not multi-queue. */
int tap_open(struct tap *t, const char *ifname, unsigned nqueues, int vnet_hdr_len,
	     struct errbuf *e);
/* TUNSETOFFLOAD with flags (a subset of t->offloads) on every queue. */
int tap_set_offload(struct tap *t, unsigned flags, struct errbuf *e);
/* Attaches (IFF_ATTACH_QUEUE) the first n queues and detaches the rest, so the kernel
 * steers frames only to queues the guest uses. No-op for one queue. */
int tap_set_active_queues(struct tap *t, unsigned n, struct errbuf *e);
void tap_close(struct tap *t);

#endif
