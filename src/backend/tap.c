/* The tap backend: see tap.h. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "backend/tap.h"

const char *tap_device_path(void)
{
	const char *p = getenv("KVMINI_TUN_PATH");
	return p && *p ? p : "/dev/net/tun";
}

static int open_error(const char *path, const char *ifname, int err, struct errbuf *e)
{
	if (err == ENOENT || err == ENODEV || err == ENXIO)
		return errf(e, -err,
			    "cannot open %s for tap '%s': the tun device is missing (load the tun "
			    "module: modprobe tun)",
			    path, ifname);
	if (err == EACCES || err == EPERM)
		return errf(e, -err,
			    "cannot open %s for tap '%s': permission denied (kvmini needs "
			    "CAP_NET_ADMIN, or a tap created for this user with 'ip tuntap add "
			    "%s mode tap user USER')",
			    path, ifname, ifname);
	return errf(e, -err, "cannot open %s for tap '%s': %s", path, ifname, strerror(err));
}

static int tunsetiff_error(const char *ifname, bool mq, int err, struct errbuf *e)
{
	if (err == EPERM || err == EACCES)
		return errf(e, -err,
			    "cannot attach to tap '%s': permission denied (kvmini needs "
			    "CAP_NET_ADMIN, or a tap created for this user with 'ip tuntap add "
			    "%s mode tap user USER%s')",
			    ifname, ifname, mq ? " multi_queue" : "");
	if (err == EINVAL)
		return errf(e, -err,
			    "cannot attach to tap '%s': the interface exists but is not a tap, or "
			    "is %s while kvmini asked for %s",
			    ifname, mq ? "single-queue" : "multi_queue",
			    mq ? "several queues (ip tuntap add ... multi_queue)" : "one queue");
	if (err == EBUSY)
		return errf(e, -err,
			    "cannot attach to tap '%s': it is already in use (by another program, "
			    "or by another NIC of this VM)",
			    ifname);
	return errf(e, -err, "cannot attach to tap '%s': %s", ifname, strerror(err));
}

static unsigned probe_offloads(int fd)
{
	static const unsigned tries[] = {
	    TUN_F_CSUM,
	    TUN_F_CSUM | TUN_F_TSO4,
	    TUN_F_CSUM | TUN_F_TSO6,
	    TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN,
	};
	unsigned ok = 0;
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)tries[i]) == 0)
			ok |= tries[i];
		else if (i == 0)
			break; /* TSO needs checksum offload */
	}
	ioctl(fd, TUNSETOFFLOAD, 0ul);
	return ok;
}

int tap_open(struct tap *t, const char *ifname, unsigned nqueues, int vnet_hdr_len,
	     struct errbuf *e)
{
	const char *path = tap_device_path();
	bool mq = nqueues > 1;
	int ret;

	memset(t, 0, sizeof(*t));
	for (unsigned i = 0; i < TAP_MAX_QUEUES; i++)
		t->fds[i] = -1;
	if (!ifname || !*ifname || strlen(ifname) >= IFNAMSIZ)
		return errf(e, -EINVAL, "invalid tap name '%s': 1 to %d characters",
			    ifname ? ifname : "", IFNAMSIZ - 1);
	if (nqueues < 1 || nqueues > TAP_MAX_QUEUES)
		return errf(e, -EINVAL, "tap '%s': queues must be 1 to %d (got %u)", ifname,
			    TAP_MAX_QUEUES, nqueues);
	snprintf(t->ifname, sizeof(t->ifname), "%s", ifname);
	for (unsigned q = 0; q < nqueues; q++) {
		int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0) {
			ret = open_error(path, ifname, errno, e);
			goto fail;
		}
		t->fds[q] = fd;
		t->nqueues = q + 1;
		if (q == 0) {
			unsigned features = 0;
			if (ioctl(fd, TUNGETFEATURES, &features) == 0 &&
			    (!(features & IFF_VNET_HDR) || (mq && !(features & IFF_MULTI_QUEUE)))) {
				ret = errf(e, -ENOTSUP, "tap '%s': the host's tun driver lacks %s",
					   ifname,
					   !(features & IFF_VNET_HDR) ? "IFF_VNET_HDR"
								      : "IFF_MULTI_QUEUE");
				goto fail;
			}
		}
		struct ifreq ifr;
		memset(&ifr, 0, sizeof(ifr));
		ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (mq ? IFF_MULTI_QUEUE : 0);
		memcpy(ifr.ifr_name, t->ifname, sizeof(t->ifname));
		if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
			ret = tunsetiff_error(ifname, mq, errno, e);
			goto fail;
		}
		if (ioctl(fd, TUNSETVNETHDRSZ, &vnet_hdr_len) < 0) {
			ret = errf(e, -errno, "tap '%s': cannot set a %d-byte vnet header: %s",
				   ifname, vnet_hdr_len, strerror(errno));
			goto fail;
		}
		if (q == 0)
			t->offloads = probe_offloads(fd);
	}
	return 0;
fail:
	tap_close(t);
	return ret;
}

int tap_set_offload(struct tap *t, unsigned flags, struct errbuf *e)
{
	flags &= t->offloads;
	for (unsigned q = 0; q < t->nqueues; q++)
		if (ioctl(t->fds[q], TUNSETOFFLOAD, (unsigned long)flags) < 0)
			return errf(e, -errno, "tap '%s': cannot set offloads 0x%x: %s", t->ifname,
				    flags, strerror(errno));
	return 0;
}

int tap_set_active_queues(struct tap *t, unsigned n, struct errbuf *e)
{
	if (t->nqueues <= 1)
		return 0;
	for (unsigned q = 0; q < t->nqueues; q++) {
		struct ifreq ifr;
		memset(&ifr, 0, sizeof(ifr));
		ifr.ifr_flags = q < n ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
		/* EINVAL: already in that state. */
		if (ioctl(t->fds[q], TUNSETQUEUE, &ifr) < 0 && errno != EINVAL)
			return errf(e, -errno, "tap '%s': cannot %s queue %u: %s", t->ifname,
				    q < n ? "attach" : "detach", q, strerror(errno));
	}
	return 0;
}

void tap_close(struct tap *t)
{
	for (unsigned q = 0; q < TAP_MAX_QUEUES; q++) {
		if (t->fds[q] >= 0)
			close(t->fds[q]);
		t->fds[q] = -1;
	}
	t->nqueues = 0;
}
