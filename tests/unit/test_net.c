/* virtio-net over a SOCK_SEQPACKET socketpair standing in for the tap (frames both ways,
 * MRG_RXBUF splits, backpressure when the guest has no buffers, hostile chains, the
 * control queue), the tap backend's refusals, and the network options (--net, -netdev +
 * -device, -nic) with their errors. */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/tap.h"
#include "config.h"
#include "virtio/net.h"
#include "virtio/virtio.h"

#define QSIZE	16
#define HDR	12
#define BUF_GPA 0x40000ull

static uint8_t ram[1 << 20] __attribute__((aligned(4096)));
static struct guest_mem mem;
static struct virtio_dev *dev;
static int sv[2]; /* sv[0]: the device's "tap"; sv[1]: the host side of the test */
static unsigned irqs[8], config_irqs;
static const uint8_t test_mac[6] = {0x06, 0x6b, 0x76, 1, 2, 3};

struct drv_q {
	uint16_t next_desc, avail_idx, used_seen;
};
static struct drv_q dq[8];
static uint64_t next_buf;

static void t_notify_queue(void *t, unsigned q)
{
	irqs[q]++;
}
static void t_notify_config(void *t)
{
	config_irqs++;
}
static const struct virtio_transport_ops t_ops = {t_notify_queue, t_notify_config};

static uint64_t desc_gpa(unsigned q)
{
	return 0x1000 + q * 0x1000ull;
}
static uint64_t avail_gpa(unsigned q)
{
	return desc_gpa(q) + 0x400;
}
static uint64_t used_gpa(unsigned q)
{
	return desc_gpa(q) + 0x800;
}

static void make_dev(unsigned npairs, unsigned offloads)
{
	memset(ram, 0, sizeof(ram));
	memset(&mem, 0, sizeof(mem));
	memset(irqs, 0, sizeof(irqs));
	memset(dq, 0, sizeof(dq));
	config_irqs = 0;
	next_buf = BUF_GPA;
	cr_assert_eq(guest_mem_add_region(&mem, 0, sizeof(ram), ram), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
	int fds[2] = {sv[0], sv[0]};
	struct errbuf e;
	cr_assert_eq(virtio_net_create_fds(&mem, NULL, fds, npairs, test_mac, offloads, &dev, &e),
		     0, "%s", e.msg);
	virtio_dev_attach(dev, &t_ops, NULL);
}

static void setup(void)
{
	make_dev(1, 0);
}

static void teardown(void)
{
	if (dev) {
		virtio_dev_destroy(dev);
		free(dev);
		dev = NULL;
	}
	close(sv[0]);
	close(sv[1]);
	guest_mem_destroy(&mem);
}

/* The driver's side: negotiate features, set up every queue, DRIVER_OK. */
static void bring_up(uint64_t features)
{
	struct errbuf e;
	virtio_dev_set_status(dev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	virtio_dev_set_driver_features(dev, features | (1ull << VIRTIO_F_VERSION_1));
	uint8_t s =
	    virtio_dev_set_status(dev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					   VIRTIO_CONFIG_S_FEATURES_OK);
	cr_assert(s & VIRTIO_CONFIG_S_FEATURES_OK, "features 0x%llx refused",
		  (unsigned long long)features);
	for (unsigned q = 0; q < dev->nqueues; q++) {
		cr_assert_eq(virtqueue_set_size(&dev->vqs[q], QSIZE), 0);
		virtqueue_set_addrs(&dev->vqs[q], desc_gpa(q), avail_gpa(q), used_gpa(q));
		cr_assert_eq(virtqueue_enable(&dev->vqs[q], &e), 0, "%s", e.msg);
	}
	s = virtio_dev_set_status(dev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					   VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	cr_assert(s & VIRTIO_CONFIG_S_DRIVER_OK);
}

static void *host(uint64_t gpa)
{
	return ram + gpa;
}

static uint64_t alloc_buf(uint32_t len)
{
	uint64_t g = next_buf;
	next_buf += (len + 63) & ~63u;
	return g;
}

/* Adds a chain of n descriptors (addr, len, write) and makes it available; returns the head. */
struct d {
	uint64_t addr;
	uint32_t len;
	bool write;
};
static uint16_t add_chain(unsigned q, const struct d *ds, unsigned n)
{
	struct drv_q *x = &dq[q];
	uint16_t head = x->next_desc % QSIZE;
	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (x->next_desc + i) % QSIZE;
		struct vring_desc vd = {
		    .addr = ds[i].addr,
		    .len = ds[i].len,
		    .flags = (uint16_t)((ds[i].write ? VRING_DESC_F_WRITE : 0) |
					(i + 1 < n ? VRING_DESC_F_NEXT : 0)),
		    .next = (uint16_t)((idx + 1) % QSIZE),
		};
		memcpy(host(desc_gpa(q) + 16ull * idx), &vd, sizeof(vd));
	}
	x->next_desc = (uint16_t)(x->next_desc + n);
	uint16_t *ring = host(avail_gpa(q) + 4);
	ring[x->avail_idx % QSIZE] = head;
	__atomic_store_n((uint16_t *)host(avail_gpa(q) + 2), (uint16_t)(x->avail_idx + 1),
			 __ATOMIC_RELEASE);
	x->avail_idx++;
	return head;
}

static uint16_t used_idx(unsigned q)
{
	return __atomic_load_n((uint16_t *)host(used_gpa(q) + 2), __ATOMIC_ACQUIRE);
}

static struct vring_used_elem used_elem(unsigned q, unsigned i)
{
	struct vring_used_elem u;
	memcpy(&u, host(used_gpa(q) + 4 + 8ull * (i % QSIZE)), sizeof(u));
	return u;
}

static uint16_t rx_buffer(uint32_t len)
{
	struct d b = {alloc_buf(len), len, true};
	return add_chain(0, &b, 1);
}

static void host_send(const void *frame, size_t len, uint8_t flags)
{
	uint8_t buf[4096];
	memset(buf, 0, HDR);
	buf[0] = flags;
	memcpy(buf + HDR, frame, len);
	cr_assert_eq(write(sv[1], buf, HDR + len), (ssize_t)(HDR + len));
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

TestSuite(net, .init = setup, .fini = teardown);

Test(net, config_space_and_offer)
{
	uint8_t mac[6];
	uint16_t status, pairs, mtu;
	virtio_dev_config_read(dev, 0, mac, 6);
	virtio_dev_config_read(dev, 6, &status, 2);
	virtio_dev_config_read(dev, 8, &pairs, 2);
	virtio_dev_config_read(dev, 10, &mtu, 2);
	cr_assert_arr_eq(mac, test_mac, 6);
	cr_assert_eq(status, VIRTIO_NET_S_LINK_UP);
	cr_assert_eq(pairs, 1);
	cr_assert_eq(mtu, 1500);
	uint64_t f = virtio_dev_offered_features(dev);
	static const unsigned want[] = {
	    VIRTIO_NET_F_MAC,	     VIRTIO_NET_F_STATUS,    VIRTIO_NET_F_MRG_RXBUF,
	    VIRTIO_NET_F_CSUM,	     VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6,
	    VIRTIO_RING_F_EVENT_IDX, VIRTIO_F_VERSION_1,     VIRTIO_NET_F_MTU};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_assert(f & (1ull << want[i]), "bit %u not offered", want[i]);
	/* The backend takes no offloads: nothing partial or GSO may reach the guest. */
	cr_assert_eq(f & ((1ull << VIRTIO_NET_F_GUEST_CSUM) | (1ull << VIRTIO_NET_F_GUEST_TSO4)),
		     0);
	cr_assert_eq(f & (1ull << VIRTIO_NET_F_MQ), 0, "one pair: no MQ");
	cr_assert_eq(dev->nqueues, 2, "rx and tx, no control queue");
	virtio_net_set_link(dev, false);
	virtio_dev_config_read(dev, 6, &status, 2);
	cr_assert_eq(status, 0);
}

Test(net, guest_offloads_follow_the_backend)
{
	teardown();
	make_dev(1, TUN_F_CSUM | TUN_F_TSO4);
	uint64_t f = virtio_dev_offered_features(dev);
	cr_assert(f & (1ull << VIRTIO_NET_F_GUEST_CSUM));
	cr_assert(f & (1ull << VIRTIO_NET_F_GUEST_TSO4));
	cr_assert_eq(f & (1ull << VIRTIO_NET_F_GUEST_TSO6), 0, "the backend refused TSO6");
}

Test(net, tx_frame_reaches_the_tap_with_its_header)
{
	bring_up(0);
	uint8_t frame[60];
	fill(frame, sizeof(frame), 1);
	uint64_t h = alloc_buf(HDR), b = alloc_buf(sizeof(frame));
	memset(host(h), 0, HDR);
	((uint8_t *)host(h))[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	memcpy(host(b), frame, sizeof(frame));
	struct d c[2] = {{h, HDR, false}, {b, sizeof(frame), false}};
	uint16_t head = add_chain(1, c, 2);
	virtio_dev_queue_notify(dev, 1);

	uint8_t got[256];
	cr_assert_eq(read(sv[1], got, sizeof(got)), HDR + (ssize_t)sizeof(frame));
	cr_assert_eq(got[0], VIRTIO_NET_HDR_F_NEEDS_CSUM, "the header passes through");
	cr_assert_arr_eq(got + HDR, frame, sizeof(frame));
	cr_assert_eq(used_idx(1), 1);
	cr_assert_eq(used_elem(1, 0).id, head);
	cr_assert_eq(irqs[1], 1);
	struct virtio_net_stats st;
	virtio_net_get_stats(dev, &st);
	cr_assert_eq(st.tx_frames, 1);
	cr_assert_eq(st.tx_bytes, sizeof(frame));
	/* The monitor's view (x-query-virtio-stats) has the same counters by name. */
	struct virtio_stat vs[VIRTIO_STATS_MAX];
	unsigned n = virtio_dev_stats(dev, vs, VIRTIO_STATS_MAX);
	uint64_t tx_frames = ~0ull, tx_bytes = ~0ull, rx_frames = ~0ull;
	for (unsigned i = 0; i < n; i++) {
		if (!strcmp(vs[i].name, "tx_frames"))
			tx_frames = vs[i].value;
		else if (!strcmp(vs[i].name, "tx_bytes"))
			tx_bytes = vs[i].value;
		else if (!strcmp(vs[i].name, "rx_frames"))
			rx_frames = vs[i].value;
	}
	cr_assert_eq(tx_frames, 1);
	cr_assert_eq(tx_bytes, sizeof(frame));
	cr_assert_eq(rx_frames, 0);
}

Test(net, tx_batch_one_interrupt)
{
	bring_up(0);
	for (int i = 0; i < 5; i++) {
		uint64_t b = alloc_buf(HDR + 20);
		memset(host(b), 0, HDR + 20);
		struct d c = {b, HDR + 20, false};
		add_chain(1, &c, 1);
	}
	virtio_dev_queue_notify(dev, 1);
	cr_assert_eq(used_idx(1), 5);
	cr_assert_eq(irqs[1], 1, "five frames, one interrupt");
	uint8_t got[256];
	for (int i = 0; i < 5; i++)
		cr_assert_eq(read(sv[1], got, sizeof(got)), HDR + 20);
}

Test(net, rx_frame_lands_in_one_buffer)
{
	bring_up(0);
	uint16_t head = rx_buffer(2048);
	uint64_t gpa = next_buf - 2048;
	uint8_t frame[100];
	fill(frame, sizeof(frame), 3);
	host_send(frame, sizeof(frame), VIRTIO_NET_HDR_F_DATA_VALID);
	virtio_dev_queue_notify(dev, 0);
	cr_assert_eq(used_idx(0), 1);
	cr_assert_eq(used_elem(0, 0).id, head);
	cr_assert_eq(used_elem(0, 0).len, HDR + sizeof(frame));
	struct virtio_net_hdr_mrg_rxbuf hdr;
	memcpy(&hdr, host(gpa), HDR);
	cr_assert_eq(hdr.num_buffers, 1);
	cr_assert_eq(hdr.hdr.flags, 0, "DATA_VALID is dropped without GUEST_CSUM");
	cr_assert_arr_eq((uint8_t *)host(gpa) + HDR, frame, sizeof(frame));
	cr_assert_eq(irqs[0], 1);
}

Test(net, rx_mergeable_frame_spans_buffers)
{
	bring_up(1ull << VIRTIO_NET_F_MRG_RXBUF);
	uint64_t g[3];
	for (int i = 0; i < 3; i++) {
		rx_buffer(64);
		g[i] = next_buf - 64;
	}
	uint8_t frame[150];
	fill(frame, sizeof(frame), 5);
	host_send(frame, sizeof(frame), 0);
	virtio_dev_queue_notify(dev, 0);
	cr_assert_eq(used_idx(0), 3);
	cr_assert_eq(used_elem(0, 0).len, 64);
	cr_assert_eq(used_elem(0, 1).len, 64);
	cr_assert_eq(used_elem(0, 2).len, HDR + 150 - 128);
	struct virtio_net_hdr_mrg_rxbuf hdr;
	memcpy(&hdr, host(g[0]), HDR);
	cr_assert_eq(hdr.num_buffers, 3);
	uint8_t got[150];
	memcpy(got, host(g[0]) + HDR, 52);
	memcpy(got + 52, host(g[1]), 64);
	memcpy(got + 116, host(g[2]), 34);
	cr_assert_arr_eq(got, frame, sizeof(frame));
	cr_assert_eq(irqs[0], 1);
}

Test(net, rx_without_buffers_waits_and_drops_nothing)
{
	bring_up(1ull << VIRTIO_NET_F_MRG_RXBUF);
	uint8_t f1[40], f2[150];
	fill(f1, sizeof(f1), 1);
	fill(f2, sizeof(f2), 2);
	host_send(f1, sizeof(f1), 0);
	host_send(f2, sizeof(f2), 0);
	virtio_dev_queue_notify(dev, 0); /* no buffers at all */
	cr_assert_eq(used_idx(0), 0);
	cr_assert_eq(irqs[0], 0);

	/* One buffer: f1 fits; f2 needs three and gets only the rest of none. */
	rx_buffer(64);
	uint64_t g0 = next_buf - 64;
	virtio_dev_queue_notify(dev, 0);
	cr_assert_eq(used_idx(0), 1, "f1 delivered");
	cr_assert_arr_eq((uint8_t *)host(g0) + HDR, f1, sizeof(f1));
	/* f2 half placed: its first buffer must not be visible before the rest. */
	rx_buffer(64);
	uint64_t g1 = next_buf - 64;
	virtio_dev_queue_notify(dev, 0);
	cr_assert_eq(used_idx(0), 1, "a partial frame stays hidden");
	rx_buffer(64);
	rx_buffer(64);
	virtio_dev_queue_notify(dev, 0);
	cr_assert_eq(used_idx(0), 4, "f2 in three buffers, pushed together");
	struct virtio_net_hdr_mrg_rxbuf hdr;
	memcpy(&hdr, host(g1), HDR);
	cr_assert_eq(hdr.num_buffers, 3);
	cr_assert_arr_eq((uint8_t *)host(g1) + HDR, f2, 52);
	struct virtio_net_stats st;
	virtio_net_get_stats(dev, &st);
	cr_assert_eq(st.rx_frames, 2);
	cr_assert_eq(st.rx_dropped, 0);
	cr_assert_geq(st.rx_waits, 2);
}

Test(net, rx_buffer_too_small_without_mergeable_is_counted)
{
	bring_up(0);
	rx_buffer(32);
	uint8_t frame[100] = {0};
	host_send(frame, sizeof(frame), 0);
	virtio_dev_queue_notify(dev, 0);
	cr_assert_eq(used_idx(0), 1);
	cr_assert_eq(used_elem(0, 0).len, 0, "the buffer comes back empty");
	struct virtio_net_stats st;
	virtio_net_get_stats(dev, &st);
	cr_assert_eq(st.rx_dropped, 1);
	cr_assert_eq(atomic_load(&dev->status) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
}

Test(net, rx_chain_without_writable_space_needs_reset)
{
	bring_up(0);
	struct d b = {alloc_buf(64), 64, false}; /* read-only: nowhere to put a frame */
	add_chain(0, &b, 1);
	uint8_t frame[20] = {0};
	host_send(frame, sizeof(frame), 0);
	virtio_dev_queue_notify(dev, 0);
	cr_assert(atomic_load(&dev->status) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert_eq(config_irqs, 1);
	/* A reset revives it. */
	virtio_dev_set_status(dev, 0);
	cr_assert_eq(atomic_load(&dev->status), 0);
}

Test(net, tx_short_or_bogus_chains_do_not_reach_the_tap)
{
	bring_up(0);
	struct d shortc = {alloc_buf(4), 4, false}; /* shorter than the header */
	add_chain(1, &shortc, 1);
	struct d wo = {alloc_buf(64), 64, true}; /* write-only: nothing to send */
	add_chain(1, &wo, 1);
	virtio_dev_queue_notify(dev, 1);
	cr_assert_eq(used_idx(1), 2, "both returned");
	uint8_t got[64];
	cr_assert_eq(read(sv[1], got, sizeof(got)), -1);
	cr_assert_eq(errno, EAGAIN);
	struct virtio_net_stats st;
	virtio_net_get_stats(dev, &st);
	cr_assert_eq(st.tx_errors, 2);
	cr_assert_eq(st.tx_frames, 0);
	/* A descriptor outside guest RAM breaks the queue: NEEDS_RESET, no crash. */
	struct d out = {sizeof(ram) + 4096, 64, false};
	add_chain(1, &out, 1);
	virtio_dev_queue_notify(dev, 1);
	cr_assert(atomic_load(&dev->status) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

Test(net, control_queue_sets_queue_pairs)
{
	teardown();
	make_dev(2, 0);
	cr_assert_eq(dev->nqueues, 5);
	uint64_t f = virtio_dev_offered_features(dev);
	cr_assert(f & (1ull << VIRTIO_NET_F_MQ));
	cr_assert(f & (1ull << VIRTIO_NET_F_CTRL_VQ));
	uint16_t pairs;
	virtio_dev_config_read(dev, 8, &pairs, 2);
	cr_assert_eq(pairs, 2);
	bring_up((1ull << VIRTIO_NET_F_MQ) | (1ull << VIRTIO_NET_F_CTRL_VQ));
	for (uint16_t want = 2; want <= 3; want++) {
		uint64_t c = alloc_buf(4), a = alloc_buf(1);
		uint8_t *p = host(c);
		p[0] = VIRTIO_NET_CTRL_MQ;
		p[1] = VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET;
		memcpy(p + 2, &want, 2);
		*(uint8_t *)host(a) = 0xee;
		struct d ch[2] = {{c, 4, false}, {a, 1, true}};
		add_chain(4, ch, 2);
		virtio_dev_queue_notify(dev, 4);
		cr_assert_eq(*(uint8_t *)host(a), want == 2 ? VIRTIO_NET_OK : VIRTIO_NET_ERR,
			     "%u pairs", want);
	}
	cr_assert_eq(used_idx(4), 2);
}

Test(net, reset_drops_a_held_frame)
{
	bring_up(1ull << VIRTIO_NET_F_MRG_RXBUF);
	rx_buffer(64);
	uint8_t frame[200] = {0};
	host_send(frame, sizeof(frame), 0);
	virtio_dev_queue_notify(dev, 0); /* one buffer of three held */
	cr_assert_eq(used_idx(0), 0);
	virtio_dev_set_status(dev, 0);
	memset(dq, 0, sizeof(dq));
	memset(ram, 0, 0x10000);
	bring_up(0);
	rx_buffer(2048);
	uint8_t f2[30];
	fill(f2, sizeof(f2), 9);
	host_send(f2, sizeof(f2), 0);
	virtio_dev_queue_notify(dev, 0);
	cr_assert_eq(used_idx(0), 1);
	cr_assert_arr_eq((uint8_t *)host(next_buf - 2048) + HDR, f2, sizeof(f2),
			 "the new frame, not the one held across the reset");
}

/* The VM's pause (device_ops.pause): a frame half placed gives its chains back to the ring
 * (a snapshot then holds no chain the device took), nothing moves while paused, and resume
 * delivers the frame whole and sends what was kicked meanwhile. */
Test(net, pause_gives_back_a_half_placed_frame_and_resume_delivers_it)
{
	bring_up(1ull << VIRTIO_NET_F_MRG_RXBUF);
	uint64_t g0 = next_buf;
	rx_buffer(64);
	uint8_t f2[150];
	fill(f2, sizeof(f2), 4);
	host_send(f2, sizeof(f2), 0);
	virtio_dev_queue_notify(dev, 0); /* one buffer of three held */
	cr_assert_eq(used_idx(0), 0);
	cr_assert_eq(dev->vqs[0].last_avail_idx, 1, "the first buffer was taken");

	virtio_dev_device_ops.pause(dev);
	cr_assert_eq(dev->vqs[0].last_avail_idx, 0, "the held buffer went back to the ring");
	rx_buffer(64);
	rx_buffer(64);
	virtio_dev_queue_notify(dev, 0);
	uint8_t frame[60];
	fill(frame, sizeof(frame), 8);
	uint64_t h = alloc_buf(HDR), b = alloc_buf(sizeof(frame));
	memset(host(h), 0, HDR);
	memcpy(host(b), frame, sizeof(frame));
	struct d c[2] = {{h, HDR, false}, {b, sizeof(frame), false}};
	add_chain(1, c, 2);
	virtio_dev_queue_notify(dev, 1);
	uint8_t got[256];
	cr_assert_lt(read(sv[1], got, sizeof(got)), 0, "a paused device sent a frame");
	cr_assert_eq(used_idx(0), 0, "a paused device delivered a frame");
	cr_assert_eq(used_idx(1), 0);
	cr_assert_eq(dev->vqs[0].last_avail_idx, 0);

	virtio_dev_device_ops.resume(dev);
	cr_assert_eq(used_idx(0), 3, "the held frame, in three buffers");
	struct virtio_net_hdr_mrg_rxbuf hdr;
	memcpy(&hdr, host(g0), HDR);
	cr_assert_eq(hdr.num_buffers, 3);
	cr_assert_arr_eq((uint8_t *)host(g0) + HDR, f2, 52);
	cr_assert_eq(read(sv[1], got, sizeof(got)), HDR + (ssize_t)sizeof(frame),
		     "the frame kicked during the pause is sent on resume");
	cr_assert_arr_eq(got + HDR, frame, sizeof(frame));
	cr_assert_eq(used_idx(1), 1);
	struct virtio_net_stats st;
	virtio_net_get_stats(dev, &st);
	cr_assert_eq(st.rx_dropped, 0);
}

/* ---- MACs, the data path name, the tap's refusals ---- */

Test(net_mac, parse_and_generate)
{
	uint8_t m[6];
	cr_assert_eq(net_parse_mac("52:54:00:12:34:56", m), 0);
	cr_assert_eq(m[0], 0x52);
	cr_assert_eq(m[5], 0x56);
	cr_assert_eq(net_parse_mac("01:00:5e:00:00:01", m), -EINVAL, "multicast");
	cr_assert_eq(net_parse_mac("52:54:00:12:34", m), -EINVAL);
	cr_assert_eq(net_parse_mac("52-54-00-12-34-56", m), -EINVAL);
	cr_assert_eq(net_parse_mac("52:54:00:12:34:5g", m), -EINVAL);
	uint8_t a[6], b[6];
	net_generate_mac(a);
	net_generate_mac(b);
	cr_assert_eq(a[0], 0x06);
	cr_assert_eq(a[1], 0x6b);
	cr_assert_eq(a[2], 0x76);
	cr_assert(a[0] & 2, "locally administered");
	cr_assert_eq(a[0] & 1, 0, "unicast");
	cr_assert(memcmp(a, b, 6), "two generated MACs differ (1 in 16M chance to flake)");
}

Test(net_mac, datapath_says_user_space_without_vhost)
{
	setenv("KVMINI_VHOST_NET_PATH", "/nonexistent/vhost-net", 1);
	cr_assert_str_eq(virtio_net_datapath(), "user space (no /dev/vhost-net)");
	unsetenv("KVMINI_VHOST_NET_PATH");
}

Test(net_mac, tap_refuses_a_missing_tun_device_in_one_line)
{
	struct tap t;
	struct errbuf e = {{0}};
	setenv("KVMINI_TUN_PATH", "/nonexistent/tun", 1);
	cr_assert_eq(tap_open(&t, "kvmtest0", 1, 12, &e), -ENOENT);
	unsetenv("KVMINI_TUN_PATH");
	cr_assert_not_null(strstr(e.msg, "/nonexistent/tun"), "%s", e.msg);
	cr_assert_not_null(strstr(e.msg, "missing"), "%s", e.msg);
	cr_assert_null(strchr(e.msg, '\n'));
	cr_assert_eq(tap_open(&t, "a-name-far-too-long", 1, 12, &e), -EINVAL);
	cr_assert_eq(tap_open(&t, "ok", 17, 12, &e), -EINVAL);
}

Test(net_mac, tap_refuses_permission_denied_in_one_line)
{
	/* As an unprivileged user (nobody), /dev/net/tun (root's, 0600 on most hosts) or the
	 * TUNSETIFF that creates an interface is refused. */
	if (geteuid() != 0)
		cr_skip_test("needs root to switch to the nobody user");
	if (access("/dev/net/tun", F_OK) != 0)
		cr_skip_test("/dev/net/tun is missing");
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		struct tap t;
		struct errbuf e = {{0}};
		int r = -1;
		if (setgid(65534) == 0 && setuid(65534) == 0)
			r = tap_open(&t, "kvmnobody0", 1, 12, &e);
		char out[600];
		int n = snprintf(out, sizeof(out), "%d %s", r, e.msg);
		if (write(pfd[1], out, (size_t)n) < 0)
			_exit(2);
		_exit(0);
	}
	close(pfd[1]);
	char got[600] = {0};
	ssize_t n = read(pfd[0], got, sizeof(got) - 1);
	close(pfd[0]);
	waitpid(pid, NULL, 0);
	cr_assert_gt(n, 0);
	int r = atoi(got);
	cr_assert(r == -EACCES || r == -EPERM, "tap_open as nobody: %s", got);
	cr_assert_not_null(strstr(got, "permission denied"), "%s", got);
	cr_assert_not_null(strstr(got, "CAP_NET_ADMIN"), "%s", got);
	cr_assert_null(strchr(got, '\n'));
}

Test(net, oversized_tx_frame_is_refused_and_counted)
{
	bring_up(0);
	/* 80 KiB: more than any frame a tap takes (64 KiB GSO plus headers). */
	uint32_t big = 80 * 1024;
	uint64_t b = alloc_buf(big);
	memset(host(b), 0, HDR);
	struct d c = {b, big, false};
	add_chain(1, &c, 1);
	virtio_dev_queue_notify(dev, 1);
	cr_assert_eq(used_idx(1), 1, "the chain is returned");
	uint8_t got[64];
	cr_assert_eq(read(sv[1], got, sizeof(got)), -1, "nothing reached the tap");
	struct virtio_net_stats st;
	virtio_net_get_stats(dev, &st);
	cr_assert_eq(st.tx_errors, 1);
	cr_assert_eq(atomic_load(&dev->status) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
}

Test(net, tx_before_driver_ok_is_ignored)
{
	/* A kick before DRIVER_OK does nothing (the core filters it); no crash, no frame. */
	virtio_dev_queue_notify(dev, 1);
	virtio_dev_queue_notify(dev, 0);
	uint8_t got[64];
	cr_assert_eq(read(sv[1], got, sizeof(got)), -1);
}
