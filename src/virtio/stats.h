/* The virtio devices' counters in the monitors' form (struct vm_device_stats of
 * core/control.h): vm.c's device_stats control operation, so that QMP and HMP read them
 * without knowing any device. */
#ifndef KVMINI_VIRTIO_STATS_H
#define KVMINI_VIRTIO_STATS_H

#include "core/control.h"
#include "core/device.h"

/* One entry per virtio device of l, in list order (up to max filled); returns how many
 * virtio devices there are. */
unsigned virtio_collect_stats(const struct device_list *l, struct vm_device_stats *out,
			      unsigned max);

#endif
