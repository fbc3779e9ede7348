/* virtio-console: drives hvc0 (a virtio console port) from ring 3 with polling.
 *
 * Finds the console (virtio=mmio[@ADDR] on the command line for virtio-mmio, else PCI), and
 * for MMIO reads MagicValue, Version and DeviceID itself. Negotiates VERSION_1, sets up the
 * receive (0) and transmit (1) queues, keeps a receive buffer posted, writes a greeting
 * and "virtio-console: ready" to the port, then echoes one line of input back as
 * "hvc0 echo: LINE".
 *
 * Expected output on the serial port (the kit's printf):
 *   virtio-console: mmio 0xfe000000 magic 0x74726976 version 2 device 3
 *   virtio-console: greeting sent
 *   virtio-console: echoed N bytes
 *   virtio-console: OK
 * and on the port (the backend the test reads):
 *   hvc0: hello from the guest
 *   virtio-console: ready
 *   hvc0 echo: LINE
 * Exit: power-off; on failure "virtio-console: FAIL <why>" and debug-exit 11 (kvmini
 * exits 23). */
#include "io.h"
#include "kit.h"
#include "pci.h"
#include "virtio.h"

#define TIMEOUT (30 * TSC_HZ_MAX)

static const char *cmdline;
static struct virtio_dev dev;
static struct virtq rxq, txq;
static uint8_t *rxbuf;

static uint64_t failed(const char *what)
{
	printf("virtio-console: FAIL %s: %s\n", what, dev.err);
	return 11;
}

static int port_write(const char *s, unsigned n)
{
	uint8_t *buf = virtio_alloc(n, 16);
	if (!buf) {
		snprintf(dev.err, sizeof(dev.err), "pool used up");
		return -1;
	}
	memcpy(buf, s, n);
	struct virtq_buf b = {buf, n};
	int head = virtq_add(&txq, &b, 1, 0);
	if (head < 0) {
		snprintf(dev.err, sizeof(dev.err), "transmit queue full");
		return -1;
	}
	virtq_kick(&txq);
	uint32_t len;
	int id = virtq_wait(&txq, TIMEOUT, &len);
	if (id != head) {
		snprintf(dev.err, sizeof(dev.err), "transmit: used id %d for head %d", id, head);
		return -1;
	}
	return 0;
}

static int post_rx(void)
{
	struct virtq_buf b = {rxbuf, 64};
	if (virtq_add(&rxq, &b, 0, 1) < 0) {
		snprintf(dev.err, sizeof(dev.err), "receive queue full");
		return -1;
	}
	virtq_kick(&rxq);
	return 0;
}

static uint64_t console_main(uint64_t arg)
{
	pci_init(pci_access_from_cmdline(cmdline));
	if (virtio_find(&dev, VIRTIO_ID_CONSOLE, cmdline) < 0)
		return failed("find");
	if (dev.transport == VIRTIO_MMIO)
		printf("virtio-console: mmio 0x%lx magic 0x%x version %u device %u\n", dev.base,
		       mmio_read32(dev.base + VMMIO_MAGIC), mmio_read32(dev.base + VMMIO_VERSION),
		       mmio_read32(dev.base + VMMIO_DEVICE_ID));
	else
		printf("virtio-console: pci %02x:%02x.%x device %u\n", PCI_BUS(dev.bdf),
		       PCI_DEV(dev.bdf), PCI_FN(dev.bdf), dev.device_id);
	if (virtio_negotiate(&dev, 0, VIRTIO_F_VERSION_1, NULL) < 0)
		return failed("negotiate");
	if (virtq_setup(&dev, &rxq, 0, 0, VIRTIO_NO_VECTOR) < 0 ||
	    virtq_setup(&dev, &txq, 1, 0, VIRTIO_NO_VECTOR) < 0)
		return failed("queue");
	virtio_driver_ok(&dev);
	rxbuf = virtio_alloc(64, 64);
	if (!rxbuf || post_rx() < 0)
		return failed("receive buffer");
	static const char hello[] = "hvc0: hello from the guest\nvirtio-console: ready\n";
	if (port_write(hello, sizeof(hello) - 1) < 0)
		return failed("write");
	puts("virtio-console: greeting sent");

	static char line[128];
	unsigned n = 0;
	while (n < sizeof(line) - 1 && (n == 0 || line[n - 1] != '\n')) {
		uint32_t len;
		if (virtq_wait(&rxq, TIMEOUT, &len) < 0)
			return failed("read");
		for (uint32_t i = 0; i < len && n < sizeof(line) - 1; i++)
			line[n++] = (char)rxbuf[i];
		if (post_rx() < 0)
			return failed("receive buffer");
	}
	static char reply[160];
	static const char prefix[] = "hvc0 echo: ";
	memcpy(reply, prefix, sizeof(prefix) - 1);
	memcpy(reply + sizeof(prefix) - 1, line, n);
	if (port_write(reply, (unsigned)(sizeof(prefix) - 1 + n)) < 0)
		return failed("echo");
	printf("virtio-console: echoed %u bytes\n", n);
	uint8_t s = virtio_get_status(&dev);
	if (s & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)) {
		printf("virtio-console: FAIL device status 0x%x\n", s);
		return 11;
	}
	virtio_reset(&dev);
	puts("virtio-console: OK");
	return 0;
}

int guest_main(const struct boot_params *bp)
{
	cmdline = bp_cmdline(bp);
	return (int)user_call(console_main, 0);
}
