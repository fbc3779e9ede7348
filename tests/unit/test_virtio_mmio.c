/* The virtio-mmio v2 register file: every register, the initialisation sequence a driver
 * follows, hostile accesses (widths, alignment, selectors out of range, writes in the
 * wrong state), InterruptStatus/InterruptACK and the level of the line, the config
 * space, reset, save/load. No /dev/kvm: the bus is called directly, the irq records. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_ring.h>

#include "virtio/mmio.h"

#define BASE 0xfe000000ull

struct fake_dev {
	uint8_t config[8];
	unsigned starts, resets, notifies[2];
};

static uint64_t fake_features(struct virtio_dev *d)
{
	return (1ull << 3) | (1ull << VIRTIO_RING_F_EVENT_IDX);
}

static void fake_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	memcpy(data, ((struct fake_dev *)d->priv)->config + off, len);
}

static void fake_config_write(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len)
{
	memcpy(((struct fake_dev *)d->priv)->config + off, data, len);
}

static int fake_start(struct virtio_dev *d)
{
	((struct fake_dev *)d->priv)->starts++;
	return 0;
}

static void fake_reset(struct virtio_dev *d)
{
	((struct fake_dev *)d->priv)->resets++;
}

static void fake_notify(struct virtio_dev *d, unsigned q)
{
	((struct fake_dev *)d->priv)->notifies[q]++;
}

static const struct virtio_dev_ops fake_ops = {
    .name = "fake",
    .device_id = 4,
    .version = 1,
    .features = fake_features,
    .config_read = fake_config_read,
    .config_write = fake_config_write,
    .start = fake_start,
    .queue_notify = fake_notify,
    .reset = fake_reset,
};

static uint8_t ram[1 << 16] __attribute__((aligned(4096)));
static struct guest_mem mem;
static struct virtio_dev dev;
static struct fake_dev fake;
static struct bus bus;
static struct virtio_mmio m;

static void setup(void)
{
	memset(&mem, 0, sizeof(mem));
	memset(&fake, 0, sizeof(fake));
	memset(ram, 0, sizeof(ram));
	cr_assert_eq(guest_mem_add_region(&mem, 0, sizeof(ram), ram), 0);
	cr_assert_eq(virtio_dev_init(&dev, &fake_ops, &fake, &mem, 2, 16, sizeof(fake.config)), 0);
	cr_assert_eq(bus_init(&bus, "mmio"), 0);
	struct errbuf e = {{0}};
	cr_assert_eq(virtio_mmio_init(&m, &dev, &bus, BASE, 5, -1, NULL, &e), 0, "%s", e.msg);
}

static void teardown(void)
{
	virtio_mmio_destroy(&m);
	virtio_dev_destroy(&dev);
	bus_destroy(&bus);
}

static uint32_t rd(uint32_t off)
{
	uint8_t b[4] = {0xaa, 0xaa, 0xaa, 0xaa};
	cr_assert(bus_dispatch(&bus, BASE + off, b, 4, false));
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void wr(uint32_t off, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	cr_assert(bus_dispatch(&bus, BASE + off, b, 4, true));
}

/* Rings for queue q of size 16 in ram: desc at 0x1000*(q+1), avail +0x400, used +0x800. */
static void setup_queue(unsigned q)
{
	uint64_t desc = 0x1000ull * (q + 1);
	wr(VIRTIO_MMIO_QUEUE_SEL, q);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 16);
	wr(VIRTIO_MMIO_QUEUE_NUM, 16);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
	wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)desc + 0x400);
	wr(VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
	wr(VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)desc + 0x800);
	wr(VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 1);
}

/* What Linux's virtio_mmio driver does, up to DRIVER_OK. */
static void driver_init(void)
{
	wr(VIRTIO_MMIO_STATUS, 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	uint64_t f = (uint64_t)rd(VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	f |= rd(VIRTIO_MMIO_DEVICE_FEATURES);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(f >> 32));
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)f);
	uint32_t s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
	wr(VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_FEATURES_OK);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK);
	setup_queue(0);
	setup_queue(1);
	wr(VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
}

TestSuite(virtio_mmio, .init = setup, .fini = teardown);

Test(virtio_mmio, identification_registers)
{
	cr_assert_eq(rd(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	cr_assert_eq(rd(VIRTIO_MMIO_VERSION), 2);
	cr_assert_eq(rd(VIRTIO_MMIO_DEVICE_ID), 4);
	cr_assert_eq(rd(VIRTIO_MMIO_VENDOR_ID), VIRTIO_MMIO_KVMINI_VENDOR);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	cr_assert_eq(rd(VIRTIO_MMIO_CONFIG_GENERATION), 0);
	/* No shared memory regions: their length reads as all ones. */
	cr_assert_eq(rd(VIRTIO_MMIO_SHM_LEN_LOW), 0xffffffffu);
	cr_assert_eq(rd(VIRTIO_MMIO_SHM_LEN_HIGH), 0xffffffffu);
	/* Write-only registers and the legacy ones read 0. */
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_NOTIFY), 0);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_ACK), 0);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_PFN), 0);
	cr_assert_eq(rd(VIRTIO_MMIO_GUEST_PAGE_SIZE), 0);
	/* Registers are read-only where the spec says so. */
	wr(VIRTIO_MMIO_MAGIC_VALUE, 0);
	wr(VIRTIO_MMIO_VERSION, 1);
	wr(VIRTIO_MMIO_DEVICE_ID, 9);
	cr_assert_eq(rd(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	cr_assert_eq(rd(VIRTIO_MMIO_VERSION), 2);
	cr_assert_eq(rd(VIRTIO_MMIO_DEVICE_ID), 4);
	cr_assert_eq(m.bad_accesses, 3);
}

Test(virtio_mmio, features_by_selector)
{
	cr_assert_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES), (1u << 3) | (1u << VIRTIO_RING_F_EVENT_IDX));
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	cr_assert_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES_SEL), 1);
	cr_assert_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES), 1u << (VIRTIO_F_VERSION_1 - 32));
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
	cr_assert_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES), 0);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0xffffffffu);
	cr_assert_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES), 0);

	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 1u << (VIRTIO_F_VERSION_1 - 32));
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 1u << 3);
	/* A selector past word 1 is ignored, not wrapped. */
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 2);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffffu);
	cr_assert_eq(dev.driver_features, (1ull << VIRTIO_F_VERSION_1) | (1ull << 3));
	wr(VIRTIO_MMIO_STATUS,
	   VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK);
	/* Frozen after FEATURES_OK. */
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 0);
	cr_assert_eq(dev.driver_features, (1ull << VIRTIO_F_VERSION_1) | (1ull << 3));
}

Test(virtio_mmio, features_without_version_1_refused)
{
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 1u << 3);
	wr(VIRTIO_MMIO_STATUS,
	   VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
	cr_assert_not(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK);
}

Test(virtio_mmio, queue_setup_reaches_the_virtqueue)
{
	driver_init();
	cr_assert_eq(fake.starts, 1);
	struct virtqueue *vq = &dev.vqs[1];
	cr_assert(vq->enabled);
	cr_assert_eq(vq->size, 16);
	cr_assert_eq(vq->desc_gpa, 0x2000);
	cr_assert_eq(vq->avail_gpa, 0x2400);
	cr_assert_eq(vq->used_gpa, 0x2800);
	cr_assert(vq->event_idx);
	/* A notification reaches the queue it names and no other. */
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	cr_assert_eq(fake.notifies[0], 1);
	cr_assert_eq(fake.notifies[1], 2);
	/* One that names no queue is dropped. */
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 2);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0xffffffffu);
	cr_assert_eq(fake.notifies[0] + fake.notifies[1], 3);
}

Test(virtio_mmio, notify_before_driver_ok_ignored)
{
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	cr_assert_eq(fake.notifies[0], 0);
}

Test(virtio_mmio, queue_registers_frozen_while_ready)
{
	driver_init();
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	unsigned bad = m.bad_accesses;
	wr(VIRTIO_MMIO_QUEUE_NUM, 4);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x8000);
	wr(VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 1);
	wr(VIRTIO_MMIO_QUEUE_USED_LOW, 0x9000);
	cr_assert_eq(m.bad_accesses, bad + 4);
	cr_assert_eq(m.queues[0].num, 16);
	cr_assert_eq(m.queues[0].desc, 0x1000);
	cr_assert_eq(dev.vqs[0].size, 16);
	cr_assert_eq(dev.vqs[0].desc_gpa, 0x1000);
	cr_assert_eq(dev.vqs[0].avail_gpa, 0x1400);
}

Test(virtio_mmio, queue_sel_out_of_range)
{
	wr(VIRTIO_MMIO_QUEUE_SEL, 2);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_SEL), 2);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 0, "a queue that does not exist");
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	wr(VIRTIO_MMIO_QUEUE_NUM, 8);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1000);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	wr(VIRTIO_MMIO_QUEUE_SEL, 0xffffffffu);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	cr_assert_eq(m.bad_accesses, 4);
	cr_assert_not(dev.vqs[0].enabled);
	cr_assert_not(dev.vqs[1].enabled);
}

Test(virtio_mmio, bad_queue_size_needs_reset)
{
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(VIRTIO_MMIO_QUEUE_NUM, 12); /* not a power of two */
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1000);
	wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, 0x1400);
	wr(VIRTIO_MMIO_QUEUE_USED_LOW, 0x1800);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	/* Size above QueueNumMax, and rings outside RAM, likewise; after a reset. */
	wr(VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0);
	wr(VIRTIO_MMIO_QUEUE_NUM, 32);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	wr(VIRTIO_MMIO_STATUS, 0);
	wr(VIRTIO_MMIO_QUEUE_NUM, 16);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1000);
	wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, 0x10); /* 64 GiB up: not RAM */
	wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, 0x1400);
	wr(VIRTIO_MMIO_QUEUE_USED_LOW, 0x1800);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

Test(virtio_mmio, interrupt_status_ack_and_line)
{
	driver_init();
	cr_assert_not(atomic_load(&m.irq.level));
	cr_assert_eq(m.irq.gsi, 5);
	dev.tops->notify_queue(dev.transport, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	cr_assert(atomic_load(&m.irq.level));
	virtio_dev_config_changed(&dev);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS),
		     VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG);
	cr_assert_eq(rd(VIRTIO_MMIO_CONFIG_GENERATION), 1);
	cr_assert_eq(atomic_load(&m.irq.raises), 1, "the line stays up: one edge");
	/* Acknowledging one bit keeps the line up; the last one lowers it. */
	wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	cr_assert(atomic_load(&m.irq.level));
	wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	cr_assert_not(atomic_load(&m.irq.level));
	/* A later interrupt is a new edge. */
	dev.tops->notify_queue(dev.transport, 1);
	cr_assert(atomic_load(&m.irq.level));
	cr_assert_eq(atomic_load(&m.irq.raises), 2);
	/* Bits that are not set, or not defined, change nothing. */
	wr(VIRTIO_MMIO_INTERRUPT_ACK, 0xfffffffcu);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	cr_assert(atomic_load(&m.irq.level));
	/* InterruptStatus is read-only. */
	wr(VIRTIO_MMIO_INTERRUPT_STATUS, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	/* A reset clears it and lowers the line. */
	wr(VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	cr_assert_not(atomic_load(&m.irq.level));
}

Test(virtio_mmio, used_buffer_interrupt_through_the_core)
{
	driver_init();
	/* A used element pushed by the device: the core asks the transport to interrupt. */
	virtio_dev_used(&dev, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
}

Test(virtio_mmio, wrong_widths_and_alignment)
{
	uint8_t b[8];
	memset(b, 0x55, sizeof(b));
	cr_assert(bus_dispatch(&bus, BASE + VIRTIO_MMIO_MAGIC_VALUE, b, 1, false));
	cr_assert_eq(b[0], 0);
	memset(b, 0x55, sizeof(b));
	cr_assert(bus_dispatch(&bus, BASE + VIRTIO_MMIO_MAGIC_VALUE, b, 2, false));
	cr_assert_eq(b[0] | b[1], 0);
	memset(b, 0x55, sizeof(b));
	cr_assert(bus_dispatch(&bus, BASE + VIRTIO_MMIO_MAGIC_VALUE, b, 8, false));
	for (int i = 0; i < 8; i++)
		cr_assert_eq(b[i], 0);
	memset(b, 0x55, sizeof(b));
	cr_assert(bus_dispatch(&bus, BASE + VIRTIO_MMIO_MAGIC_VALUE + 1, b, 4, false));
	cr_assert_eq(b[0] | b[1] | b[2] | b[3], 0);
	/* A byte write to Status or a misaligned QueueSel changes nothing. */
	b[0] = VIRTIO_CONFIG_S_ACKNOWLEDGE;
	cr_assert(bus_dispatch(&bus, BASE + VIRTIO_MMIO_STATUS, b, 1, true));
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0);
	memset(b, 1, 4);
	cr_assert(bus_dispatch(&bus, BASE + VIRTIO_MMIO_QUEUE_SEL + 2, b, 4, true));
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_SEL), 0);
	cr_assert_eq(m.bad_accesses, 6);
	/* The end of the window, and an access crossing it. */
	cr_assert(bus_dispatch(&bus, BASE + 0xffc, b, 4, false));
	cr_assert_eq(b[0] | b[1] | b[2] | b[3], 0);
	cr_assert_not(bus_dispatch(&bus, BASE + 0xffe, b, 4, false));
}

Test(virtio_mmio, config_space)
{
	memcpy(fake.config, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
	uint8_t b[8] = {0};
	cr_assert(bus_dispatch(&bus, BASE + VIRTIO_MMIO_CONFIG, b, 1, false));
	cr_assert_eq(b[0], 0x11);
	cr_assert(bus_dispatch(&bus, BASE + VIRTIO_MMIO_CONFIG + 2, b, 2, false));
	cr_assert_eq(b[0], 0x33);
	cr_assert_eq(b[1], 0x44);
	cr_assert_eq(rd(VIRTIO_MMIO_CONFIG + 4), 0x88776655);
	wr(VIRTIO_MMIO_CONFIG, 0xdeadbeef);
	cr_assert_eq(memcmp(fake.config, "\xef\xbe\xad\xde", 4), 0);
	/* Past the device's configuration: reads 0, writes go nowhere. */
	cr_assert_eq(rd(VIRTIO_MMIO_CONFIG + 8), 0);
	cr_assert_eq(rd(VIRTIO_MMIO_CONFIG + 6), 0, "straddles the end");
	wr(VIRTIO_MMIO_CONFIG + 6, 0xffffffff);
	cr_assert_eq(memcmp(fake.config + 4, "\x55\x66\x77\x88", 4), 0);
	cr_assert_eq(rd(0xefc), 0);
}

/* virtio 1.2, 4.2.2.2: configuration fields are read at their width (8, 16, 32 bits; a
 * 64-bit field as 64 or two 32-bit accesses), naturally aligned. Anything else is
 * ignored: reads give 0 and writes change nothing. */
Test(virtio_mmio, config_space_widths_and_alignment)
{
	memcpy(fake.config, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
	uint8_t b[8];
	/* What is allowed: 8 bytes at 0, 4 at 4, 2 at 6, 1 at 7. */
	cr_assert(bus_dispatch(&bus, BASE + VIRTIO_MMIO_CONFIG, b, 8, false));
	cr_assert_eq(memcmp(b, fake.config, 8), 0);
	cr_assert_eq(rd(VIRTIO_MMIO_CONFIG + 4), 0x88776655);
	cr_assert(bus_dispatch(&bus, BASE + VIRTIO_MMIO_CONFIG + 6, b, 2, false));
	cr_assert_eq(b[0] | b[1] << 8, 0x8877);
	cr_assert(bus_dispatch(&bus, BASE + VIRTIO_MMIO_CONFIG + 7, b, 1, false));
	cr_assert_eq(b[0], 0x88);
	cr_assert_eq(m.bad_accesses, 0);
	/* Misaligned 2-, 4- and 8-byte reads, and a 3-byte one: all 0. */
	const struct {
		uint32_t off, len;
	} bad[] = {{1, 2}, {2, 4}, {4, 8}, {0, 3}, {5, 2}};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(b, 0x55, sizeof(b));
		cr_assert(bus_dispatch(&bus, BASE + VIRTIO_MMIO_CONFIG + bad[i].off, b, bad[i].len,
				       false));
		for (unsigned k = 0; k < bad[i].len; k++)
			cr_assert_eq(b[k], 0, "%u-byte read at %u, byte %u", bad[i].len, bad[i].off,
				     k);
	}
	cr_assert_eq(m.bad_accesses, 5);
	/* The same as writes: dropped. */
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(b, 0xee, sizeof(b));
		cr_assert(bus_dispatch(&bus, BASE + VIRTIO_MMIO_CONFIG + bad[i].off, b, bad[i].len,
				       true));
	}
	cr_assert_eq(memcmp(fake.config, "\x11\x22\x33\x44\x55\x66\x77\x88", 8), 0,
		     "no ignored write reached the device");
	cr_assert_eq(m.bad_accesses, 10);
	/* Aligned writes of each width do reach it. */
	b[0] = 0xa1;
	cr_assert(bus_dispatch(&bus, BASE + VIRTIO_MMIO_CONFIG + 1, b, 1, true));
	b[0] = 0xb2, b[1] = 0xb3;
	cr_assert(bus_dispatch(&bus, BASE + VIRTIO_MMIO_CONFIG + 2, b, 2, true));
	memcpy(b, "\xc0\xc1\xc2\xc3\xc4\xc5\xc6\xc7", 8);
	cr_assert(bus_dispatch(&bus, BASE + VIRTIO_MMIO_CONFIG, b, 8, true));
	cr_assert_eq(memcmp(fake.config, "\xc0\xc1\xc2\xc3\xc4\xc5\xc6\xc7", 8), 0);
	cr_assert_eq(m.bad_accesses, 10);
}

/* A guest that keeps making bad accesses gets one warning, not one per access. */
static void setup_redirected(void)
{
	cr_redirect_stderr(); /* the suite's .init (setup) has run already */
}

Test(virtio_mmio, ignored_accesses_are_logged_once, .init = setup_redirected)
{
	uint8_t b[8] = {0};
	for (int i = 0; i < 50; i++) {
		cr_assert(bus_dispatch(&bus, BASE + VIRTIO_MMIO_STATUS, b, 1, true));
		cr_assert(bus_dispatch(&bus, BASE + VIRTIO_MMIO_CONFIG + 1, b, 4, false));
		wr(VIRTIO_MMIO_MAGIC_VALUE, 1); /* read-only */
	}
	cr_assert_eq(m.bad_accesses, 150);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0, "the byte writes to Status were dropped");
	fflush(stderr);
	FILE *f = cr_get_redirected_stderr();
	char text[4096];
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = 0;
	unsigned lines = 0;
	for (const char *p = text; (p = strstr(p, "kvmini: ")); p++)
		lines++;
	cr_assert_eq(lines, 1, "one warning for 150 ignored accesses:\n%s", text);
	cr_assert(strstr(text, "1-byte write at 0x70") && strstr(text, "32 bits wide"), "%s", text);
}

Test(virtio_mmio, reset_by_status_zero)
{
	driver_init();
	wr(VIRTIO_MMIO_QUEUE_SEL, 1);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	unsigned resets = fake.resets;
	wr(VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(fake.resets, resets + 1);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_SEL), 0);
	cr_assert_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES_SEL), 0);
	cr_assert_not(dev.vqs[0].enabled);
	cr_assert_not(dev.vqs[1].enabled);
	cr_assert_eq(m.queues[1].desc, 0);
	cr_assert_eq(dev.driver_features, 0);
	/* The same driver can start over. */
	driver_init();
	cr_assert_eq(fake.starts, 2);
	cr_assert(dev.vqs[1].enabled);
}

Test(virtio_mmio, vm_reset_resets_transport_and_device)
{
	driver_init();
	dev.tops->notify_queue(dev.transport, 0);
	virtio_mmio_reset(&m);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	cr_assert_not(atomic_load(&m.irq.level));
	cr_assert_not(dev.vqs[0].enabled);
}

Test(virtio_mmio, hostile_sequences)
{
	/* DRIVER_OK straight away, queues never set up: the device needs a reset and is
	 * not started; notifies go nowhere. */
	wr(VIRTIO_MMIO_STATUS,
	   VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert_eq(fake.starts, 0);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	cr_assert_eq(fake.notifies[0], 0);
	/* Ready, unready, ready again with other rings in between is allowed while the
	 * queue is down; an unready write to a queue that is not there is ignored. */
	wr(VIRTIO_MMIO_STATUS, 0);
	setup_queue(0);
	wr(VIRTIO_MMIO_QUEUE_READY, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x3000);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	cr_assert_eq(dev.vqs[0].desc_gpa, 0x3000);
	/* Every offset, width and value pattern: nothing crashes. */
	for (uint32_t off = 0; off < VIRTIO_MMIO_WINDOW; off += 1) {
		for (uint32_t len = 1; len <= 8; len *= 2) {
			if (off + len > VIRTIO_MMIO_WINDOW)
				continue;
			uint8_t b[8];
			memset(b, (uint8_t)(off * 7 + len), sizeof(b));
			bus_dispatch(&bus, BASE + off, b, len, (off + len) & 1);
		}
	}
	wr(VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0);
	cr_assert_eq(rd(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
}

Test(virtio_mmio, save_load_round_trip)
{
	driver_init();
	dev.tops->notify_queue(dev.transport, 0);
	wr(VIRTIO_MMIO_QUEUE_SEL, 1);
	struct state_writer w = {0}, wd = {0};
	cr_assert_eq(virtio_dev_device_ops.save(&dev, &wd), 0);
	cr_assert_eq(virtio_mmio_device_ops.save(&m, &w), 0);
	virtio_mmio_reset(&m);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0);
	struct state_reader rd_ = {.buf = wd.buf, .len = wd.len};
	cr_assert_eq(virtio_dev_device_ops.load(&dev, &rd_), 0);
	struct state_reader r = {.buf = w.buf, .len = w.len};
	cr_assert_eq(virtio_mmio_device_ops.load(&m, &r), 0);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_DRIVER_OK);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_SEL), 1);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 1);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	cr_assert(atomic_load(&m.irq.level));
	/* A truncated blob is refused. */
	struct state_reader shortr = {.buf = w.buf, .len = 10};
	cr_assert_lt(virtio_mmio_device_ops.load(&m, &shortr), 0);
	state_writer_free(&w);
	state_writer_free(&wd);
}

Test(virtio_mmio, cmdline_and_gsis)
{
	char buf[64];
	virtio_mmio_cmdline(buf, sizeof(buf), 0xfe001000, 6);
	cr_assert_str_eq(buf, "virtio_mmio.device=4K@0xfe001000:6");
	/* No GSI a legacy device uses (PIT 0, i8042 1, cascade 2, serial 3/4, RTC 8, SCI 9),
	 * and no two devices share one. */
	for (unsigned i = 0; i < VIRTIO_MMIO_MAX_DEVICES; i++) {
		unsigned g = virtio_mmio_gsi(i);
		cr_assert(g >= 5 && g != 8 && g != 9 && g < 24, "gsi %u", g);
		for (unsigned j = 0; j < i; j++)
			cr_assert_neq(g, virtio_mmio_gsi(j));
	}
}

Test(virtio_mmio, cmdline_extend_skips_what_the_user_named)
{
	struct virtio_mmio_layout l = {.n = 2, .base = {0xfe000000, 0xfe001000}, .gsi = {5, 6}};
	char *s = virtio_mmio_cmdline_extend("console=hvc0", &l);
	cr_assert_str_eq(s, "console=hvc0 virtio_mmio.device=4K@0xfe000000:5 "
			    "virtio_mmio.device=4K@0xfe001000:6");
	free(s);
	s = virtio_mmio_cmdline_extend("virtio_mmio.device=4K@0xfe001000:7", &l);
	cr_assert_str_eq(s,
			 "virtio_mmio.device=4K@0xfe001000:7 virtio_mmio.device=4K@0xfe000000:5");
	free(s);
	s = virtio_mmio_cmdline_extend("", &l);
	cr_assert_str_eq(s,
			 "virtio_mmio.device=4K@0xfe000000:5 virtio_mmio.device=4K@0xfe001000:6");
	free(s);
}

Test(virtio_mmio, create_hands_out_windows_in_order)
{
	struct virtio_mmio_layout l = {0};
	struct virtio_dev d2;
	struct errbuf e = {{0}};
	cr_assert_eq(virtio_dev_init(&d2, &fake_ops, &fake, &mem, 1, 8, 0), 0);
	struct virtio_mmio *t;
	/* Window 0 is taken by the fixture's device on this bus: the layout says 0 is free,
	 * so the bus refuses the overlap and nothing is handed out. */
	cr_assert_lt(virtio_mmio_create(&l, &d2, &bus, -1, NULL, &t, &e), 0);
	cr_assert_eq(l.n, 0);
	l.n = 1;
	cr_assert_eq(virtio_mmio_create(&l, &d2, &bus, -1, NULL, &t, &e), 0, "%s", e.msg);
	cr_assert_eq(l.n, 2);
	cr_assert_eq(l.base[1], 0xfe001000);
	cr_assert_eq(l.gsi[1], 6);
	uint8_t b[4];
	cr_assert(bus_dispatch(&bus, 0xfe001000 + VIRTIO_MMIO_DEVICE_ID, b, 4, false));
	cr_assert_eq(b[0], 4);
	virtio_mmio_device_ops.destroy(t);
	cr_assert_not(bus_dispatch(&bus, 0xfe001000, b, 4, false));
	virtio_dev_destroy(&d2);
	l.n = VIRTIO_MMIO_MAX_DEVICES;
	cr_assert_eq(virtio_mmio_create(&l, &d2, &bus, -1, NULL, &t, &e), -ENOSPC);
}
