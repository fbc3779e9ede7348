/* libFuzzer target for the virtio-mmio register file (src/virtio/mmio.c) over the virtio
 * core and the virtqueues: a guest's arbitrary sequence of register reads and writes of
 * any width and offset in the 4 KiB window, with the device sending used-buffer and
 * configuration interrupts in between and popping/pushing whatever the queues hold. The
 * sanitizers catch memory errors; the checks abort on a broken invariant: MagicValue and
 * Version never change, InterruptStatus holds only the two defined bits, the line is up
 * exactly while InterruptStatus is non-zero, a queue is ready only with a valid size.
 *
 * Input: a list of 8-byte operations {op, len, offset u16, value u32} (little-endian):
 * op % 4 == 0 read, 1 write, 2 the device pops and pushes every queue, 3 the device sends
 * an interrupt (value bit 0: config change, else used buffer); len % 4 picks 1, 2, 4, 8
 * bytes; offset % 4096. RAM is 64 KiB at guest address 0, zero at the start. Build and
 * run: see fuzz/mmio.mk. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/mmio.h"

#define RAM_SIZE 0x10000u
#define BASE	 0xfe000000ull

#define check(c)                 \
	do {                     \
		if (!(c))        \
			abort(); \
	} while (0)

static uint8_t ram[RAM_SIZE] __attribute__((aligned(4096)));
static struct vq_request req;

static uint64_t f_features(struct virtio_dev *d)
{
	return (1ull << 1) | (1ull << 28) | (1ull << 29);
}

static uint8_t f_config[16];

static void f_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	memcpy(data, f_config + off, len);
}

static void f_config_write(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len)
{
	memcpy(f_config + off, data, len);
}

static const struct virtio_dev_ops f_ops = {
    .name = "fuzz",
    .device_id = 4,
    .version = 1,
    .features = f_features,
    .config_read = f_config_read,
    .config_write = f_config_write,
};

static void serve_queues(struct virtio_dev *d)
{
	if (!(atomic_load(&d->status) & VIRTIO_CONFIG_S_DRIVER_OK))
		return;
	for (unsigned q = 0; q < d->nqueues; q++) {
		struct virtqueue *vq = &d->vqs[q];
		for (int n = 0; n < 8; n++) {
			int r = virtqueue_pop(vq, &req);
			if (r < 0) {
				virtio_dev_needs_reset(d, vq->why.msg);
				break;
			}
			if (r == 0)
				break;
			static const uint8_t fill[64] = {0xa5};
			size_t w = virtqueue_req_write(vq, &req, 0, fill, sizeof(fill));
			virtqueue_push(vq, req.head, (uint32_t)w);
			virtio_dev_used(d, q);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guest_mem mem;
	static struct bus bus;
	struct virtio_dev dev;
	struct virtio_mmio m;
	struct errbuf e;
	memset(ram, 0, sizeof(ram));
	memset(&mem, 0, sizeof(mem));
	check(guest_mem_add_region(&mem, 0, RAM_SIZE, ram) == 0);
	check(bus_init(&bus, "mmio") == 0);
	check(virtio_dev_init(&dev, &f_ops, NULL, &mem, 2, 64, sizeof(f_config)) == 0);
	check(virtio_mmio_init(&m, &dev, &bus, BASE, 5, -1, NULL, &e) == 0);

	for (size_t i = 0; i + 8 <= size && i < 8 * 4096; i += 8) {
		const uint8_t *op = data + i;
		uint32_t len = 1u << (op[1] % 4);
		uint32_t off = (uint32_t)(op[2] | op[3] << 8) % VIRTIO_MMIO_WINDOW;
		uint32_t v = (uint32_t)op[4] | (uint32_t)op[5] << 8 | (uint32_t)op[6] << 16 |
			     (uint32_t)op[7] << 24;
		uint8_t buf[8] = {0};
		switch (op[0] % 4) {
		case 0:
			bus_dispatch(&bus, BASE + off, buf, len, false);
			break;
		case 1:
			memcpy(buf, &v, 4);
			memcpy(buf + 4, &v, 4);
			bus_dispatch(&bus, BASE + off, buf, len, true);
			break;
		case 2:
			serve_queues(&dev);
			break;
		case 3:
			if (v & 1)
				virtio_dev_config_changed(&dev);
			else if (dev.tops)
				dev.tops->notify_queue(dev.transport, v % 2);
			break;
		}
		uint8_t r[4];
		check(bus_dispatch(&bus, BASE + VIRTIO_MMIO_MAGIC_VALUE, r, 4, false));
		check(!memcmp(r, "virt", 4));
		check(bus_dispatch(&bus, BASE + VIRTIO_MMIO_VERSION, r, 4, false));
		check(r[0] == 2 && !r[1] && !r[2] && !r[3]);
		check(bus_dispatch(&bus, BASE + VIRTIO_MMIO_INTERRUPT_STATUS, r, 4, false));
		check(!(r[0] & ~3) && !r[1] && !r[2] && !r[3]);
		check(atomic_load(&m.irq.level) == (r[0] != 0));
		for (unsigned q = 0; q < dev.nqueues; q++) {
			const struct virtqueue *vq = &dev.vqs[q];
			if (vq->enabled)
				check(vq->size && !(vq->size & (vq->size - 1)) &&
				      vq->size <= vq->max_size);
		}
	}
	virtio_mmio_destroy(&m);
	virtio_dev_destroy(&dev);
	bus_destroy(&bus);
	return 0;
}
