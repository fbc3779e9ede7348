/* The transport-independent virtio device core: status state machine, feature negotiation,
 * configuration bounds, interrupts through the transport, save/load. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/virtio.h"

struct fake_dev {
	uint8_t config[8];
	unsigned starts, resets, notifies, queue_irqs, config_irqs;
	int start_ret;
};

static uint64_t fake_features(struct virtio_dev *d)
{
	return 1ull << 3; /* some device bit */
}

static void fake_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	struct fake_dev *f = d->priv;
	memcpy(data, f->config + off, len);
}

static void fake_config_write(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len)
{
	struct fake_dev *f = d->priv;
	memcpy(f->config + off, data, len);
}

static int fake_start(struct virtio_dev *d)
{
	struct fake_dev *f = d->priv;
	f->starts++;
	return f->start_ret;
}

static void fake_reset(struct virtio_dev *d)
{
	((struct fake_dev *)d->priv)->resets++;
}

static void fake_notify(struct virtio_dev *d, unsigned q)
{
	((struct fake_dev *)d->priv)->notifies++;
}

static const struct virtio_dev_ops fake_ops = {
    .name = "fake",
    .device_id = 42,
    .version = 1,
    .features = fake_features,
    .config_read = fake_config_read,
    .config_write = fake_config_write,
    .start = fake_start,
    .queue_notify = fake_notify,
    .reset = fake_reset,
};

static void t_notify_queue(void *t, unsigned q)
{
	((struct fake_dev *)t)->queue_irqs++;
}

static void t_notify_config(void *t)
{
	((struct fake_dev *)t)->config_irqs++;
}

static const struct virtio_transport_ops t_ops = {t_notify_queue, t_notify_config};

static uint8_t ram[1 << 16] __attribute__((aligned(4096)));
static struct guest_mem mem;
static struct virtio_dev dev;
static struct fake_dev fake;

static void setup(void)
{
	memset(&mem, 0, sizeof(mem));
	memset(&fake, 0, sizeof(fake));
	cr_assert_eq(guest_mem_add_region(&mem, 0, sizeof(ram), ram), 0);
	cr_assert_eq(virtio_dev_init(&dev, &fake_ops, &fake, &mem, 2, 16, sizeof(fake.config)), 0);
	virtio_dev_attach(&dev, &t_ops, &fake);
}

static void teardown(void)
{
	virtio_dev_destroy(&dev);
	guest_mem_destroy(&mem);
}

TestSuite(virtio, .init = setup, .fini = teardown);

#define S_ACK	    VIRTIO_CONFIG_S_ACKNOWLEDGE
#define S_DRV	    VIRTIO_CONFIG_S_DRIVER
#define S_FEAT	    VIRTIO_CONFIG_S_FEATURES_OK
#define S_OK	    VIRTIO_CONFIG_S_DRIVER_OK
#define S_NEEDS_RST VIRTIO_CONFIG_S_NEEDS_RESET
#define F_V1	    (1ull << VIRTIO_F_VERSION_1)

Test(virtio, offer_includes_version_1)
{
	cr_assert_eq(virtio_dev_offered_features(&dev), F_V1 | (1ull << 3));
}

Test(virtio, negotiation_in_order_starts_the_device)
{
	cr_assert_eq(virtio_dev_set_status(&dev, S_ACK), S_ACK);
	cr_assert_eq(virtio_dev_set_status(&dev, S_ACK | S_DRV), S_ACK | S_DRV);
	virtio_dev_set_driver_features(&dev, F_V1 | (1ull << 3));
	cr_assert_eq(virtio_dev_set_status(&dev, S_ACK | S_DRV | S_FEAT), S_ACK | S_DRV | S_FEAT);
	cr_assert_eq(fake.starts, 0);
	cr_assert_eq(virtio_dev_set_status(&dev, S_ACK | S_DRV | S_FEAT | S_OK),
		     S_ACK | S_DRV | S_FEAT | S_OK);
	cr_assert_eq(fake.starts, 1);
	/* Features are frozen after FEATURES_OK. */
	virtio_dev_set_driver_features(&dev, F_V1);
	cr_assert_eq(dev.driver_features, F_V1 | (1ull << 3));
	cr_assert(virtio_dev_has_feature(&dev, 3));
}

Test(virtio, features_not_offered_or_without_version_1_are_refused)
{
	virtio_dev_set_driver_features(&dev, F_V1 | (1ull << 5));
	cr_assert_eq(virtio_dev_set_status(&dev, S_ACK | S_DRV | S_FEAT) & S_FEAT, 0,
		     "a bit that was not offered");
	virtio_dev_set_driver_features(&dev, 1ull << 3);
	cr_assert_eq(virtio_dev_set_status(&dev, S_ACK | S_DRV | S_FEAT) & S_FEAT, 0,
		     "a legacy driver (no VERSION_1)");
}

Test(virtio, driver_ok_without_features_ok_needs_reset)
{
	uint8_t s = virtio_dev_set_status(&dev, S_ACK | S_DRV | S_OK);
	cr_assert_eq(s & S_OK, 0);
	cr_assert(s & S_NEEDS_RST);
	cr_assert_eq(fake.starts, 0);
}

Test(virtio, a_failing_start_needs_reset)
{
	fake.start_ret = -EIO;
	virtio_dev_set_driver_features(&dev, F_V1);
	uint8_t s = virtio_dev_set_status(&dev, S_ACK | S_DRV | S_FEAT | S_OK);
	cr_assert(s & S_NEEDS_RST);
}

Test(virtio, writing_zero_resets_device_and_queues)
{
	virtio_dev_set_driver_features(&dev, F_V1);
	virtio_dev_set_status(&dev, S_ACK | S_DRV | S_FEAT);
	dev.vqs[1].last_avail_idx = 7;
	cr_assert_eq(virtio_dev_set_status(&dev, 0), 0);
	cr_assert_eq(fake.resets, 1);
	cr_assert_eq(dev.driver_features, 0);
	cr_assert_eq(dev.vqs[1].last_avail_idx, 0);
	cr_assert_eq(atomic_load(&dev.status), 0);
}

Test(virtio, driver_cannot_clear_bits_or_set_needs_reset)
{
	virtio_dev_set_status(&dev, S_ACK | S_DRV);
	cr_assert_eq(virtio_dev_set_status(&dev, S_ACK), S_ACK | S_DRV);
	cr_assert_eq(virtio_dev_set_status(&dev, S_ACK | S_NEEDS_RST) & S_NEEDS_RST, 0);
}

Test(virtio, config_access_is_bounded)
{
	uint8_t b[4] = {1, 2, 3, 4};
	virtio_dev_config_write(&dev, 6, b, 2);
	cr_assert_eq(fake.config[6], 1);
	virtio_dev_config_write(&dev, 7, b, 2); /* runs past the end: ignored */
	cr_assert_eq(fake.config[7], 2);
	virtio_dev_config_write(&dev, 0xffffffffu, b, 4);
	uint8_t r[4] = {9, 9, 9, 9};
	virtio_dev_config_read(&dev, 6, r, 4);
	cr_assert_eq(r[0] | r[1] | r[2] | r[3], 0, "an out-of-range read returns zeros");
	virtio_dev_config_read(&dev, 6, r, 2);
	cr_assert_eq(r[0], 1);
	cr_assert_eq(r[1], 2);
}

Test(virtio, kicks_reach_the_device_only_when_running_and_enabled)
{
	virtio_dev_queue_notify(&dev, 0);
	cr_assert_eq(fake.notifies, 0, "before DRIVER_OK");
	virtio_dev_set_driver_features(&dev, F_V1);
	virtio_dev_set_status(&dev, S_ACK | S_DRV | S_FEAT | S_OK);
	virtio_dev_queue_notify(&dev, 0);
	cr_assert_eq(fake.notifies, 0, "queue not enabled");
	cr_assert_eq(virtqueue_set_size(&dev.vqs[0], 16), 0);
	virtqueue_set_addrs(&dev.vqs[0], 0x1000, 0x2000, 0x3000);
	struct errbuf e;
	cr_assert_eq(virtqueue_enable(&dev.vqs[0], &e), 0, "%s", e.msg);
	virtio_dev_queue_notify(&dev, 0);
	cr_assert_eq(fake.notifies, 1);
	virtio_dev_queue_notify(&dev, 2); /* no such queue */
	virtio_dev_queue_notify(&dev, 1000);
	cr_assert_eq(fake.notifies, 1);
}

Test(virtio, needs_reset_interrupts_once)
{
	virtio_dev_set_driver_features(&dev, F_V1);
	virtio_dev_set_status(&dev, S_ACK | S_DRV | S_FEAT | S_OK);
	virtio_dev_needs_reset(&dev, "test");
	virtio_dev_needs_reset(&dev, "test again");
	cr_assert_eq(fake.config_irqs, 1);
	cr_assert(atomic_load(&dev.status) & S_NEEDS_RST);
	unsigned gen = atomic_load(&dev.config_generation);
	virtio_dev_config_changed(&dev);
	cr_assert_eq(atomic_load(&dev.config_generation), gen + 1);
	cr_assert_eq(fake.config_irqs, 2);
}

Test(virtio, save_load_save_is_identical_and_bad_blobs_are_refused)
{
	virtio_dev_set_driver_features(&dev, F_V1 | (1ull << 3));
	virtio_dev_set_status(&dev, S_ACK | S_DRV | S_FEAT);
	struct device d = {.ops = &virtio_dev_device_ops, .dev = &dev};
	struct state_writer a = {0}, b = {0};
	cr_assert_eq(device_save(&d, &a), 0);
	virtio_dev_set_status(&dev, 0);
	cr_assert_eq(device_load(&d, a.buf, a.len), 0);
	cr_assert_eq(atomic_load(&dev.status), S_ACK | S_DRV | S_FEAT);
	cr_assert_eq(dev.driver_features, F_V1 | (1ull << 3));
	cr_assert_eq(device_save(&d, &b), 0);
	cr_assert_eq(a.len, b.len);
	cr_assert_eq(memcmp(a.buf, b.buf, a.len), 0);
	cr_assert_neq(device_load(&d, a.buf, a.len - 1), 0, "truncated");
	state_writer_free(&a);
	state_writer_free(&b);
}
