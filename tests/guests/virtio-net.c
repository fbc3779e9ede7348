/* virtio-net: drives a virtio network device from ring 3 with polling and asks the host,
 * through the tap behind it, for its MAC address with ARP.
 *
 * Finds the device (PCI bus 0, vendor 0x1af4 device 0x1041; or virtio-mmio with
 * `virtio=mmio[@ADDR]`), negotiates VERSION_1 (required), MAC, STATUS and MRG_RXBUF, reads
 * the MAC and link status from the configuration space, sets up rx (queue 0) and tx
 * (queue 1) without interrupt vectors, offers 32 rx buffers of 2 KiB, sends one ARP request
 * "who has PEER, tell IP" and polls the rx queue (reposting every buffer) until the ARP
 * reply from PEER arrives, bounded by the TSC.
 *
 * Options: ip=A.B.C.D (the guest's, default 10.213.0.2), peer=A.B.C.D (default 10.213.0.1),
 * pci=ecam|cf8, virtio=mmio[@ADDR]; `hold` spins after the ARP exchange's OK instead of
 * powering off.
 *
 * net=bench n=N (default 100000), for bench/net-tap, instead of the ARP exchange:
 *   tx: sends N 60-byte frames (ethertype 0x88b5, to 02:00:00:00:00:01) as fast as the
 *       device takes them, up to 64 in flight, refilled in batches with one kick, and
 *       prints "virtio-net: bench tx N frames in C cycles (K kicks, M notifications)";
 *   rx: prints "virtio-net: bench rx ready", then counts frames of ethertype 0x88b5 (the
 *       host floods them) from the first to the Nth, reposting each batch of buffers with
 *       one kick, and prints "virtio-net: bench rx N frames in C cycles (O other frames,
 *       K kicks)". C counts TSC cycles. Then "virtio-net: OK" and power-off.
 * Expected output:
 *   virtio-net: pci 00:01.0 device 1
 *   virtio-net: features device 0x... accepted 0x...
 *   virtio-net: mac 06:6b:76:xx:xx:xx link up
 *   virtio-net: sent arp who-has 10.213.0.1 tell 10.213.0.2
 *   virtio-net: arp reply: 10.213.0.1 is-at xx:xx:xx:xx:xx:xx (after N frames)
 *   virtio-net: OK
 * Exit: power-off (kvmini exits 0); on failure "virtio-net: FAIL <why>" and debug-exit 11
 * (kvmini exits 23). */
#include "kit.h"
#include "pci.h"
#include "virtio.h"

#define F_MAC	    (1ull << 5)
#define F_MRG_RXBUF (1ull << 15)
#define F_STATUS    (1ull << 16)
#define HDR	    12 /* struct virtio_net_hdr_mrg_rxbuf */
#define RXBUF	    2048
#define NRX	    32
#define TIMEOUT	    (10 * TSC_HZ_MAX)

static const char *cmdline;
static struct virtio_dev dev;
static struct virtq rxq, txq;
static uint8_t *rx_of_head[VIRTQ_MAX_SIZE];
static uint32_t rx_len_of_head[VIRTQ_MAX_SIZE];

static uint64_t failed(const char *what)
{
	printf("virtio-net: FAIL %s: %s\n", what, dev.err);
	return 11;
}

static bool parse_ip(const char *key, const char *dflt, uint8_t ip[4])
{
	char buf[32];
	const char *s = cmdline_get(cmdline, key, buf, sizeof(buf)) ? buf : dflt;
	for (int i = 0; i < 4; i++) {
		const char *end;
		uint64_t v = parse_u64(s, &end, false);
		if (end == s || v > 255 || (i < 3 && *end != '.') || (i == 3 && *end))
			return false;
		ip[i] = (uint8_t)v;
		s = end + 1;
	}
	return true;
}

static int post_rx_len(uint8_t *buf, uint32_t size)
{
	struct virtq_buf b = {buf, size};
	int head = virtq_add(&rxq, &b, 0, 1);
	if (head >= 0) {
		rx_of_head[head] = buf;
		rx_len_of_head[head] = size;
	}
	return head;
}

static int post_rx(uint8_t *buf)
{
	return post_rx_len(buf, RXBUF);
}

#define BENCH_ETHERTYPE 0x88b5
#define BENCH_TX_DEPTH	64
#define BENCH_RXBUF	1024

/* net=bench: see the header. */
static uint64_t bench(const uint8_t mac[6])
{
	uint64_t n = 100000;
	cmdline_get_u64(cmdline, "n", &n);
	if (n < 2) {
		puts("virtio-net: FAIL bench: n must be at least 2");
		return 11;
	}
	/* Fill the rest of the rx ring with smaller buffers: bench frames are 72 bytes. */
	while (rxq.num_free) {
		uint8_t *b = virtio_alloc(BENCH_RXBUF, 64);
		if (!b || post_rx_len(b, BENCH_RXBUF) < 0)
			break;
	}
	virtq_kick(&rxq);

	/* tx: one frame, the same buffer behind every descriptor (the device only reads). */
	uint8_t *f = virtio_alloc(HDR + 60, 64);
	if (!f)
		return failed("bench: pool");
	memset(f, 0, HDR + 60);
	static const uint8_t dst[6] = {0x02, 0, 0, 0, 0, 0x01};
	memcpy(f + HDR, dst, 6);
	memcpy(f + HDR + 6, mac, 6);
	f[HDR + 12] = BENCH_ETHERTYPE >> 8;
	f[HDR + 13] = BENCH_ETHERTYPE & 0xff;
	struct virtq_buf tb = {f, HDR + 60};
	uint64_t submitted = 0, done = 0, kicks = 0, k0 = txq.kicks;
	uint32_t len;
	int id;
	uint64_t t0 = rdtsc(), deadline = t0 + 20 * TSC_HZ_MAX;
	while (done < n) {
		while ((id = virtq_poll(&txq, &len)) >= 0)
			done++;
		if (id == -2 || rdtsc() > deadline) {
			printf("virtio-net: FAIL bench tx: %lu of %lu sent: %s\n", done, n,
			       dev.err);
			return 11;
		}
		unsigned added = 0;
		while (submitted < n && submitted - done < BENCH_TX_DEPTH && txq.num_free) {
			if (virtq_add(&txq, &tb, 1, 0) < 0)
				return failed("bench tx add");
			submitted++;
			added++;
		}
		if (added) {
			virtq_kick(&txq);
			kicks++;
		}
	}
	uint64_t t1 = rdtsc();
	printf("virtio-net: bench tx %lu frames in %lu cycles (%lu kicks, %lu notifications)\n", n,
	       t1 - t0, kicks, txq.kicks - k0);

	/* rx: from the first bench frame to the nth. */
	puts("virtio-net: bench rx ready");
	uint64_t got = 0, other = 0;
	kicks = 0;
	t0 = 0;
	deadline = rdtsc() + 30 * TSC_HZ_MAX;
	while (got < n) {
		uint8_t *back[VIRTQ_MAX_SIZE];
		uint32_t back_len[VIRTQ_MAX_SIZE];
		unsigned nback = 0;
		while (nback < VIRTQ_MAX_SIZE && (id = virtq_poll(&rxq, &len)) >= 0) {
			uint8_t *b = rx_of_head[id];
			if (len >= HDR + 14 && b[HDR + 12] == (BENCH_ETHERTYPE >> 8) &&
			    b[HDR + 13] == (BENCH_ETHERTYPE & 0xff)) {
				if (!got++)
					t0 = rdtsc();
			} else {
				other++;
			}
			back[nback] = b;
			back_len[nback++] = rx_len_of_head[id];
		}
		if (id == -2)
			return failed("bench rx used ring");
		if (rdtsc() > deadline) {
			printf("virtio-net: FAIL bench rx: %lu of %lu frames in 30 s\n", got, n);
			return 11;
		}
		for (unsigned i = 0; i < nback; i++)
			if (post_rx_len(back[i], back_len[i]) < 0)
				return failed("bench rx repost");
		if (nback) {
			virtq_kick(&rxq);
			kicks++;
		}
	}
	t1 = rdtsc();
	printf("virtio-net: bench rx %lu frames in %lu cycles (%lu other frames, %lu kicks)\n",
	       n - 1, t1 - t0, other, kicks);
	virtio_reset(&dev);
	puts("virtio-net: OK");
	return 0;
}

static uint64_t net_main(uint64_t arg)
{
	uint8_t ip[4], peer[4];
	if (!parse_ip("ip", "10.213.0.2", ip) || !parse_ip("peer", "10.213.0.1", peer)) {
		puts("virtio-net: FAIL ip= and peer= must be A.B.C.D");
		return 11;
	}
	pci_init(pci_access_from_cmdline(cmdline));
	if (virtio_find(&dev, VIRTIO_ID_NET, cmdline) < 0)
		return failed("find");
	if (dev.transport == VIRTIO_PCI)
		printf("virtio-net: pci %02x:%02x.%x device %u\n", PCI_BUS(dev.bdf),
		       PCI_DEV(dev.bdf), PCI_FN(dev.bdf), dev.device_id);
	else
		printf("virtio-net: mmio 0x%lx device %u\n", dev.base, dev.device_id);
	uint64_t got;
	if (virtio_negotiate(&dev, F_MAC | F_STATUS | F_MRG_RXBUF, VIRTIO_F_VERSION_1 | F_MAC,
			     &got) < 0)
		return failed("negotiate");
	printf("virtio-net: features device 0x%lx accepted 0x%lx\n", dev.device_features, got);
	uint8_t mac[6];
	uint16_t status = 0;
	virtio_cfg_read(&dev, 0, mac, 6);
	if (got & F_STATUS)
		virtio_cfg_read(&dev, 6, &status, 2);
	printf("virtio-net: mac %02x:%02x:%02x:%02x:%02x:%02x link %s\n", mac[0], mac[1], mac[2],
	       mac[3], mac[4], mac[5], (status & 1) ? "up" : "down");
	if (!(status & 1)) {
		puts("virtio-net: FAIL the link is down");
		return 11;
	}
	if (virtq_setup(&dev, &rxq, 0, 0, VIRTIO_NO_VECTOR) < 0 ||
	    virtq_setup(&dev, &txq, 1, 0, VIRTIO_NO_VECTOR) < 0)
		return failed("queues");
	for (int i = 0; i < NRX; i++) {
		uint8_t *b = virtio_alloc(RXBUF, 64);
		if (!b || post_rx(b) < 0) {
			puts("virtio-net: FAIL rx buffers");
			return 11;
		}
	}
	virtio_driver_ok(&dev);
	virtq_kick(&rxq);
	char mode[16];
	if (cmdline_get(cmdline, "net", mode, sizeof(mode)) && !strcmp(mode, "bench"))
		return bench(mac);

	/* The ARP request: broadcast, who has peer, tell ip. */
	uint8_t *f = virtio_alloc(HDR + 42, 64);
	memset(f, 0, HDR + 42);
	uint8_t *eth = f + HDR, *a = eth + 14;
	memset(eth, 0xff, 6);
	memcpy(eth + 6, mac, 6);
	eth[12] = 0x08;
	eth[13] = 0x06;
	static const uint8_t arp_req[8] = {0, 1, 8, 0, 6, 4, 0, 1};
	memcpy(a, arp_req, 8);
	memcpy(a + 8, mac, 6);
	memcpy(a + 14, ip, 4);
	memcpy(a + 24, peer, 4);
	struct virtq_buf tb = {f, HDR + 42};
	if (virtq_add(&txq, &tb, 1, 0) < 0)
		return failed("tx add");
	virtq_kick(&txq);
	uint32_t len;
	if (virtq_wait(&txq, 2 * TSC_HZ_MAX, &len) < 0)
		return failed("tx completion");
	printf("virtio-net: sent arp who-has %u.%u.%u.%u tell %u.%u.%u.%u\n", peer[0], peer[1],
	       peer[2], peer[3], ip[0], ip[1], ip[2], ip[3]);

	uint64_t start = rdtsc();
	unsigned frames = 0;
	while (rdtsc() - start < TIMEOUT) {
		int id = virtq_poll(&rxq, &len);
		if (id == -2)
			return failed("rx used ring");
		if (id < 0)
			continue;
		uint8_t *b = rx_of_head[id];
		frames++;
		uint16_t nbuf = (uint16_t)(b[10] | b[11] << 8);
		if (len < HDR || len > RXBUF || nbuf != 1) {
			printf("virtio-net: FAIL rx entry len %u num_buffers %u\n", len, nbuf);
			return 11;
		}
		const uint8_t *re = b + HDR, *ra = re + 14;
		if (len >= HDR + 42 && re[12] == 0x08 && re[13] == 0x06 && ra[7] == 2 &&
		    !memcmp(ra + 14, peer, 4) && !memcmp(re, mac, 6)) {
			printf("virtio-net: arp reply: %u.%u.%u.%u is-at "
			       "%02x:%02x:%02x:%02x:%02x:%02x (after %u frames)\n",
			       peer[0], peer[1], peer[2], peer[3], ra[8], ra[9], ra[10], ra[11],
			       ra[12], ra[13], frames);
			uint8_t s = virtio_get_status(&dev);
			if (s & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)) {
				printf("virtio-net: FAIL device status 0x%x\n", s);
				return 11;
			}
			virtio_reset(&dev);
			puts("virtio-net: OK");
			/* hold: stay up for a monitor to read the device's counters. */
			if (cmdline_has_word(cmdline, "hold"))
				for (;;)
					__asm__ volatile("pause");
			return 0;
		}
		if (post_rx(b) < 0)
			return failed("rx repost");
		virtq_kick(&rxq);
	}
	printf("virtio-net: FAIL no arp reply within 10 s (%u other frames)\n", frames);
	return 11;
}

int guest_main(const struct boot_params *bp)
{
	cmdline = bp_cmdline(bp);
	return (int)user_call(net_main, 0);
}
