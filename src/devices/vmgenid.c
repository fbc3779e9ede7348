#include "util/hex.h"
#include "devices/vmgenid.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "util/log.h"

/* Text order of the GUID's bytes: the first three fields are stored little-endian. */
static const uint8_t text_order[VMGENID_SIZE] = {3, 2, 1,  0,  5,  4,  7,  6,
						 8, 9, 10, 11, 12, 13, 14, 15};

int vmgenid_parse(const char *uuid, uint8_t out[VMGENID_SIZE])
{
	uint8_t b[VMGENID_SIZE];
	unsigned n = 0;
	size_t i = 0;
	if (strlen(uuid) != 36)
		return -EINVAL;
	for (; uuid[i]; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (uuid[i] != '-')
				return -EINVAL;
			continue;
		}
		int hi = hex_digit(uuid[i]), lo = hex_digit(uuid[i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		b[n++] = (uint8_t)(hi << 4 | lo);
		i++;
	}
	if (n != VMGENID_SIZE)
		return -EINVAL;
	for (unsigned k = 0; k < VMGENID_SIZE; k++)
		out[text_order[k]] = b[k];
	return 0;
}

void vmgenid_format(const uint8_t guid[VMGENID_SIZE], char out[37])
{
	char *p = out;
	for (unsigned k = 0; k < VMGENID_SIZE; k++) {
		if (k == 4 || k == 6 || k == 8 || k == 10)
			*p++ = '-';
		p += sprintf(p, "%02x", guid[text_order[k]]);
	}
	*p = 0;
}

/* A random version-4 GUID; -errno if the kernel gives no entropy. */
static int random_guid(uint8_t g[VMGENID_SIZE])
{
	size_t got = 0;
	while (got < VMGENID_SIZE) {
		ssize_t r = getrandom(g + got, VMGENID_SIZE - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		got += (size_t)r;
	}
	g[text_order[6]] = (uint8_t)((g[text_order[6]] & 0x0f) | 0x40); /* version 4 */
	g[text_order[8]] = (uint8_t)((g[text_order[8]] & 0x3f) | 0x80); /* RFC 4122 variant */
	return 0;
}

static int publish(struct vmgenid *v)
{
	return guest_mem_write(v->mem, VMGENID_ADDR, v->guid, VMGENID_SIZE);
}

void vmgenid_get(struct vmgenid *v, uint8_t out[VMGENID_SIZE])
{
	pthread_mutex_lock(&v->lock);
	memcpy(out, v->guid, VMGENID_SIZE);
	pthread_mutex_unlock(&v->lock);
}

/* A reset keeps the generation (a reboot is the same VM) and writes the GUID again, in case
 * the guest scribbled over it. */
static void vmgenid_reset(void *dev)
{
	struct vmgenid *v = dev;
	pthread_mutex_lock(&v->lock);
	publish(v);
	pthread_mutex_unlock(&v->lock);
}

static int vmgenid_save(void *dev, struct state_writer *w)
{
	struct vmgenid *v = dev;
	pthread_mutex_lock(&v->lock);
	state_put_bytes(w, v->guid, VMGENID_SIZE);
	pthread_mutex_unlock(&v->lock);
	return 0;
}

/* A restore is a new generation: the saved GUID is the old one (checked for shape only), a
 * fresh one replaces it in guest memory and GPE0 bit 0 tells the guest. The pm device was
 * loaded before (it is earlier in the list), so the GPE lands on its restored enables. */
static int vmgenid_load(void *dev, struct state_reader *r)
{
	struct vmgenid *v = dev;
	uint8_t old[VMGENID_SIZE], fresh[VMGENID_SIZE];
	state_get_bytes(r, old, VMGENID_SIZE);
	if (state_reader_finish(r) < 0)
		return -EINVAL;
	int ret = random_guid(fresh);
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&v->lock);
	memcpy(v->guid, fresh, VMGENID_SIZE);
	v->generations++;
	ret = publish(v);
	pthread_mutex_unlock(&v->lock);
	if (ret < 0)
		return ret;
	char was[37], now[37];
	vmgenid_format(old, was);
	vmgenid_format(fresh, now);
	log_info("vmgenid: restored VM is a new generation: %s (snapshot had %s)", now, was);
	if (v->pm)
		pm_gpe0_raise(v->pm, VMGENID_GPE);
	return 0;
}

static void vmgenid_destroy(void *dev)
{
	struct vmgenid *v = dev;
	pthread_mutex_destroy(&v->lock);
	free(v);
}

const struct device_ops vmgenid_device_ops = {
    .name = "vmgenid",
    .version = 1,
    .reset = vmgenid_reset,
    .save = vmgenid_save,
    .load = vmgenid_load,
    .destroy = vmgenid_destroy,
};

int vmgenid_create(struct device_list *l, const struct guest_mem *mem, struct pm *pm,
		   const uint8_t *guid, struct vmgenid **out)
{
	struct vmgenid *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	int ret = -pthread_mutex_init(&v->lock, NULL);
	if (ret < 0) {
		free(v);
		return ret;
	}
	v->mem = mem;
	v->pm = pm;
	if (guid)
		memcpy(v->guid, guid, VMGENID_SIZE);
	else if ((ret = random_guid(v->guid)) < 0) {
		vmgenid_destroy(v);
		return ret;
	}
	if ((ret = publish(v)) < 0 || (ret = device_list_add(l, &vmgenid_device_ops, v, 0)) < 0) {
		vmgenid_destroy(v);
		return ret;
	}
	if (out)
		*out = v;
	return 0;
}
