/* virtio-net (virtio 1.2, section 5.1) on a tap backend: see net.c. Exposed for `kvmini
 * info`, the option parser (MAC syntax) and the unit tests, which stand a socketpair in for
 * the tap through virtio_net_create_fds(). */
#ifndef KVMINI_VIRTIO_NET_H
#define KVMINI_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "core/loop.h"
#include "util/err.h"
#include "virtio/virtio.h"

#define VIRTIO_NET_MAX_PAIRS  16
#define VIRTIO_NET_QUEUE_SIZE 256
/* Generated MACs: 06:6b:76:xx:xx:xx ("kv"), a locally administered unicast prefix. */
#define VIRTIO_NET_MAC_PREFIX0 0x06
#define VIRTIO_NET_MAC_PREFIX1 0x6b
#define VIRTIO_NET_MAC_PREFIX2 0x76

extern const struct virtio_dev_type virtio_net_type;

/* "52:54:00:12:34:56" -> mac; a multicast address is refused. 0 or -EINVAL. */
int net_parse_mac(const char *s, uint8_t mac[6]);
/* 06:6b:76 and three random bytes. */
void net_generate_mac(uint8_t mac[6]);

/* What a VM's virtio-net would use on this host: "user space (no /dev/vhost-net)" or
 * (once kvmini drives vhost) "vhost-net". $KVMINI_VHOST_NET_PATH overrides the path. */
const char *virtio_net_datapath(void);

/* The counters of one device, summed over its queue pairs. */
struct virtio_net_stats {
	uint64_t rx_frames, rx_bytes, rx_dropped, rx_waits;
	uint64_t tx_frames, tx_bytes, tx_errors;
};

/* A device over npairs already-open backend fds (tests: one end of a SOCK_SEQPACKET
 * socketpair each), each carrying frames with a 12-byte virtio-net header in front.
 * offloads are TUN_F_* bits the backend takes; set_offload, when not NULL, is called with
 * the negotiated subset at DRIVER_OK. The fds stay the caller's. */
int virtio_net_create_fds(const struct guest_mem *mem, struct event_loop *loop, const int *fds,
			  unsigned npairs, const uint8_t mac[6], unsigned offloads,
			  struct virtio_dev **out, struct errbuf *e);
void virtio_net_get_stats(struct virtio_dev *d, struct virtio_net_stats *s);
/* The link status bit the guest reads (VIRTIO_NET_S_LINK_UP); a change interrupts it. */
void virtio_net_set_link(struct virtio_dev *d, bool up);

#endif
