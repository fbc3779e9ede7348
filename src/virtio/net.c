/* virtio-net (virtio 1.2, section 5.1) in user space over a tap (backend/tap.h).
 *
 * Queues: rx0, tx0, rx1, tx1, ... and, with more than one pair, a control queue last
 * (VIRTIO_NET_F_CTRL_VQ + MQ; VQ_PAIRS_SET is its only command). Every frame crosses with
 * the 12-byte header of VERSION_1 (struct virtio_net_hdr_mrg_rxbuf), passed to and from the
 * tap unchanged except num_buffers, which the device fills on rx.
 *
 * tx (a kick): pop a chain, writev its readable part (header + frame) straight from guest
 * memory to the tap, push it back; one interrupt per batch. The kernel checks the header
 * (a bogus one fails the write, which is counted as a tx error, and the chain is returned).
 *
 * rx (the tap's fd readable, edge-triggered on the loop; or an rx kick): a frame is read
 * into a bounce buffer, then copied into one guest chain (or, with MRG_RXBUF, as many as it
 * needs). The chains of a frame are pushed together once the frame is complete, so the
 * driver never sees num_buffers ahead of the buffers. When the guest has no buffers the
 * frame is held and the tap is no longer read (the kernel queues, then drops at its own
 * limit, as for any slow receiver); the next rx kick resumes. No frame is dropped silently:
 * a frame that does not fit a non-mergeable chain is counted in rx_dropped. A chain with no
 * writable space, or a ring the driver broke, sets NEEDS_RESET.
 *
 * Threads: the loop thread reads the tap; kicks come from the loop (ioeventfd) or a vCPU.
 * Each queue pair has an rx lock and a tx lock, held while serving (and while interrupting
 * through the transport, which takes its own lock). reset() runs under the transport's
 * lock, so it waits for nothing: it clears `running` and bumps `gen`, and the data path
 * drops what it held the next time it runs.
 *
 * vhost-net: virtio_net_vhost_start() is the seam that would hand the queues to the kernel;
 * this host has no /dev/vhost-net, so it always declines and the user-space path serves. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>

#include "backend/tap.h"
#include "util/log.h"
#include "virtio/net.h"

#define NET_HDR_LEN   ((uint32_t)sizeof(struct virtio_net_hdr_mrg_rxbuf)) /* 12 */
#define NET_FRAME_MAX (65536u + 4096u) /* a GSO frame and its header, as QEMU's */
#define NET_BATCH     64u	       /* frames per interrupt at most */
#define NET_MTU	      1500u
#define NET_STATE_VER 1u

struct held_buf {
	uint16_t head;
	uint32_t len;
};

struct net_pair {
	struct virtio_net *n;
	unsigned idx;
	int fd;
	bool watched;
	unsigned gen; /* the device's reset generation the rx state belongs to */
	pthread_mutex_t rx_lock, tx_lock;
	/* rx: the frame being delivered (pending), how much of it is placed, and the chains
	 * it fills so far (the first one's segments kept to write the header last). */
	uint8_t *frame;
	size_t frame_len, placed;
	bool pending;
	struct vq_request *first, *scratch;
	struct held_buf *held;
	unsigned nheld;
	/* tx */
	struct vq_request *txreq;
	struct iovec *iov;
	/* Counters: rx ones written under rx_lock, tx ones under tx_lock (one writer at a
	 * time, virtio_stat_add), read by the monitor without either. */
	struct {
		atomic_uint_fast64_t rx_frames, rx_bytes, rx_dropped, rx_waits;
		atomic_uint_fast64_t tx_frames, tx_bytes, tx_errors;
	} st;
};

struct virtio_net {
	struct virtio_dev dev; /* first: the device list frees the whole struct through it */
	struct event_loop *loop;
	struct tap tap;
	bool own_tap;
	unsigned npairs, active_pairs;
	unsigned offloads; /* TUN_F_* the backend takes */
	uint64_t offer;
	uint8_t mac[6];
	uint16_t status; /* VIRTIO_NET_S_* */
	/* Serving (between DRIVER_OK and a reset), and the reset count: reset() runs on the
	 * transport's control path with its lock held, which the data path's interrupts take,
	 * so it must not wait for the data path. It flips these; the data path checks them
	 * under its own locks and drops what it held from before the reset. */
	atomic_bool running;
	atomic_uint gen;
	/* The VM is paused (net_pause): the data path takes nothing from the rings and the
	 * tap is not read until net_resume. */
	atomic_bool paused;
	struct net_pair pair[VIRTIO_NET_MAX_PAIRS];
	pthread_mutex_t ctrl_lock;
	struct vq_request *ctrlreq;
};

static unsigned rxq(unsigned pair)
{
	return 2 * pair;
}

static unsigned ctrlq(const struct virtio_net *n)
{
	return 2 * n->npairs;
}

const char *virtio_net_datapath(void)
{
	const char *p = getenv("KVMINI_VHOST_NET_PATH");
	if (!p || !*p)
		p = "/dev/vhost-net";
	if (access(p, F_OK) != 0)
		return "user space (no /dev/vhost-net)";
	return "user space (/dev/vhost-net exists; kvmini does not drive vhost-net yet)";
}

/* The seam for vhost-net: would open /dev/vhost-net, VHOST_SET_OWNER, hand it the memory
 * table, each queue's rings and kick/call eventfds and the tap fds (VHOST_NET_SET_BACKEND),
 * and return 0 so the user-space path stays idle. kvmini does not do this yet: -ENOTSUP. */
static int virtio_net_vhost_start(struct virtio_net *n)
{
	(void)n;
	return -ENOTSUP;
}

int net_parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;
	if (!s || strlen(s) != 17 ||
	    sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		   &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		if (s[3 * i + 2] != ':' && i < 5)
			return -EINVAL;
		mac[i] = (uint8_t)v[i];
	}
	if (mac[0] & 1)
		return -EINVAL; /* multicast */
	return 0;
}

void net_generate_mac(uint8_t mac[6])
{
	uint8_t r[3] = {0};
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		uint64_t t = (uint64_t)getpid() * 2654435761u ^ (uint64_t)(uintptr_t)mac;
		memcpy(r, &t, sizeof(r));
	}
	mac[0] = VIRTIO_NET_MAC_PREFIX0;
	mac[1] = VIRTIO_NET_MAC_PREFIX1;
	mac[2] = VIRTIO_NET_MAC_PREFIX2;
	memcpy(mac + 3, r, 3);
}

/* ---- rx ---- */

static void rx_drop_held(struct net_pair *p)
{
	p->pending = false;
	p->nheld = 0;
	p->placed = 0;
}

/* Delivers the pending frame: pops chains until it is placed, then writes the header and
 * pushes them. Returns 1 when delivered, 0 when the guest has no buffers (frame kept),
 * -1 when the queue or the device is broken (frame dropped). rx_lock held. */
static int rx_place(struct net_pair *p)
{
	struct virtio_net *n = p->n;
	struct virtio_dev *d = &n->dev;
	struct virtqueue *vq = &d->vqs[rxq(p->idx)];
	bool mrg = virtio_dev_has_feature(d, VIRTIO_NET_F_MRG_RXBUF);
	const uint8_t *payload = p->frame + NET_HDR_LEN;
	size_t plen = p->frame_len - NET_HDR_LEN;

	while (p->nheld == 0 || p->placed < plen) {
		struct vq_request *req = p->nheld == 0 ? p->first : p->scratch;
		int r = virtqueue_pop(vq, req);
		if (r == 0) {
			/* Out of buffers: ask for a kick, and look once more (the driver may
			 * have added some before seeing the request). */
			if (virtqueue_set_notification(vq, true))
				continue;
			virtio_stat_add(&p->st.rx_waits, 1);
			return 0;
		}
		if (r < 0) {
			virtio_dev_needs_reset(d, vq->why.msg);
			rx_drop_held(p);
			return -1;
		}
		uint32_t room = req->writable_len;
		uint32_t skip = p->nheld == 0 ? NET_HDR_LEN : 0;
		if (room < skip || room == 0) {
			virtio_dev_needs_reset(d, "an rx buffer has no room for the header");
			rx_drop_held(p);
			return -1;
		}
		size_t want = plen - p->placed;
		if (!mrg && want > room - skip) {
			/* The driver's buffer is too small for the frame (it should have taken
			 * MRG_RXBUF or given 64 KiB): counted, the buffer comes back empty. */
			virtqueue_push(vq, req->head, 0);
			virtio_stat_add(&p->st.rx_dropped, 1);
			rx_drop_held(p);
			return 1;
		}
		if (want > room - skip)
			want = room - skip;
		size_t w = virtqueue_req_write(vq, req, skip, payload + p->placed, want);
		p->placed += w;
		p->held[p->nheld].head = req->head;
		p->held[p->nheld].len = (uint32_t)(skip + w);
		p->nheld++;
		if (p->nheld >= vq->size && p->placed < plen) {
			/* Cannot happen with a sane ring (a chain is at least 1 byte). */
			virtio_dev_needs_reset(d,
					       "an rx frame needs more buffers than the queue has");
			rx_drop_held(p);
			return -1;
		}
	}
	struct virtio_net_hdr_mrg_rxbuf hdr;
	memcpy(&hdr, p->frame, NET_HDR_LEN);
	hdr.num_buffers = (uint16_t)p->nheld; /* little-endian host */
	if (!virtio_dev_has_feature(d, VIRTIO_NET_F_GUEST_CSUM))
		hdr.hdr.flags &=
		    (uint8_t) ~(VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID);
	virtqueue_req_write(vq, p->first, 0, &hdr, NET_HDR_LEN);
	for (unsigned i = 0; i < p->nheld; i++)
		virtqueue_push(vq, p->held[i].head, p->held[i].len);
	virtio_stat_add(&p->st.rx_frames, 1);
	virtio_stat_add(&p->st.rx_bytes, plen);
	rx_drop_held(p);
	return 1;
}

/* Reads and delivers frames until the tap is empty or the guest has no buffers. */
static void rx_run(struct net_pair *p)
{
	struct virtio_dev *d = &p->n->dev;
	struct virtqueue *vq = &d->vqs[rxq(p->idx)];
	unsigned since_irq = 0;

	pthread_mutex_lock(&p->rx_lock);
	unsigned gen = atomic_load(&p->n->gen);
	if (p->gen != gen) {
		rx_drop_held(p); /* chains popped before a reset are gone with the rings */
		p->gen = gen;
	}
	uint8_t st = atomic_load(&d->status);
	if (!atomic_load(&p->n->running) || atomic_load(&p->n->paused) ||
	    !(st & VIRTIO_CONFIG_S_DRIVER_OK) || (st & VIRTIO_CONFIG_S_NEEDS_RESET) ||
	    !vq->enabled) {
		pthread_mutex_unlock(&p->rx_lock);
		return;
	}
	while (atomic_load(&p->n->running) && !atomic_load(&p->n->paused)) {
		if (!p->pending) {
			ssize_t len = read(p->fd, p->frame, NET_FRAME_MAX);
			if (len < 0 && errno == EINTR)
				continue;
			if (len <= 0)
				break; /* EAGAIN: edge-triggered, the next frame wakes us */
			if ((size_t)len < NET_HDR_LEN) {
				virtio_stat_add(&p->st.rx_dropped, 1);
				continue;
			}
			p->frame_len = (size_t)len;
			p->pending = true;
			p->placed = 0;
			p->nheld = 0;
		}
		int r = rx_place(p);
		if (r <= 0)
			break;
		if (++since_irq >= NET_BATCH) {
			virtio_dev_used(d, rxq(p->idx));
			since_irq = 0;
		}
	}
	if (since_irq)
		virtio_dev_used(d, rxq(p->idx));
	pthread_mutex_unlock(&p->rx_lock);
}

static void rx_fd_ready(void *opaque, int fd, uint32_t events)
{
	rx_run(opaque);
}

/* ---- tx ---- */

static void tx_run(struct net_pair *p)
{
	struct virtio_dev *d = &p->n->dev;
	unsigned q = rxq(p->idx) + 1;
	struct virtqueue *vq = &d->vqs[q];
	unsigned since_irq = 0;

	pthread_mutex_lock(&p->tx_lock);
	while (atomic_load(&p->n->running) && !atomic_load(&p->n->paused)) {
		virtqueue_set_notification(vq, false);
		for (;;) {
			struct vq_request *req = p->txreq;
			int r = virtqueue_pop(vq, req);
			if (r < 0) {
				virtio_dev_needs_reset(d, vq->why.msg);
				goto out;
			}
			if (r == 0)
				break;
			unsigned niov = 0;
			bool ok =
			    req->readable_len >= NET_HDR_LEN && req->readable_len <= NET_FRAME_MAX;
			for (unsigned i = 0; ok && i < req->nreadable; i++) {
				const struct vq_seg *s = &req->seg[i];
				const void *h = guest_mem_read_ptr(d->mem, s->gpa, s->len);
				if (!h)
					ok = false;
				p->iov[niov].iov_base = (void *)h;
				p->iov[niov].iov_len = s->len;
				niov++;
			}
			if (ok) {
				ssize_t w;
				do
					w = writev(p->fd, p->iov, (int)niov);
				while (w < 0 && errno == EINTR);
				if (w < 0) {
					virtio_stat_add(&p->st.tx_errors, 1);
					log_debug("virtio-net: tx to %s: %s", p->n->tap.ifname,
						  strerror(errno));
				} else {
					virtio_stat_add(&p->st.tx_frames, 1);
					virtio_stat_add(&p->st.tx_bytes,
							req->readable_len - NET_HDR_LEN);
				}
			} else {
				virtio_stat_add(&p->st.tx_errors, 1);
			}
			virtqueue_push(vq, req->head, 0);
			if (++since_irq >= NET_BATCH) {
				virtio_dev_used(d, q);
				since_irq = 0;
			}
		}
		if (!virtqueue_set_notification(vq, true))
			break;
	}
out:
	if (since_irq)
		virtio_dev_used(d, q);
	pthread_mutex_unlock(&p->tx_lock);
}

/* ---- control queue ---- */

static void ctrl_run(struct virtio_net *n)
{
	struct virtio_dev *d = &n->dev;
	struct virtqueue *vq = &d->vqs[ctrlq(n)];
	unsigned done = 0;

	pthread_mutex_lock(&n->ctrl_lock);
	while (atomic_load(&n->running) && !atomic_load(&n->paused)) {
		struct vq_request *req = n->ctrlreq;
		int r = virtqueue_pop(vq, req);
		if (r < 0) {
			virtio_dev_needs_reset(d, vq->why.msg);
			break;
		}
		if (r == 0)
			break;
		struct virtio_net_ctrl_hdr h = {0};
		uint8_t ack = VIRTIO_NET_ERR;
		if (virtqueue_req_read(vq, req, 0, &h, sizeof(h)) == sizeof(h) &&
		    h.class == VIRTIO_NET_CTRL_MQ && h.cmd == VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET &&
		    virtio_dev_has_feature(d, VIRTIO_NET_F_MQ)) {
			uint16_t pairs = 0;
			struct errbuf e;
			if (virtqueue_req_read(vq, req, sizeof(h), &pairs, 2) == 2 && pairs >= 1 &&
			    pairs <= n->npairs) {
				if (!n->own_tap || tap_set_active_queues(&n->tap, pairs, &e) == 0) {
					n->active_pairs = pairs;
					ack = VIRTIO_NET_OK;
				} else {
					log_warn("virtio-net: %s", e.msg);
				}
			}
		}
		size_t w = req->writable_len
			       ? virtqueue_req_write(vq, req, req->writable_len - 1, &ack, 1)
			       : 0;
		virtqueue_push(vq, req->head, (uint32_t)w);
		done++;
	}
	if (done)
		virtio_dev_used(d, ctrlq(n));
	pthread_mutex_unlock(&n->ctrl_lock);
}

/* ---- device ops ---- */

static uint64_t net_features(struct virtio_dev *d)
{
	return ((struct virtio_net *)d->priv)->offer;
}

static void net_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	struct virtio_net *n = d->priv;
	struct virtio_net_config c;
	memset(&c, 0, sizeof(c));
	memcpy(c.mac, n->mac, 6);
	c.status = n->status;
	c.max_virtqueue_pairs = (uint16_t)n->npairs;
	c.mtu = NET_MTU;
	memcpy(data, (uint8_t *)&c + off, len);
}

static void net_config_write(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len)
{
	/* All fields are read-only once VERSION_1 is negotiated (the MAC is set through the
	 * control queue's MAC_ADDR_SET, which kvmini does not offer). */
}

static unsigned negotiated_offloads(struct virtio_net *n)
{
	struct virtio_dev *d = &n->dev;
	unsigned f = 0;
	if (virtio_dev_has_feature(d, VIRTIO_NET_F_GUEST_CSUM)) {
		f |= TUN_F_CSUM;
		if (virtio_dev_has_feature(d, VIRTIO_NET_F_GUEST_TSO4))
			f |= TUN_F_TSO4;
		if (virtio_dev_has_feature(d, VIRTIO_NET_F_GUEST_TSO6))
			f |= TUN_F_TSO6;
		if (virtio_dev_has_feature(d, VIRTIO_NET_F_GUEST_ECN))
			f |= TUN_F_TSO_ECN;
	}
	return f & n->offloads;
}

static void unwatch(struct virtio_net *n)
{
	for (unsigned i = 0; i < n->npairs; i++) {
		struct net_pair *p = &n->pair[i];
		if (p->watched && n->loop)
			loop_del_fd(n->loop, p->fd);
		p->watched = false;
	}
}

static int net_start(struct virtio_dev *d)
{
	struct virtio_net *n = d->priv;
	struct errbuf e;

	if (virtio_net_vhost_start(n) == 0)
		return 0;
	if (n->own_tap) {
		if (tap_set_offload(&n->tap, negotiated_offloads(n), &e) < 0 ||
		    tap_set_active_queues(&n->tap, 1, &e) < 0) {
			log_warn("virtio-net: %s", e.msg);
			return -EIO;
		}
	}
	n->active_pairs = 1;
	atomic_store(&n->running, true);
	for (unsigned i = 0; i < n->npairs; i++) {
		struct net_pair *p = &n->pair[i];
		if (p->watched || !n->loop)
			continue;
		int r = loop_add_fd(n->loop, p->fd, EPOLLIN | EPOLLET, rx_fd_ready, p);
		if (r < 0) {
			log_warn("virtio-net: cannot watch %s: %s", n->tap.ifname, strerror(-r));
			atomic_store(&n->running, false);
			return r;
		}
		p->watched = true;
	}
	return 0;
}

static void net_queue_notify(struct virtio_dev *d, unsigned q)
{
	struct virtio_net *n = d->priv;
	if (n->npairs > 1 && q == ctrlq(n)) {
		ctrl_run(n);
		return;
	}
	if (q / 2 >= n->npairs)
		return;
	if (q % 2 == 0)
		rx_run(&n->pair[q / 2]);
	else
		tx_run(&n->pair[q / 2]);
}

static void net_reset(struct virtio_dev *d)
{
	struct virtio_net *n = d->priv;
	struct errbuf e;
	/* Never waits (see `running`): the tap fds stay on the loop, their callbacks idle. */
	atomic_store(&n->running, false);
	atomic_fetch_add(&n->gen, 1);
	n->active_pairs = 1;
	if (n->own_tap)
		tap_set_offload(&n->tap, 0, &e);
}

/* Quiesces the data path for a pause. A frame half placed (MRG_RXBUF, more buffers needed)
 * gives its chains back to the ring, unused: the snapshot then holds no chain the device
 * took, and after the pause the frame is placed again from its start. */
static void net_pause(struct virtio_dev *d)
{
	struct virtio_net *n = d->priv;
	atomic_store(&n->paused, true);
	for (unsigned i = 0; i < n->npairs; i++) {
		struct net_pair *p = &n->pair[i];
		pthread_mutex_lock(&p->rx_lock); /* waits out an rx_run on another thread */
		if (p->gen == atomic_load(&n->gen) && p->nheld > 0) {
			virtqueue_unpop(&d->vqs[rxq(i)], p->nheld);
			p->nheld = 0;
			p->placed = 0;
		}
		pthread_mutex_unlock(&p->rx_lock);
		pthread_mutex_lock(&p->tx_lock);
		pthread_mutex_unlock(&p->tx_lock);
	}
	pthread_mutex_lock(&n->ctrl_lock);
	pthread_mutex_unlock(&n->ctrl_lock);
}

/* Serves what arrived during the pause: kicks were ignored and the tap (edge-triggered)
 * will not signal again for frames already queued. */
static void net_resume(struct virtio_dev *d)
{
	struct virtio_net *n = d->priv;
	atomic_store(&n->paused, false);
	if (!atomic_load(&n->running))
		return;
	for (unsigned i = 0; i < n->npairs; i++) {
		rx_run(&n->pair[i]);
		tx_run(&n->pair[i]);
	}
	if (n->npairs > 1)
		ctrl_run(n);
}

static int net_save(struct virtio_dev *d, struct state_writer *w)
{
	struct virtio_net *n = d->priv;
	state_put_bytes(w, n->mac, 6);
	state_put_u16(w, n->status);
	state_put_u32(w, n->active_pairs);
	return 0;
}

static int net_load(struct virtio_dev *d, struct state_reader *r)
{
	struct virtio_net *n = d->priv;
	uint8_t mac[6];
	state_get_bytes(r, mac, 6);
	uint16_t status = state_get_u16(r);
	uint32_t active = state_get_u32(r);
	int ret = state_reader_finish(r);
	if (ret < 0 || active < 1 || active > n->npairs)
		return ret < 0 ? ret : -EINVAL;
	memcpy(n->mac, mac, 6);
	n->status = status & VIRTIO_NET_S_LINK_UP;
	n->active_pairs = active;
	return 0;
}

static void net_destroy(struct virtio_dev *d)
{
	struct virtio_net *n = d->priv;
	unwatch(n);
	for (unsigned i = 0; i < n->npairs; i++) {
		struct net_pair *p = &n->pair[i];
		free(p->frame);
		free(p->first);
		free(p->scratch);
		free(p->held);
		free(p->txreq);
		free(p->iov);
		pthread_mutex_destroy(&p->rx_lock);
		pthread_mutex_destroy(&p->tx_lock);
	}
	free(n->ctrlreq);
	pthread_mutex_destroy(&n->ctrl_lock);
	if (n->own_tap)
		tap_close(&n->tap);
}

static unsigned net_stats_op(struct virtio_dev *d, struct virtio_stat *out, unsigned max);

static const struct virtio_dev_ops net_ops = {
    .name = "virtio-net",
    .device_id = VIRTIO_ID_NET,
    .version = NET_STATE_VER,
    .features = net_features,
    .config_read = net_config_read,
    .config_write = net_config_write,
    .start = net_start,
    .queue_notify = net_queue_notify,
    .reset = net_reset,
    .save = net_save,
    .load = net_load,
    .pause = net_pause,
    .resume = net_resume,
    .destroy = net_destroy,
    .stats = net_stats_op,
};

static uint64_t offer_for(unsigned npairs, unsigned offloads)
{
	uint64_t f = (1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_STATUS) |
		     (1ull << VIRTIO_NET_F_MTU) | (1ull << VIRTIO_NET_F_MRG_RXBUF) |
		     (1ull << VIRTIO_RING_F_EVENT_IDX) | (1ull << VIRTIO_RING_F_INDIRECT_DESC) |
		     /* The tap takes partial checksums and GSO frames from us whatever its
		      * offload flags (those govern what it hands us). */
		     (1ull << VIRTIO_NET_F_CSUM) | (1ull << VIRTIO_NET_F_HOST_TSO4) |
		     (1ull << VIRTIO_NET_F_HOST_TSO6);
	if (offloads & TUN_F_CSUM) {
		f |= 1ull << VIRTIO_NET_F_GUEST_CSUM;
		if (offloads & TUN_F_TSO4)
			f |= 1ull << VIRTIO_NET_F_GUEST_TSO4;
		if (offloads & TUN_F_TSO6)
			f |= 1ull << VIRTIO_NET_F_GUEST_TSO6;
	}
	if (npairs > 1)
		f |= (1ull << VIRTIO_NET_F_CTRL_VQ) | (1ull << VIRTIO_NET_F_MQ);
	return f;
}

/* Builds the device around n->pair[i].fd (set by the caller); frees nothing on error
 * that the caller did not allocate (destroy cleans up). */
static int net_build(struct virtio_net *n, const struct guest_mem *mem, struct event_loop *loop,
		     const int *fds, unsigned npairs, const uint8_t mac[6], unsigned offloads,
		     struct errbuf *e)
{
	n->loop = loop;
	n->npairs = npairs;
	n->active_pairs = 1;
	n->offloads = offloads;
	n->offer = offer_for(npairs, offloads);
	memcpy(n->mac, mac, 6);
	n->status = VIRTIO_NET_S_LINK_UP;
	pthread_mutex_init(&n->ctrl_lock, NULL);
	unsigned nq = 2 * npairs + (npairs > 1 ? 1 : 0);
	int r = virtio_dev_init(&n->dev, &net_ops, n, mem, nq, VIRTIO_NET_QUEUE_SIZE,
				(uint32_t)offsetof(struct virtio_net_config, speed));
	if (r < 0) {
		pthread_mutex_destroy(&n->ctrl_lock);
		return errf(e, r, "virtio-net: cannot set up %u queues", nq);
	}
	bool oom = !(n->ctrlreq = malloc(sizeof(struct vq_request)));
	for (unsigned i = 0; i < npairs; i++) {
		struct net_pair *p = &n->pair[i];
		p->n = n;
		p->idx = i;
		p->fd = fds[i];
		pthread_mutex_init(&p->rx_lock, NULL);
		pthread_mutex_init(&p->tx_lock, NULL);
		p->frame = malloc(NET_FRAME_MAX);
		p->first = malloc(sizeof(struct vq_request));
		p->scratch = malloc(sizeof(struct vq_request));
		p->held = calloc(VIRTIO_NET_QUEUE_SIZE, sizeof(*p->held));
		p->txreq = malloc(sizeof(struct vq_request));
		p->iov = calloc(VQ_MAX_SEGS, sizeof(*p->iov));
		oom |= !p->frame || !p->first || !p->scratch || !p->held || !p->txreq || !p->iov;
	}
	if (oom) {
		virtio_dev_destroy(&n->dev);
		return errf(e, -ENOMEM, "virtio-net: out of memory");
	}
	return 0;
}

int virtio_net_create_fds(const struct guest_mem *mem, struct event_loop *loop, const int *fds,
			  unsigned npairs, const uint8_t mac[6], unsigned offloads,
			  struct virtio_dev **out, struct errbuf *e)
{
	if (npairs < 1 || npairs > VIRTIO_NET_MAX_PAIRS)
		return errf(e, -EINVAL, "virtio-net: 1 to %d queue pairs", VIRTIO_NET_MAX_PAIRS);
	struct virtio_net *n = calloc(1, sizeof(*n));
	if (!n)
		return errf(e, -ENOMEM, "virtio-net: out of memory");
	for (unsigned i = 0; i < TAP_MAX_QUEUES; i++)
		n->tap.fds[i] = -1;
	snprintf(n->tap.ifname, sizeof(n->tap.ifname), "fd%d", fds[0]);
	int r = net_build(n, mem, loop, fds, npairs, mac, offloads, e);
	if (r < 0) {
		free(n);
		return r;
	}
	*out = &n->dev;
	return 0;
}

void virtio_net_get_stats(struct virtio_dev *d, struct virtio_net_stats *s)
{
	struct virtio_net *n = d->priv;
	memset(s, 0, sizeof(*s));
	for (unsigned i = 0; i < n->npairs; i++) {
		struct net_pair *p = &n->pair[i];
		s->rx_frames += atomic_load_explicit(&p->st.rx_frames, memory_order_relaxed);
		s->rx_bytes += atomic_load_explicit(&p->st.rx_bytes, memory_order_relaxed);
		s->rx_dropped += atomic_load_explicit(&p->st.rx_dropped, memory_order_relaxed);
		s->rx_waits += atomic_load_explicit(&p->st.rx_waits, memory_order_relaxed);
		s->tx_frames += atomic_load_explicit(&p->st.tx_frames, memory_order_relaxed);
		s->tx_bytes += atomic_load_explicit(&p->st.tx_bytes, memory_order_relaxed);
		s->tx_errors += atomic_load_explicit(&p->st.tx_errors, memory_order_relaxed);
	}
}

static unsigned net_stats_op(struct virtio_dev *d, struct virtio_stat *out, unsigned max)
{
	struct virtio_net_stats s;
	virtio_net_get_stats(d, &s);
	const struct virtio_stat all[] = {
	    {"tx_frames", s.tx_frames}, {"tx_bytes", s.tx_bytes}, {"tx_errors", s.tx_errors},
	    {"rx_frames", s.rx_frames}, {"rx_bytes", s.rx_bytes}, {"rx_dropped", s.rx_dropped},
	    {"rx_waits", s.rx_waits},	{"errors", s.tx_errors},
	};
	unsigned k = sizeof(all) / sizeof(all[0]);
	if (k > max)
		k = max;
	memcpy(out, all, k * sizeof(*out));
	return k;
}

void virtio_net_set_link(struct virtio_dev *d, bool up)
{
	struct virtio_net *n = d->priv;
	pthread_mutex_lock(&d->lock);
	n->status = up ? VIRTIO_NET_S_LINK_UP : 0;
	pthread_mutex_unlock(&d->lock);
	virtio_dev_config_changed(d);
}

/* -device virtio-net-pci,netdev=ID[,mac=MAC]: ID names a -netdev tap (config_net.c has
 * checked the keys of both at parse time). */
static int net_create(const struct virtio_create_ctx *ctx, const struct keyed_opts *copts,
		      struct virtio_dev **out, struct errbuf *e)
{
	/* keyed_get() marks keys as used, for the caller's check of unknown ones. */
	struct keyed_opts *opts = (struct keyed_opts *)copts;
	const char *id = keyed_get(opts, "netdev");
	struct keyed_opts *nd = id ? keyed_list_find(&ctx->cfg->netdevs, id) : NULL;
	if (!nd)
		return errf(e, -EINVAL, "invalid -device '%s': netdev= must name a -netdev tap",
			    opts->spec);
	uint8_t mac[6];
	const char *m = keyed_get(opts, "mac");
	if (m && net_parse_mac(m, mac) < 0)
		return errf(e, -EINVAL,
			    "invalid -device '%s': mac must be XX:XX:XX:XX:XX:XX (unicast)",
			    opts->spec);
	if (!m)
		net_generate_mac(mac);
	/* As QEMU: a multi-queue tap serves several pairs only with mq=on (--net sets it). */
	bool mq = false;
	int r = keyed_get_bool(opts, "mq", false, &mq, e);
	if (r < 0 || (r = keyed_check_used(opts, "netdev, mac, mq, vectors", e)) < 0)
		return r;
	const char *ifname = keyed_get(nd, "ifname");
	uint64_t queues = 1;
	r = keyed_get_u64(nd, "queues", 1, VIRTIO_NET_MAX_PAIRS, &queues, e);
	if (r < 0)
		return r;
	if (queues < 1)
		return errf(e, -EINVAL, "invalid -netdev '%s': queues must be 1 to %d", nd->spec,
			    VIRTIO_NET_MAX_PAIRS);

	struct virtio_net *n = calloc(1, sizeof(*n));
	if (!n)
		return errf(e, -ENOMEM, "virtio-net: out of memory");
	r = tap_open(&n->tap, ifname, (unsigned)queues, (int)NET_HDR_LEN, e);
	if (r < 0) {
		free(n);
		return r;
	}
	n->own_tap = true;
	unsigned pairs = mq ? (unsigned)queues : 1;
	r = net_build(n, ctx->mem, ctx->loop, n->tap.fds, pairs, mac, n->tap.offloads, e);
	if (r < 0) {
		tap_close(&n->tap);
		free(n);
		return r;
	}
	log_info("virtio-net: tap %s, MAC %02x:%02x:%02x:%02x:%02x:%02x, %u queue pair%s, %s",
		 n->tap.ifname, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], pairs,
		 pairs > 1 ? "s" : "", virtio_net_datapath());
	*out = &n->dev;
	return 0;
}

const struct virtio_dev_type virtio_net_type = {
    .name = "virtio-net",
    .create = net_create,
};
