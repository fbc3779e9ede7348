/* virtio-net on a real tap: kvmini's tap backend opens (and creates) an interface, the test
 * moves it into a network namespace it made and gives it 10.213.x.1 there; a driver on fake
 * guest memory sends an ARP request through the device and receives the namespace kernel's
 * reply. Traffic stays inside that namespace; everything is removed even on failure.
 * Needs root and /dev/net/tun (skipped, saying which, otherwise). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/tap.h"
#include "virtio/net.h"
#include "virtio/virtio.h"

#define QSIZE 64
#define HDR   12

static char ns[32], ifname[16];
static bool ns_made;
static struct tap tap;
static bool tap_opened;
static uint8_t ram[1 << 20] __attribute__((aligned(4096)));
static struct guest_mem mem;
static struct virtio_dev *dev;
static uint16_t next_desc[2], avail_idx[2];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static void cleanup(void)
{
	if (dev) {
		virtio_dev_destroy(dev);
		free(dev);
		dev = NULL;
	}
	if (tap_opened)
		tap_close(&tap);
	tap_opened = false;
	if (ns_made)
		sh("ip netns del %s 2>/dev/null", ns); /* takes the tap with it */
	ns_made = false;
	if (ifname[0])
		sh("ip link del %s 2>/dev/null", ifname); /* if it never moved */
	guest_mem_destroy(&mem);
}

static void need_root_and_tun(void)
{
	if (geteuid() != 0)
		cr_skip_test("needs root (network namespaces and a tap)");
	if (access("/dev/net/tun", R_OK | W_OK) != 0)
		cr_skip_test("/dev/net/tun is missing");
	if (sh("command -v ip >/dev/null 2>&1") != 0)
		cr_skip_test("the ip tool (iproute2) is missing");
}

static uint64_t desc_gpa(unsigned q)
{
	return 0x1000 + q * 0x2000ull;
}
static uint64_t avail_gpa(unsigned q)
{
	return desc_gpa(q) + 0x400;
}
static uint64_t used_gpa(unsigned q)
{
	return desc_gpa(q) + 0x800;
}

static void add_buf(unsigned q, uint64_t gpa, uint32_t len, bool write)
{
	uint16_t i = next_desc[q]++ % QSIZE;
	struct vring_desc d = {.addr = gpa, .len = len, .flags = write ? VRING_DESC_F_WRITE : 0};
	memcpy(ram + desc_gpa(q) + 16ull * i, &d, sizeof(d));
	uint16_t *ring = (uint16_t *)(ram + avail_gpa(q) + 4);
	ring[avail_idx[q] % QSIZE] = i;
	avail_idx[q]++;
	__atomic_store_n((uint16_t *)(ram + avail_gpa(q) + 2), avail_idx[q], __ATOMIC_RELEASE);
}

static uint16_t used_idx(unsigned q)
{
	return __atomic_load_n((uint16_t *)(ram + used_gpa(q) + 2), __ATOMIC_ACQUIRE);
}

static void nop_queue(void *t, unsigned q)
{
}
static void nop_config(void *t)
{
}
static const struct virtio_transport_ops t_ops = {nop_queue, nop_config};

TestSuite(net_tap, .fini = cleanup);

Test(net_tap, arp_request_gets_the_namespace_reply, .timeout = 30)
{
	need_root_and_tun();
	unsigned id = (unsigned)getpid() & 0xffff;
	snprintf(ns, sizeof(ns), "kvmini-t%u", id);
	snprintf(ifname, sizeof(ifname), "kvmt%u", id);
	unsigned net = 1 + id % 250;

	cr_assert_eq(sh("ip netns add %s", ns), 0);
	ns_made = true;
	struct errbuf e;
	cr_assert_eq(tap_open(&tap, ifname, 1, HDR, &e), 0, "%s", e.msg);
	tap_opened = true;
	cr_assert(tap.offloads & TUN_F_CSUM, "a Linux tap takes checksum offload");
	cr_assert_eq(sh("ip link set %s netns %s", ifname, ns), 0);
	cr_assert_eq(sh("ip -n %s addr add 10.213.%u.1/24 dev %s && ip -n %s link set %s up", ns,
			net, ifname, ns, ifname),
		     0);

	cr_assert_eq(guest_mem_add_region(&mem, 0, sizeof(ram), ram), 0);
	static const uint8_t mac[6] = {0x06, 0x6b, 0x76, 0, 0, 7};
	cr_assert_eq(virtio_net_create_fds(&mem, NULL, tap.fds, 1, mac, tap.offloads, &dev, &e), 0,
		     "%s", e.msg);
	virtio_dev_attach(dev, &t_ops, NULL);
	virtio_dev_set_status(dev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	virtio_dev_set_driver_features(dev, (1ull << VIRTIO_F_VERSION_1) |
						(1ull << VIRTIO_NET_F_MRG_RXBUF) |
						(1ull << VIRTIO_NET_F_MAC));
	virtio_dev_set_status(dev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				       VIRTIO_CONFIG_S_FEATURES_OK);
	for (unsigned q = 0; q < 2; q++) {
		cr_assert_eq(virtqueue_set_size(&dev->vqs[q], QSIZE), 0);
		virtqueue_set_addrs(&dev->vqs[q], desc_gpa(q), avail_gpa(q), used_gpa(q));
		cr_assert_eq(virtqueue_enable(&dev->vqs[q], &e), 0, "%s", e.msg);
	}
	uint8_t s =
	    virtio_dev_set_status(dev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					   VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	cr_assert(s & VIRTIO_CONFIG_S_DRIVER_OK);

	/* rx buffers: 32 of 2 KiB at 0x80000. */
	for (unsigned i = 0; i < 32; i++)
		add_buf(0, 0x80000 + 2048ull * i, 2048, true);

	/* A hostile header first: a GSO type that does not exist. The kernel refuses the
	 * write; the device counts it, returns the chain and keeps working. */
	uint8_t *bogus = ram + 0x50000;
	memset(bogus, 0, HDR + 60);
	bogus[1] = 0x55; /* gso_type */
	add_buf(1, 0x50000, HDR + 60, false);
	virtio_dev_queue_notify(dev, 1);
	cr_assert_eq(used_idx(1), 1);
	struct virtio_net_stats st0;
	virtio_net_get_stats(dev, &st0);
	cr_assert_eq(st0.tx_errors, 1, "the tap refused the bogus header");
	cr_assert_eq(atomic_load(&dev->status) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);

	/* An ARP request: who has 10.213.N.1, tell 10.213.N.2. */
	uint8_t *f = ram + 0x40000;
	memset(f, 0, HDR + 42);
	uint8_t *eth = f + HDR;
	memset(eth, 0xff, 6);
	memcpy(eth + 6, mac, 6);
	eth[12] = 0x08, eth[13] = 0x06;
	uint8_t *arp = eth + 14;
	static const uint8_t arp_hdr[8] = {0, 1, 8, 0, 6, 4, 0, 1};
	memcpy(arp, arp_hdr, 8);
	memcpy(arp + 8, mac, 6);
	uint8_t spa[4] = {10, 213, (uint8_t)net, 2}, tpa[4] = {10, 213, (uint8_t)net, 1};
	memcpy(arp + 14, spa, 4);
	memcpy(arp + 24, tpa, 4);
	add_buf(1, 0x40000, HDR + 42, false);
	virtio_dev_queue_notify(dev, 1);
	cr_assert_eq(used_idx(1), 2, "the tx chain came back");
	struct virtio_net_stats st;
	virtio_net_get_stats(dev, &st);
	cr_assert_eq(st.tx_frames, 1, "the tap took the frame (tx errors: %llu)",
		     (unsigned long long)st.tx_errors);

	/* Poll the rx queue (the loop is not running here) for up to 5 s. */
	bool got = false;
	uint16_t seen = 0;
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		virtio_dev_queue_notify(dev, 0);
		while (seen != used_idx(0) && !got) {
			struct vring_used_elem u;
			memcpy(&u, ram + used_gpa(0) + 4 + 8ull * (seen % QSIZE), sizeof(u));
			seen++;
			const uint8_t *r = ram + 0x80000 + 2048ull * u.id;
			cr_assert_lt(u.id, 32);
			struct virtio_net_hdr_mrg_rxbuf h;
			memcpy(&h, r, HDR);
			cr_assert_eq(h.num_buffers, 1);
			const uint8_t *re = r + HDR;
			if (u.len >= HDR + 42 && re[12] == 0x08 && re[13] == 0x06 &&
			    re[14 + 7] == 2) {
				cr_assert_arr_eq(re, mac, 6, "the reply is addressed to the guest");
				cr_assert_arr_eq(re + 14 + 14, tpa, 4, "from 10.213.N.1");
				cr_assert_arr_eq(re + 14 + 18, mac, 6);
				got = true;
			}
		}
		if (!got)
			usleep(10000);
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (!got && now.tv_sec - t0.tv_sec < 5);
	cr_assert(got, "no ARP reply within 5 s (%u frames seen)", seen);
}

Test(net_tap, single_queue_tap_asked_for_two_queues_is_refused_in_one_line, .timeout = 30)
{
	need_root_and_tun();
	unsigned id = (unsigned)getpid() & 0xffff;
	snprintf(ifname, sizeof(ifname), "kvmq%u", id);
	cr_assert_eq(sh("ip tuntap add %s mode tap", ifname), 0);
	struct errbuf e = {{0}};
	/* An existing tap is attached to, not recreated. */
	cr_assert_eq(tap_open(&tap, ifname, 1, HDR, &e), 0, "%s", e.msg);
	tap_close(&tap);
	int r = tap_open(&tap, ifname, 2, HDR, &e);
	if (r == 0)
		tap_opened = true;
	cr_assert_eq(r, -EINVAL, "two queues on a single-queue tap");
	cr_assert_not_null(strstr(e.msg, ifname), "%s", e.msg);
	cr_assert_not_null(strstr(e.msg, "multi_queue"), "%s", e.msg);
	cr_assert_null(strchr(e.msg, '\n'));
}

/* ---- a ring-3 polling guest through the whole VMM ---- */

#include <fcntl.h>
#include <sched.h>

#include "harness.h"

/* Makes a namespace with a tap at 10.213.N.1/24 in it and moves this test process into it,
 * so the kvmini it starts opens that tap (a name is looked up in the caller's namespace). */
static unsigned enter_ns_with_tap(bool mq)
{
	unsigned id = (unsigned)getpid() & 0xffff;
	unsigned net = 1 + id % 250;
	snprintf(ns, sizeof(ns), "kvmini-g%u", id);
	snprintf(ifname, sizeof(ifname), "kvmg%u", id);
	cr_assert_eq(sh("ip netns add %s", ns), 0);
	ns_made = true;
	cr_assert_eq(sh("ip -n %s tuntap add %s mode tap%s && ip -n %s addr add "
			"10.213.%u.1/24 dev "
			"%s && ip -n %s link set %s up",
			ns, ifname, mq ? " multi_queue" : "", ns, net, ifname, ns, ifname),
		     0);
	char path[64];
	snprintf(path, sizeof(path), "/var/run/netns/%s", ns);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(setns(fd, CLONE_NEWNET), 0, "setns: %s", strerror(errno));
	close(fd);
	/* The tap dies with the namespace; no host-side name to delete. */
	ifname[0] = '\0';
	return net;
}

/* A line the guest must print about where it found the NIC (NULL: any). */
static const char *expect_transport;

/* Returns the feature bits the guest saw offered. */
static uint64_t guest_arp(const char *const *net_args, unsigned nargs, bool mq)
{
	need_root_and_tun();
	unsigned net = enter_ns_with_tap(mq);
	char tapname[16], append[96], tapopt[160];
	snprintf(tapname, sizeof(tapname), "kvmg%u", (unsigned)getpid() & 0xffff);
	snprintf(append, sizeof(append), "ip=10.213.%u.2 peer=10.213.%u.1", net, net);
	const char *argv[16] = {"kvmini",   "run", "--kernel", harness_guest("virtio-net"),
				"--append", append};
	unsigned n = 6;
	for (unsigned i = 0; i < nargs; i++) {
		/* "@" in an argument stands for the tap's name. */
		const char *at = strchr(net_args[i], '@');
		if (at) {
			snprintf(tapopt, sizeof(tapopt), "%.*s%s%s", (int)(at - net_args[i]),
				 net_args[i], tapname, at + 1);
			argv[n++] = tapopt;
		} else {
			argv[n++] = net_args[i];
		}
	}
	argv[n] = NULL;
	struct harness_opts o = {.timeout_s = 30};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && r.exit_status == 0, "exit %d signal %d\nstdout:\n%s\nstderr:\n%s",
		  r.exit_status, r.term_signal, r.out, r.err);
	cr_assert_not_null(strstr(r.out, "link up"), "%s", r.out);
	char want[64];
	snprintf(want, sizeof(want), "arp reply: 10.213.%u.1 is-at", net);
	cr_assert_not_null(strstr(r.out, want), "%s", r.out);
	cr_assert_not_null(strstr(r.out, "virtio-net: OK"), "%s", r.out);
	if (expect_transport)
		cr_assert_not_null(strstr(r.out, expect_transport), "%s", r.out);
	const char *f = strstr(r.out, "features device 0x");
	cr_assert_not_null(f, "%s", r.out);
	uint64_t features = strtoull(f + strlen("features device 0x"), NULL, 16);
	harness_result_free(&r);
	return features;
}

Test(net_tap, guest_arp_through_kvmini_net, .timeout = 60)
{
	const char *a[] = {"--net", "tap=@"};
	guest_arp(a, 2, false);
}

Test(net_tap, guest_arp_through_qemu_netdev_and_device, .timeout = 60)
{
	const char *a[] = {"-netdev", "tap,id=n0,ifname=@,script=no,downscript=no,vhost=off",
			   "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56"};
	guest_arp(a, 4, false);
}

Test(net_tap, guest_arp_through_qemu_nic, .timeout = 60)
{
	const char *a[] = {"-nic", "tap,ifname=@,script=no,downscript=no,model=virtio-net-pci"};
	guest_arp(a, 2, false);
}

Test(net_tap, guest_arp_on_a_multi_queue_tap, .timeout = 60)
{
	/* The guest takes no MQ: kvmini detaches queue 1 so the kernel steers all to pair 0. */
	const char *a[] = {"--net", "tap=@,queues=2"};
	uint64_t f = guest_arp(a, 2, true);
	cr_assert(f & (1ull << VIRTIO_NET_F_MQ), "MQ offered: 0x%llx", (unsigned long long)f);
	cr_assert(f & (1ull << VIRTIO_NET_F_CTRL_VQ));
}

Test(net_tap, missing_tun_device_is_refused_in_one_line, .timeout = 30)
{
	setenv("KVMINI_TUN_PATH", "/nonexistent/tun", 1);
	const char *argv[] = {"kvmini", "run",		"--kernel", harness_guest("hello"),
			      "--net",	"tap=kvmnone0", NULL};
	struct harness_opts o = {.timeout_s = 20};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	unsetenv("KVMINI_TUN_PATH");
	cr_assert(r.exited && r.exit_status != 0, "exit %d\n%s", r.exit_status, r.err);
	cr_assert_not_null(strstr(r.err, "/nonexistent/tun"), "%s", r.err);
	cr_assert_not_null(strstr(r.err, "missing"), "%s", r.err);
	cr_assert_null(strstr(r.out, "Hello"), "the VM must not run without its NIC");
	harness_result_free(&r);
}

Test(net_tap, one_tap_for_two_nics_is_refused_in_one_line, .timeout = 30)
{
	need_root_and_tun();
	unsigned id = (unsigned)getpid() & 0xffff;
	snprintf(ns, sizeof(ns), "kvmini-b%u", id);
	cr_assert_eq(sh("ip netns add %s", ns), 0);
	ns_made = true;
	char path[64], tapopt[32];
	snprintf(path, sizeof(path), "/var/run/netns/%s", ns);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(setns(fd, CLONE_NEWNET), 0);
	close(fd);
	snprintf(tapopt, sizeof(tapopt), "tap=kvmb%u", id);
	const char *argv[] = {"kvmini", "run",	"--kernel", harness_guest("hello"), "--net", tapopt,
			      "--net",	tapopt, NULL};
	struct harness_opts o = {.timeout_s = 20};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && r.exit_status != 0, "exit %d\n%s", r.exit_status, r.err);
	cr_assert_not_null(strstr(r.err, "already in use"), "%s", r.err);
	cr_assert_null(strstr(r.out, "Hello"));
	harness_result_free(&r);
}

Test(net_tap, multi_queue_tap_without_mq_on_is_one_pair_as_in_qemu, .timeout = 60)
{
	const char *a[] = {"-netdev", "tap,id=n0,ifname=@,queues=2", "-device",
			   "virtio-net-pci,netdev=n0"};
	uint64_t f = guest_arp(a, 4, true);
	cr_assert_eq(f & (1ull << VIRTIO_NET_F_MQ), 0, "0x%llx", (unsigned long long)f);
}

/* The same guest over virtio-mmio: kvmini announces the window on the command line and the
 * guest kit's driver finds the NIC there, by both spellings. */
Test(net_tap, guest_arp_over_virtio_mmio, .timeout = 60)
{
	const char *a[] = {"--net", "tap=@", "--virtio-transport", "mmio"};
	expect_transport = "virtio-net: mmio 0xfe000000 device 1";
	guest_arp(a, 4, false);
}

Test(net_tap, guest_arp_over_virtio_net_device, .timeout = 60)
{
	const char *a[] = {"-netdev", "tap,id=n0,ifname=@,script=no,downscript=no", "-device",
			   "virtio-net-device,netdev=n0"};
	expect_transport = "virtio-net: mmio 0xfe000000 device 1";
	guest_arp(a, 4, false);
}

/* The counters of that NIC through QMP while the guest holds after its ARP exchange: one
 * frame of 42 bytes sent, at least the reply received. */
struct stats_ctx {
	const char *sock;
	char out[8192];
};

static void read_virtio_stats(int pid, void *arg)
{
	struct stats_ctx *c = arg;
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "%s ctl --raw %s x-query-virtio-stats 2>&1", harness_kvmini(),
		 c->sock);
	FILE *p = popen(cmd, "r");
	if (!p)
		return;
	size_t n = fread(c->out, 1, sizeof(c->out) - 1, p);
	c->out[n] = 0;
	pclose(p);
}

static uint64_t stat_of(const char *json, const char *name)
{
	char key[64];
	snprintf(key, sizeof(key), "\"%s\":", name);
	const char *p = strstr(json, key);
	return p ? strtoull(p + strlen(key), NULL, 10) : ~0ull;
}

Test(net_tap, mmio_nic_counters_through_qmp, .timeout = 60)
{
	need_root_and_tun();
	unsigned net = enter_ns_with_tap(false);
	char tapopt[32], append[96], qmp[96], sock[64];
	snprintf(tapopt, sizeof(tapopt), "tap=kvmg%u", (unsigned)getpid() & 0xffff);
	snprintf(append, sizeof(append), "ip=10.213.%u.2 peer=10.213.%u.1 hold", net, net);
	snprintf(sock, sizeof(sock), "/tmp/kvmini-netq-%d.sock", (int)getpid());
	snprintf(qmp, sizeof(qmp), "unix:%s,server,wait=off", sock);
	const char *argv[] = {
	    "kvmini", "run",   "--kernel", harness_guest("virtio-net"), "--append",
	    append,   "--net", tapopt,	   "--virtio-transport",	"mmio",
	    "--qmp",  qmp,     NULL};
	const char *stop[] = {"virtio-net: OK", NULL};
	struct stats_ctx c = {.sock = sock};
	struct harness_opts o = {
	    .timeout_s = 30, .stop_when = stop, .inspect = read_virtio_stats, .inspect_arg = &c};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	unlink(sock);
	cr_assert_not_null(strstr(r.out, "virtio-net: mmio 0xfe000000 device 1"), "%s%s", r.out,
			   r.err);
	cr_assert_not_null(strstr(r.out, "virtio-net: OK"), "%s%s", r.out, r.err);
	cr_assert_not_null(strstr(c.out, "\"name\":\"virtio-net\""), "%s", c.out);
	cr_assert_not_null(strstr(c.out, "\"transport\":\"mmio\",\"address\":\"0xfe000000\""), "%s",
			   c.out);
	cr_assert_eq(stat_of(c.out, "tx_frames"), 1, "%s", c.out);
	cr_assert_eq(stat_of(c.out, "tx_bytes"), 42, "the ARP request: %s", c.out);
	cr_assert_eq(stat_of(c.out, "tx_errors"), 0, "%s", c.out);
	uint64_t rx = stat_of(c.out, "rx_frames");
	cr_assert(rx >= 1 && rx != ~0ull, "at least the reply: %s", c.out);
	cr_assert_geq(stat_of(c.out, "rx_bytes"), 42 * rx, "%s", c.out);
	harness_result_free(&r);
}
