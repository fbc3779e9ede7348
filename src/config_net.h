/* The network options (config_net.c): kvmini's --net and QEMU's -nic become the same
 * -netdev tap + -device virtio-net-pci pair in cfg->netdevs and cfg->devices that QEMU's own
 * spelling gives, and one check validates them all at parse time. */
#ifndef KVMINI_CONFIG_NET_H
#define KVMINI_CONFIG_NET_H

#include <stdbool.h>

#include "config.h"

/* --net tap=IFNAME[,mac=XX:XX:XX:XX:XX:XX][,queues=N] */
int config_add_net(struct vm_config *cfg, const char *spec, struct errbuf *e);
/* -nic tap,ifname=IF,script=no,downscript=no[,model=virtio-net-pci][,mac=M][,queues=N]
 * (and -nic none, which adds nothing). */
int config_add_nic(struct vm_config *cfg, const char *spec, struct errbuf *e);
/* Whether a -device driver is virtio-net (virtio-net-pci, virtio-net-device, virtio-net). */
bool config_is_net_device(const char *driver);
/* After parsing: every -netdev is a tap with ifname=, script=no, downscript=no, vhost off
 * and 1..16 queues, used by exactly one virtio-net -device whose netdev= names it and whose
 * mac= is a unicast address. 0 or -EINVAL with one line. */
int config_check_net(struct vm_config *cfg, struct errbuf *e);

#endif
