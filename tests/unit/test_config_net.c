/* The network options: --net, -netdev tap + -device virtio-net-pci and -nic all end up as
 * the same -netdev/-device pair that the device reads; every refusal is one line. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "config.h"

static struct vm_config c;
static struct errbuf e;
static bool parsed;

static int parse(const char **args)
{
	int n = 0;
	while (args[n])
		n++;
	if (parsed)
		config_free(&c);
	memset(&e, 0, sizeof(e));
	int r = config_parse_run(&c, n, (char **)args, &e);
	parsed = r == 0;
	return r;
}
#define PARSE(...) parse((const char *[]){__VA_ARGS__, NULL})
#define OK(...)                                                          \
	do {                                                             \
		int r_ = PARSE(__VA_ARGS__);                             \
		cr_assert_eq(r_, 0, "parse failed (%d): %s", r_, e.msg); \
	} while (0)
#define ERR(needle, ...)                                                                         \
	do {                                                                                     \
		int r_ = PARSE(__VA_ARGS__);                                                     \
		cr_assert_eq(r_, -EINVAL, "expected -EINVAL, got %d (%s)", r_, e.msg);           \
		cr_assert_null(strchr(e.msg, '\n'), "two lines: %s", e.msg);                     \
		cr_assert_not_null(strstr(e.msg, needle), "\"%s\" lacks \"%s\"", e.msg, needle); \
	} while (0)

static void fini(void)
{
	if (parsed)
		config_free(&c);
	parsed = false;
}

TestSuite(config_net, .fini = fini);

/* The netdev of device i, and that the pair says what was asked. */
static struct keyed_opts *pair(unsigned i, const char *ifname, const char *mac, const char *queues)
{
	struct keyed_opts *d = &c.devices.items[i];
	/* kvmini's own options leave the transport to --virtio-transport. */
	cr_assert(!strcmp(d->type, "virtio-net") || !strcmp(d->type, "virtio-net-pci"), "%s",
		  d->type);
	const char *id = keyed_get(d, "netdev");
	cr_assert_not_null(id);
	struct keyed_opts *n = keyed_list_find(&c.netdevs, id);
	cr_assert_not_null(n, "netdev=%s names a -netdev", id);
	cr_assert_str_eq(n->type, "tap");
	cr_assert_str_eq(keyed_get(n, "ifname"), ifname);
	if (mac)
		cr_assert_str_eq(keyed_get(d, "mac"), mac);
	else
		cr_assert_null(keyed_get(d, "mac"));
	const char *q = keyed_get(n, "queues");
	cr_assert_str_eq(q ? q : "1", queues);
	return n;
}

Test(config_net, kvmini_net)
{
	OK("--net", "tap=tap0");
	cr_assert_eq(c.netdevs.n, 1);
	cr_assert_eq(c.devices.n, 1);
	pair(0, "tap0", NULL, "1");
	OK("--net", "tap=tap0,mac=06:00:00:00:00:01,queues=4");
	pair(0, "tap0", "06:00:00:00:00:01", "4");
	cr_assert_str_eq(keyed_get(&c.devices.items[0], "mq"), "on", "several queues: multiqueue");
}

Test(config_net, kvmini_net_repeated)
{
	OK("--net", "tap=a0", "--net=tap=b0,mac=52:54:00:00:00:02");
	cr_assert_eq(c.netdevs.n, 2);
	cr_assert_eq(c.devices.n, 2);
	pair(0, "a0", NULL, "1");
	pair(1, "b0", "52:54:00:00:00:02", "1");
	cr_assert_str_neq(c.netdevs.items[0].id, c.netdevs.items[1].id);
}

Test(config_net, qemu_netdev_and_device)
{
	OK("-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no,queues=2,vhost=off", "-device",
	   "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56");
	pair(0, "tap0", "52:54:00:12:34:56", "2");
	OK("-netdev", "tap,id=n0,ifname=tap0,queues=2", "-device",
	   "virtio-net-pci,netdev=n0,mq=on");
	/* The device may come first, and virtio-net-device (MMIO) is the same device. */
	OK("-device", "virtio-net-device,netdev=n0", "-netdev", "tap,id=n0,ifname=tap1");
	cr_assert_str_eq(keyed_get(&c.devices.items[0], "netdev"), "n0");
}

Test(config_net, qemu_nic)
{
	OK("-nic",
	   "tap,ifname=tap0,script=no,downscript=no,model=virtio-net-pci,mac=52:54:00:00:00:09");
	pair(0, "tap0", "52:54:00:00:00:09", "1");
	OK("-nic", "tap,ifname=tap0,script=no,downscript=no");
	pair(0, "tap0", NULL, "1");
	OK("-nic", "none");
	cr_assert_eq(c.netdevs.n, 0);
	cr_assert_eq(c.devices.n, 0);
}

Test(config_net, all_three_together)
{
	OK("--net", "tap=a0", "-nic", "tap,ifname=b0,script=no", "-netdev",
	   "tap,id=kvmini.net0x,ifname=c0", "-device", "virtio-net-pci,netdev=kvmini.net0x");
	cr_assert_eq(c.netdevs.n, 3);
	cr_assert_eq(c.devices.n, 3);
}

Test(config_net, net_errors)
{
	ERR("expected tap=IFNAME", "--net", "nic,model=virtio");
	ERR("expected tap=IFNAME", "--net", "mac=52:54:00:00:00:01");
	ERR("not an interface name", "--net", "tap=a/b");
	ERR("not an interface name", "--net", "tap=sixteen-chars-xy");
	ERR("unicast", "--net", "tap=t0,mac=01:00:00:00:00:01");
	ERR("six hex bytes", "--net", "tap=t0,mac=52:54:00");
	ERR("queues must be 1 to 16", "--net", "tap=t0,queues=0");
	ERR("queues must be 1 to 16", "--net", "tap=t0,queues=17");
	ERR("unknown key 'bogus'", "--net", "tap=t0,bogus=1");
}

Test(config_net, netdev_errors)
{
	ERR("kvmini runs no scripts", "-netdev", "tap,id=n0,ifname=t0,script=/etc/qemu-ifup",
	    "-device", "virtio-net-pci,netdev=n0");
	ERR("downscript=/bin/x", "-netdev", "tap,id=n0,ifname=t0,script=no,downscript=/bin/x",
	    "-device", "virtio-net-pci,netdev=n0");
	ERR("vhost=on", "-netdev", "tap,id=n0,ifname=t0,vhost=on", "-device",
	    "virtio-net-pci,netdev=n0");
	ERR("ifname=IF is required", "-netdev", "tap,id=n0", "-device", "virtio-net-pci,netdev=n0");
	ERR("only network backend is tap", "-netdev", "user,id=n0", "-device",
	    "virtio-net-pci,netdev=n0");
	ERR("unknown key 'fd'", "-netdev", "tap,id=n0,ifname=t0,fd=3", "-device",
	    "virtio-net-pci,netdev=n0");
	ERR("no -device virtio-net-pci,netdev=n0 uses it", "-netdev", "tap,id=n0,ifname=t0");
	ERR("used by 2 network devices", "-netdev", "tap,id=n0,ifname=t0", "-device",
	    "virtio-net-pci,netdev=n0", "-device", "virtio-net-pci,netdev=n0");
	ERR("no -netdev with id 'n1'", "-netdev", "tap,id=n0,ifname=t0", "-device",
	    "virtio-net-pci,netdev=n1");
	ERR("netdev=ID is required", "-device", "virtio-net-pci");
	ERR("mq must be on or off", "-netdev", "tap,id=n0,ifname=t0,queues=2", "-device",
	    "virtio-net-pci,netdev=n0,mq=maybe");
	ERR("unknown key 'romfile'", "-netdev", "tap,id=n0,ifname=t0", "-device",
	    "virtio-net-pci,netdev=n0,romfile=");
	ERR("unicast", "-netdev", "tap,id=n0,ifname=t0", "-device",
	    "virtio-net-pci,netdev=n0,mac=ff:ff:ff:ff:ff:ff");
}

Test(config_net, nic_errors)
{
	ERR("kvmini runs no scripts", "-nic", "tap,ifname=t0,script=yes");
	ERR("only NIC model is virtio-net-pci", "-nic", "tap,ifname=t0,model=e1000");
	ERR("ifname=IF is required", "-nic", "tap,script=no");
	ERR("only network backend is tap", "-nic", "user,model=virtio-net-pci");
	ERR("unknown key 'br'", "-nic", "tap,ifname=t0,br=br0");
	ERR("vhost=on", "-nic", "tap,ifname=t0,vhost=on");
}
