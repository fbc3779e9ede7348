/* libFuzzer target for the virtqueue + virtio-blk request path: arbitrary guest memory,
 * ring addresses, queue size and negotiated features, then the device serves the queue
 * (blk_run_queue_once: pop every chain, check it, run its I/O through io_uring on a 64 KiB
 * memfd disk, write statuses, push, interrupt). The sanitizers catch memory errors; the
 * checks abort when the disk changed size (a request past the end must write nothing) or
 * the used ring ran ahead of the available one.
 *
 * Input: [0] feature mask (bit 0 EVENT_IDX, 1 INDIRECT_DESC, 2 FLUSH, 3 DISCARD,
 * 4 WRITE_ZEROES), [1] log2 of the queue size (low 3 bits: 1..128), [2..7] descriptor,
 * avail and used ring offsets (u16 little-endian) into RAM at guest address 0; the rest is
 * the start of that RAM (64 KiB, zero beyond the input). Build and run: fuzz/blk.mk. */
#include <linux/virtio_blk.h>
#include <linux/virtio_ring.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"
#include "virtio/blk.h"
#include "virtio/virtio.h"

#define RAM_SIZE  0x10000u
#define DISK_SIZE 0x10000u

#define check(c)                 \
	do {                     \
		if (!(c))        \
			abort(); \
	} while (0)

static uint8_t ram[RAM_SIZE] __attribute__((aligned(4096)));
static struct guest_mem mem;
static struct virtio_dev *dev;
static int disk_fd = -1;
static unsigned irqs;

static void t_queue(void *t, unsigned q)
{
	irqs++;
}

static void t_config(void *t)
{
}

static const struct virtio_transport_ops t_ops = {t_queue, t_config};

static void setup(void)
{
	char path[64];
	struct errbuf e = {{0}};
	log_set_level(LOG_ERROR);
	check(guest_mem_add_region(&mem, 0, RAM_SIZE, ram) == 0);
	disk_fd = memfd_create("fuzz-blk", 0);
	check(disk_fd >= 0 && ftruncate(disk_fd, DISK_SIZE) == 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", disk_fd);
	struct blk_params p = {.disk = {.path = path}, .serial = "fuzz"};
	if (blk_create(&mem, &p, &dev, &e)) {
		fprintf(stderr, "%s\n", e.msg);
		abort();
	}
	virtio_dev_attach(dev, &t_ops, NULL);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dev)
		setup();
	if (size < 8)
		return 0;
	virtio_dev_reset(dev);
	memset(ram, 0, RAM_SIZE);
	memcpy(ram, data + 8, size - 8 < RAM_SIZE ? size - 8 : RAM_SIZE);

	static const unsigned bits[] = {VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
					VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_DISCARD,
					VIRTIO_BLK_F_WRITE_ZEROES};
	uint64_t want = 1ull << VIRTIO_F_VERSION_1;
	for (unsigned i = 0; i < 5; i++)
		if (data[0] & (1u << i))
			want |= 1ull << bits[i];
	virtio_dev_set_status(dev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	virtio_dev_set_driver_features(dev, want & virtio_dev_offered_features(dev));
	virtio_dev_set_status(dev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				       VIRTIO_CONFIG_S_FEATURES_OK);
	struct virtqueue *vq = &dev->vqs[0];
	if (virtqueue_set_size(vq, 1u << (1 + (data[1] & 7))) < 0)
		return 0;
	virtqueue_set_addrs(vq, get16(data + 2), get16(data + 4), get16(data + 6));
	struct errbuf e = {{0}};
	if (virtqueue_enable(vq, &e) < 0)
		return 0;
	vq->enabled = true;
	check(blk_run_queue_once(dev, 0) == 0);
	check((uint16_t)(vq->last_avail_idx - vq->used_idx) <= vq->size);
	struct stat st;
	check(fstat(disk_fd, &st) == 0 && st.st_size == DISK_SIZE);
	return 0;
}
