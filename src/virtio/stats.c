#include "virtio/stats.h"

#include <string.h>

#include "virtio/blk.h"
#include "virtio/virtio.h"

static void block_stats(struct virtio_dev *d, struct vm_device_stats *o)
{
	struct blk_stats s;
	struct blk_acct a;
	blk_stats(d, &s);
	blk_acct_of(&s, &a);
	const struct vm_stat b[] = {
	    {"rd_bytes", a.rd_bytes},
	    {"wr_bytes", a.wr_bytes},
	    {"unmap_bytes", a.unmap_bytes},
	    {"rd_operations", a.rd_operations},
	    {"wr_operations", a.wr_operations},
	    {"flush_operations", a.flush_operations},
	    {"unmap_operations", a.unmap_operations},
	    {"failed_rd_operations", a.failed_rd_operations},
	    {"failed_wr_operations", a.failed_wr_operations},
	    {"failed_flush_operations", a.failed_flush_operations},
	    {"failed_unmap_operations", a.failed_unmap_operations},
	    {"invalid_rd_operations", a.invalid_rd_operations},
	    {"invalid_wr_operations", a.invalid_wr_operations},
	    {"invalid_flush_operations", a.invalid_flush_operations},
	    {"invalid_unmap_operations", a.invalid_unmap_operations},
	    {"wr_highest_offset", a.wr_highest_offset},
	};
	_Static_assert(sizeof(b) / sizeof(b[0]) <= VM_BLOCK_STATS_MAX, "room for the counters");
	const char *drive = blk_drive_id(d);
	o->drive = drive ? drive : "";
	o->nblock = sizeof(b) / sizeof(b[0]);
	memcpy(o->block, b, sizeof(b));
}

unsigned virtio_collect_stats(const struct device_list *l, struct vm_device_stats *out,
			      unsigned max)
{
	unsigned n = 0;
	for (const struct device *x = l->head; x; x = x->next) {
		struct virtio_dev *d = virtio_dev_of(x);
		if (!d)
			continue;
		if (n < max) {
			struct vm_device_stats *o = &out[n];
			memset(o, 0, sizeof(*o));
			o->name = d->ops->name;
			o->qdev = d->qdev;
			o->transport = d->transport_name;
			o->address = d->address;
			struct virtio_stat st[VM_STATS_MAX];
			o->nstats = virtio_dev_stats(d, st, VM_STATS_MAX);
			for (unsigned i = 0; i < o->nstats; i++)
				o->stats[i] = (struct vm_stat){st[i].name, st[i].value};
			if (d->ops->device_id == VIRTIO_ID_BLOCK)
				block_stats(d, o);
		}
		n++;
	}
	return n;
}
