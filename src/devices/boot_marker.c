#include "devices/legacy.h"

#include <errno.h>
#include <stdlib.h>

#include <string.h>

#include "util/log.h"

/* Cloud Hypervisor's ranges: 0x40-0x5f kernel, 0x60-0x7f user space. */
#define BOOT_MARKER_FIRST 0x40
#define BOOT_MARKER_LAST  0x7f

static double boot_marker_elapsed_ms(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) * 1e3 +
	       (double)(now.tv_nsec - start->tv_nsec) / 1e6;
}

static void boot_marker_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			   bool is_write)
{
	struct boot_marker *m = opaque;

	if (!is_write) {
		memset(data, 0, len);
		return;
	}
	uint8_t code = data[0];
	/* Linux's io_delay writes 0x80 constantly: filter before taking the lock. */
	if (code < BOOT_MARKER_FIRST || code > BOOT_MARKER_LAST)
		return;
	double ms = boot_marker_elapsed_ms(&m->start);
	pthread_mutex_lock(&m->lock);
	m->last_code = code;
	m->last_ms = ms;
	unsigned n = m->count;
	if (n < BOOT_MARKER_MAX)
		m->count++;
	pthread_mutex_unlock(&m->lock);
	/* WARN so the markers show at the default verbosity; the cap stops a looping guest
	 * from flooding the terminal. */
	if (n < BOOT_MARKER_MAX)
		log_warn("guest boot marker 0x%02x at %.3f ms", code, ms);
	if (n + 1 == BOOT_MARKER_MAX)
		log_warn("boot marker limit (%d) reached: further markers not logged",
			 BOOT_MARKER_MAX);
}

int boot_marker_init(struct boot_marker *m, const struct timespec *start)
{
	memset(m, 0, sizeof(*m));
	if (start)
		m->start = *start;
	else
		clock_gettime(CLOCK_MONOTONIC, &m->start);
	return -pthread_mutex_init(&m->lock, NULL);
}

void boot_marker_destroy(struct boot_marker *m)
{
	pthread_mutex_destroy(&m->lock);
}

int boot_marker_attach(struct boot_marker *m, struct bus *pio)
{
	return bus_register(pio, BOOT_MARKER_PORT, 1, boot_marker_io, m, "boot-marker");
}

static int boot_marker_dev_save(void *dev, struct state_writer *w)
{
	struct boot_marker *m = dev;
	pthread_mutex_lock(&m->lock);
	state_put_u32(w, m->count);
	state_put_u8(w, m->last_code);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int boot_marker_dev_load(void *dev, struct state_reader *r)
{
	struct boot_marker *m = dev;
	uint32_t count = state_get_u32(r);
	uint8_t code = state_get_u8(r);
	if (state_reader_finish(r) < 0 || count > BOOT_MARKER_MAX)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	m->count = count;
	m->last_code = code;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static void boot_marker_dev_destroy(void *dev)
{
	boot_marker_destroy(dev);
	free(dev);
}

/* No reset: the markers of every boot count against one cap, so a guest that reboots in
 * a loop cannot flood the log. */
const struct device_ops boot_marker_device_ops = {
    .name = "boot-marker",
    .version = 1,
    .save = boot_marker_dev_save,
    .load = boot_marker_dev_load,
    .destroy = boot_marker_dev_destroy,
};

int boot_marker_create(struct device_list *l, struct bus *pio, const struct timespec *start)
{
	struct boot_marker *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	int ret = boot_marker_init(m, start);
	if (ret < 0) {
		free(m);
		return ret;
	}
	if ((ret = device_list_add(l, &boot_marker_device_ops, m, 0)) < 0) {
		boot_marker_dev_destroy(m);
		return ret;
	}
	return boot_marker_attach(m, pio);
}
