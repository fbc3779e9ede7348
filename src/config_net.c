/* Network options: see config_net.h. kvmini's --net and QEMU's -nic are translated into a
 * -netdev tap entry and a -device virtio-net-pci entry, so the device code reads one form. */
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

#include "config_net.h"
#include "virtio/net.h"

#define NET_MAX_QUEUES 16 /* VIRTIO_NET_MAX_PAIRS, TAP_MAX_QUEUES */

static int nerr(struct errbuf *e, int code)
{
	if (e)
		for (char *p = e->msg; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
	return code;
}
#define NERR(e, ...) nerr((e), errf((e), -EINVAL, __VA_ARGS__))

/* An interface name the kernel takes (dev_valid_name): 1..15 bytes, not "." or "..", no
 * '/', ':' or white space. Commas are refused too, as they would split the keyed form. */
static bool valid_ifname(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= IFNAMSIZ || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (; *s; s++)
		if (*s == '/' || *s == ':' || *s == ',' || *s == '=' || (unsigned char)*s <= ' ' ||
		    (unsigned char)*s == 0x7f)
			return false;
	return true;
}

bool config_is_net_device(const char *driver)
{
	return !strcmp(driver, "virtio-net-pci") || !strcmp(driver, "virtio-net-device") ||
	       !strcmp(driver, "virtio-net");
}

/* Appends the -netdev and -device pair for one NIC. */
static int add_pair(struct vm_config *cfg, const char *what, const char *ifname, const char *mac,
		    uint64_t queues, struct errbuf *e)
{
	char id[32], nd[128], dev[128];
	unsigned k = cfg->netdevs.n;
	do
		snprintf(id, sizeof(id), "kvmini.net%u", k++);
	while (keyed_list_find(&cfg->netdevs, id));
	snprintf(nd, sizeof(nd), "tap,id=%s,ifname=%s,script=no,downscript=no,queues=%llu", id,
		 ifname, (unsigned long long)queues);
	/* No transport suffix: the device goes on the default transport (--virtio-transport). */
	snprintf(dev, sizeof(dev), "virtio-net,netdev=%s%s%s%s", id, mac ? ",mac=" : "",
		 mac ? mac : "", queues > 1 ? ",mq=on" : "");
	int r = keyed_list_add(&cfg->netdevs, "netdev", nd, NULL, e);
	if (r == 0)
		r = keyed_list_add(&cfg->devices, "device", dev, NULL, e);
	return r ? NERR(e, "invalid %s: %s", what, e->msg) : 0;
}

static int check_mac(const char *opt, const char *spec, const char *mac, struct errbuf *e)
{
	uint8_t m[6];
	if (mac && net_parse_mac(mac, m) < 0)
		return NERR(e,
			    "invalid %s '%s': mac must be six hex bytes XX:XX:XX:XX:XX:XX and "
			    "unicast (got '%s')",
			    opt, spec, mac);
	return 0;
}

static int get_queues(struct keyed_opts *o, const char *opt, uint64_t *q, struct errbuf *e)
{
	struct errbuf tmp;
	if (keyed_get_u64(o, "queues", 1, NET_MAX_QUEUES, q, &tmp) < 0 || *q < 1)
		return NERR(e, "invalid %s '%s': queues must be 1 to %d", opt, o->spec,
			    NET_MAX_QUEUES);
	return 0;
}

int config_add_net(struct vm_config *cfg, const char *spec, struct errbuf *e)
{
	struct keyed_opts o;
	uint64_t queues;
	int r = keyed_parse("net", spec, &o, e);
	if (r)
		return r;
	const char *ifname = keyed_get(&o, "tap");
	const char *mac = keyed_get(&o, "mac");
	if (!ifname || !strcmp(ifname, "on")) {
		r = NERR(
		    e,
		    "invalid --net '%s': expected tap=IFNAME[,mac=XX:XX:XX:XX:XX:XX][,queues=N] "
		    "(QEMU's -net nic/-net tap pairs are spelt -nic tap,ifname=IF,... here)",
		    spec);
		goto out;
	}
	if (!valid_ifname(ifname)) {
		r = NERR(e,
			 "invalid --net '%s': '%s' is not an interface name (1 to %d characters, "
			 "no '/', ':', ',' or spaces)",
			 spec, ifname, IFNAMSIZ - 1);
		goto out;
	}
	if ((r = check_mac("--net", spec, mac, e)) || (r = get_queues(&o, "--net", &queues, e)) ||
	    (r = keyed_check_used(&o, "tap, mac, queues", e)))
		goto out;
	r = add_pair(cfg, "--net", ifname, mac, queues, e);
out:
	keyed_opts_free(&o);
	return r;
}

/* script= and downscript= name programs QEMU runs; kvmini runs none, so only "no" (or
 * leaving them out) is accepted: a script the user expects to run would silently not. */
static int check_scripts(struct keyed_opts *o, const char *opt, struct errbuf *e)
{
	static const char *const keys[] = {"script", "downscript"};
	for (int i = 0; i < 2; i++) {
		const char *v = keyed_get(o, keys[i]);
		if (v && strcmp(v, "no") && strcmp(v, "off") && strcmp(v, ""))
			return NERR(
			    e,
			    "invalid %s '%s': kvmini runs no scripts (%s=%s); set the tap up "
			    "beforehand and give %s=no",
			    opt, o->spec, keys[i], v, keys[i]);
	}
	return 0;
}

static int check_vhost(struct keyed_opts *o, const char *opt, struct errbuf *e)
{
	bool vhost = false;
	struct errbuf tmp;
	if (keyed_get_bool(o, "vhost", false, &vhost, &tmp) < 0)
		return NERR(e, "invalid %s '%s': vhost must be on or off", opt, o->spec);
	if (vhost)
		return NERR(e,
			    "invalid %s '%s': vhost=on: kvmini serves virtio-net in user space "
			    "only (%s)",
			    opt, o->spec, virtio_net_datapath());
	return 0;
}

int config_add_nic(struct vm_config *cfg, const char *spec, struct errbuf *e)
{
	struct keyed_opts o;
	uint64_t queues;
	int r = keyed_parse("nic", spec, &o, e);
	if (r)
		return r;
	if (!strcmp(o.type, "none")) {
		r = keyed_check_used(&o, NULL, e);
		goto out;
	}
	if (strcmp(o.type, "tap")) {
		r = NERR(e, "invalid -nic '%s': kvmini's only network backend is tap (got '%s')",
			 spec, o.type);
		goto out;
	}
	const char *ifname = keyed_get(&o, "ifname");
	const char *model = keyed_get(&o, "model");
	const char *mac = keyed_get(&o, "mac");
	if (!ifname || !valid_ifname(ifname)) {
		r = NERR(e,
			 "invalid -nic '%s': ifname=IF is required (kvmini creates no tap names)",
			 spec);
		goto out;
	}
	if (model && !config_is_net_device(model)) {
		r = NERR(e,
			 "invalid -nic '%s': kvmini's only NIC model is virtio-net-pci (got '%s')",
			 spec, model);
		goto out;
	}
	if ((r = check_scripts(&o, "-nic", e)) || (r = check_vhost(&o, "-nic", e)) ||
	    (r = check_mac("-nic", spec, mac, e)) || (r = get_queues(&o, "-nic", &queues, e)) ||
	    (r = keyed_check_used(&o, "ifname, script, downscript, model, mac, queues, vhost", e)))
		goto out;
	r = add_pair(cfg, "-nic", ifname, mac, queues, e);
out:
	keyed_opts_free(&o);
	return r;
}

int config_check_net(struct vm_config *cfg, struct errbuf *e)
{
	for (unsigned j = 0; j < cfg->devices.n; j++) {
		struct keyed_opts *d = &cfg->devices.items[j];
		if (!config_is_net_device(d->type))
			continue;
		const char *nd = keyed_get(d, "netdev");
		struct keyed_opts *o = nd ? keyed_list_find(&cfg->netdevs, nd) : NULL;
		if (!o)
			return NERR(e,
				    nd ? "invalid -device '%s': no -netdev with id '%s'"
				       : "invalid -device '%s': netdev=ID is required (a -netdev "
					 "tap,id=ID,...)",
				    d->spec, nd);
		int r = check_mac("-device", d->spec, keyed_get(d, "mac"), e);
		bool mq;
		struct errbuf tmp;
		if (!r && keyed_get_bool(d, "mq", false, &mq, &tmp) < 0)
			return NERR(e, "invalid -device '%s': mq must be on or off", d->spec);
		if (r || (r = keyed_check_used(d, "netdev, mac, mq, vectors", e)))
			return r;
	}
	for (unsigned i = 0; i < cfg->netdevs.n; i++) {
		struct keyed_opts *o = &cfg->netdevs.items[i];
		uint64_t queues;
		int r;
		if (strcmp(o->type, "tap"))
			return NERR(e, "invalid -netdev '%s': kvmini's only network backend is tap",
				    o->spec);
		const char *ifname = keyed_get(o, "ifname");
		if (!ifname || !valid_ifname(ifname))
			return NERR(
			    e,
			    "invalid -netdev '%s': ifname=IF is required (kvmini creates no "
			    "tap names)",
			    o->spec);
		if ((r = check_scripts(o, "-netdev", e)) || (r = check_vhost(o, "-netdev", e)) ||
		    (r = get_queues(o, "-netdev", &queues, e)) ||
		    (r = keyed_check_used(o, "ifname, script, downscript, queues, vhost", e)))
			return r;
		unsigned users = 0;
		for (unsigned j = 0; j < cfg->devices.n; j++) {
			struct keyed_opts *d = &cfg->devices.items[j];
			if (!config_is_net_device(d->type))
				continue;
			const char *nd = keyed_get(d, "netdev");
			if (nd && !strcmp(nd, o->id))
				users++;
		}
		if (users > 1)
			return NERR(e,
				    "invalid -netdev '%s': used by %u network devices (one each)",
				    o->spec, users);
		if (!users)
			return NERR(
			    e, "invalid -netdev '%s': no -device virtio-net-pci,netdev=%s uses it",
			    o->spec, o->id);
	}
	return 0;
}
