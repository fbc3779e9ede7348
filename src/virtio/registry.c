/* Every virtio device type kvmini has, by name: the one place that lists them, so that
 * vm.c and the transports find a device from its -device driver name without naming it. */
#include <string.h>

#include "virtio/console.h"
#include "virtio/blk.h"
#include "virtio/net.h"
#include "virtio/virtio.h"

/* Each device file defines its type; add it here. */
extern const struct virtio_dev_type virtio_rng_type;

static const struct virtio_dev_type *const virtio_types[] = {
    &virtio_console_type,
    &virtio_net_type,
    &virtio_rng_type,
    &virtio_blk_type,
};

const struct virtio_dev_type *virtio_find_type(const char *driver)
{
	static const char *const suffixes[] = {"-pci", "-device", ""};
	for (size_t i = 0; i < sizeof(virtio_types) / sizeof(virtio_types[0]); i++) {
		const struct virtio_dev_type *t = virtio_types[i];
		if (!t)
			continue;
		size_t n = strlen(t->name);
		if (strncmp(driver, t->name, n))
			continue;
		for (size_t s = 0; s < sizeof(suffixes) / sizeof(suffixes[0]); s++)
			if (!strcmp(driver + n, suffixes[s]))
				return t;
	}
	return NULL;
}
