/* The disk options: kvmini's --disk and QEMU's -drive / -device virtio-blk-pci, checked
 * and turned into one form, a -device virtio-blk,drive=ID entry in cfg->devices (no
 * transport suffix: --virtio-transport chooses) naming an if=none -drive in cfg->drives, which the
 * virtio wiring creates like any -device (the device, virtio/blk.c, reads the same keys again).
 * Nothing here opens the file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define BLK_MAX_QUEUES 64 /* VIRTIO_MAX_QUEUES */
#define BLK_SERIAL_MAX 20 /* VIRTIO_BLK_ID_BYTES */

#define DERR(e, ...) errf((e), -EINVAL, __VA_ARGS__)

bool config_is_blk_driver(const char *driver)
{
	return !strcmp(driver, "virtio-blk") || !strcmp(driver, "virtio-blk-pci") ||
	       !strcmp(driver, "virtio-blk-device");
}

/* PATH with its commas doubled, for a keyed option value. */
static char *escape_commas(const char *s)
{
	size_t n = strlen(s), extra = 0;
	for (size_t i = 0; i < n; i++)
		extra += s[i] == ',';
	char *out = malloc(n + extra + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		*o++ = s[i];
		if (s[i] == ',')
			*o++ = ',';
	}
	*o = '\0';
	return out;
}

/* An id no -drive has: disk0, disk1, ... */
static void free_drive_id(const struct vm_config *cfg, char *buf, size_t len)
{
	for (unsigned i = 0;; i++) {
		snprintf(buf, len, "disk%u", i);
		if (!keyed_list_find(&cfg->drives, buf))
			return;
	}
}

int config_add_disk(struct vm_config *cfg, const char *spec, struct errbuf *e)
{
	struct keyed_opts o;
	bool ro;
	uint64_t queues;
	int r = keyed_parse("-disk", spec, &o, e);
	char idbuf[32], *path = NULL, *drive = NULL, *dev = NULL;

	if (r)
		return r;
	if (!o.type || !*o.type) {
		r = DERR(e,
			 "invalid --disk '%s': the image's path comes first (--disk PATH[,ro]...)",
			 spec);
		goto out;
	}
	const char *cache = keyed_get(&o, "cache");
	if ((r = keyed_get_bool(&o, "ro", false, &ro, e)) ||
	    (r = keyed_get_u64(&o, "queues", 1, BLK_MAX_QUEUES, &queues, e)) ||
	    (r = keyed_check_used(&o, "ro, id, cache, queues", e)))
		goto out;
	if (cache && strcmp(cache, "none") && strcmp(cache, "writeback")) {
		r = DERR(e, "invalid --disk '%s': cache='%s' (kvmini knows none and writeback)",
			 spec, cache);
		goto out;
	}
	if (queues == 0) {
		r = DERR(e, "invalid --disk '%s': queues must be at least 1", spec);
		goto out;
	}
	if (o.id && keyed_list_find(&cfg->drives, o.id)) {
		r = DERR(e, "invalid --disk '%s': id '%s' is already used by another disk", spec,
			 o.id);
		goto out;
	}
	if (o.id)
		snprintf(idbuf, sizeof(idbuf), "%s", o.id);
	if (o.id && strlen(o.id) >= sizeof(idbuf)) {
		r = DERR(e, "invalid --disk '%s': id '%s' is longer than %zu characters", spec,
			 o.id, sizeof(idbuf) - 1);
		goto out;
	}
	if (!o.id)
		free_drive_id(cfg, idbuf, sizeof(idbuf));
	path = escape_commas(o.type);
	if (!path ||
	    asprintf(&drive, "if=none,id=%s,file=%s,format=raw,readonly=%s%s%s", idbuf, path,
		     ro ? "on" : "off", cache ? ",cache=" : "", cache ? cache : "") < 0 ||
	    asprintf(&dev, "virtio-blk,drive=%s,num-queues=%llu", idbuf,
		     (unsigned long long)queues) < 0) {
		drive = dev = NULL;
		r = errf(e, -ENOMEM, "out of memory");
		goto out;
	}
	if ((r = keyed_list_add(&cfg->drives, "drive", drive, NULL, e)) ||
	    (r = keyed_list_add(&cfg->devices, "device", dev, NULL, e)))
		goto out;
out:
	free(path);
	free(drive);
	free(dev);
	keyed_opts_free(&o);
	return r;
}

/* One -drive: its keys, and whether it is if=virtio (true) or if=none. */
static int check_drive(struct keyed_opts *d, bool *is_virtio, struct errbuf *e)
{
	const char *file = keyed_get(d, "file"), *format = keyed_get(d, "format");
	const char *iface = keyed_get(d, "if"), *cache = keyed_get(d, "cache");
	const char *aio = keyed_get(d, "aio"), *media = keyed_get(d, "media");
	bool ro;
	int r;

	if ((r = keyed_get_bool(d, "readonly", false, &ro, e)) ||
	    (r = keyed_check_used(d, "file, format, if, readonly, cache, aio, media, id", e)))
		return r;
	if (!file || !*file)
		return DERR(e, "invalid -drive '%s': needs file=PATH (kvmini has no empty drives)",
			    d->spec);
	if (format && strcmp(format, "raw"))
		return DERR(e,
			    "invalid -drive '%s': format=%s is not supported (kvmini reads raw "
			    "images only: qemu-img convert -O raw turns one into raw)",
			    d->spec, format);
	/* kvmini's only disk interface is virtio: QEMU's default (ide) would be a lie. */
	if (iface && strcmp(iface, "virtio") && strcmp(iface, "none"))
		return DERR(e, "invalid -drive '%s': if=%s (kvmini has virtio and none)", d->spec,
			    iface);
	if (cache && strcmp(cache, "none") && strcmp(cache, "writeback"))
		return DERR(e, "invalid -drive '%s': cache=%s (kvmini knows none and writeback)",
			    d->spec, cache);
	if (aio && strcmp(aio, "io_uring") && strcmp(aio, "native") && strcmp(aio, "threads"))
		return DERR(e, "invalid -drive '%s': aio=%s (kvmini always uses io_uring)", d->spec,
			    aio);
	if (media && strcmp(media, "disk"))
		return DERR(e, "invalid -drive '%s': media=%s (kvmini has disks only)", d->spec,
			    media);
	*is_virtio = !iface || !strcmp(iface, "virtio");
	return 0;
}

/* A -device virtio-blk-pci entry, once every -drive is known. */
static int check_blk_device(const struct vm_config *cfg, struct keyed_opts *dev,
			    unsigned *drive_index, struct errbuf *e)
{
	const char *drive = keyed_get(dev, "drive"), *serial = keyed_get(dev, "serial");
	uint64_t nq;
	int r;

	if ((r = keyed_get_u64(dev, "num-queues", 1, BLK_MAX_QUEUES, &nq, e)) ||
	    (r = keyed_check_used(dev, "drive, num-queues, serial, vectors", e)))
		return r;
	if (nq == 0)
		return DERR(e, "invalid -device '%s': num-queues must be at least 1", dev->spec);
	if (serial && strlen(serial) > BLK_SERIAL_MAX)
		return DERR(e, "invalid -device '%s': serial is longer than %d bytes", dev->spec,
			    BLK_SERIAL_MAX);
	if (!drive)
		return DERR(e, "invalid -device '%s': needs drive=ID naming a -drive if=none,id=ID",
			    dev->spec);
	struct keyed_opts *d = keyed_list_find(&cfg->drives, drive);
	if (!d)
		return DERR(e, "invalid -device '%s': no -drive has id '%s'", dev->spec, drive);
	*drive_index = (unsigned)(d - cfg->drives.items);
	return 0;
}

int config_finish_disks(struct vm_config *cfg, struct errbuf *e)
{
	unsigned ndrives = cfg->drives.n;
	bool *is_virtio = calloc(ndrives + 1, sizeof(bool));
	unsigned *users = calloc(ndrives + 1, sizeof(unsigned));
	int r = 0;

	if (!is_virtio || !users) {
		r = errf(e, -ENOMEM, "out of memory");
		goto out;
	}
	for (unsigned i = 0; i < ndrives; i++)
		if ((r = check_drive(&cfg->drives.items[i], &is_virtio[i], e)))
			goto out;
	/* Before the if=virtio ones are added, so that they are not counted twice. */
	unsigned ndevices = cfg->devices.n;
	for (unsigned i = 0; i < ndevices; i++) {
		struct keyed_opts *dev = &cfg->devices.items[i];
		unsigned k;
		if (!dev->type || !config_is_blk_driver(dev->type))
			continue;
		if ((r = check_blk_device(cfg, dev, &k, e)))
			goto out;
		if (is_virtio[k]) {
			r = DERR(e,
				 "invalid -device '%s': -drive '%s' is if=virtio, which already "
				 "makes it a device (use if=none with -device)",
				 dev->spec, cfg->drives.items[k].spec);
			goto out;
		}
		if (users[k]++) {
			r = DERR(e,
				 "invalid -device '%s': -drive '%s' is already used by another "
				 "-device",
				 dev->spec, cfg->drives.items[k].id);
			goto out;
		}
	}
	for (unsigned k = 0; k < ndrives; k++) {
		struct keyed_opts *d = &cfg->drives.items[k];
		if (!is_virtio[k] && !users[k]) {
			r = DERR(
			    e,
			    "invalid -drive '%s': if=none, but no -device virtio-blk-pci,drive=%s "
			    "uses it",
			    d->spec, d->id ? d->id : "ID");
			goto out;
		}
		if (!is_virtio[k])
			continue;
		char idbuf[32], *dev;
		if (!d->id) {
			free_drive_id(cfg, idbuf, sizeof(idbuf));
			if (!(d->id = strdup(idbuf))) {
				r = errf(e, -ENOMEM, "out of memory");
				goto out;
			}
		}
		if (asprintf(&dev, "virtio-blk,drive=%s", d->id) < 0) {
			r = errf(e, -ENOMEM, "out of memory");
			goto out;
		}
		r = keyed_list_add(&cfg->devices, "device", dev, NULL, e);
		free(dev);
		if (r)
			goto out;
		/* The entry made from it is checked like a typed one. */
		unsigned unused;
		check_blk_device(cfg, &cfg->devices.items[cfg->devices.n - 1], &unused, NULL);
	}
out:
	free(is_virtio);
	free(users);
	return r;
}
