/* virtio-rng: drives a virtio entropy device from ring 3 with polling.
 *
 * Finds the device (PCI bus 0, vendor 0x1af4 device 0x1044; or virtio-mmio with
 * `virtio=mmio@ADDR` or `virtio=mmio` to scan the 32 slots at 0xfe000000), negotiates
 * VIRTIO_F_VERSION_1, sets up queue 0 without an interrupt vector, then twice offers a
 * 64-byte device-writable buffer and polls the used ring (bounded by the TSC) until the
 * device has filled all 64 bytes (it may return fewer per request). Both blocks must be
 * non-zero and differ.
 *
 * Expected output:
 *   virtio-rng: pci 00:01.0 device 4                  (or "virtio-rng: mmio 0xfe000000 device 4")
 *   virtio-rng: features device 0x... accepted 0x100000000
 *   virtio-rng: queue 0 size 256
 *   virtio-rng: read 1: 64 bytes in N requests: 0123456789abcdef...
 *   virtio-rng: read 2: 64 bytes in N requests: ...
 *   virtio-rng: isr 0x1                                (informational: the ISR byte after)
 *   virtio-rng: notifications 2, suppressed 0          (informational)
 *   virtio-rng: OK
 * Options: pci=ecam|cf8 (configuration mechanism), virtio=mmio[@ADDR]; `indirect`
 * requires VIRTIO_F_INDIRECT_DESC and sends each request as an indirect table of two
 * writable halves; `event_idx` requires VIRTIO_F_EVENT_IDX; `hold` spins after OK instead
 * of powering off (for a monitor to look at the device).
 * Exit: power-off (kvmini exits 0); on failure "virtio-rng: FAIL <why>" and debug-exit 11
 * (kvmini exits 23). */
#include "kit.h"
#include "pci.h"
#include "virtio.h"

#define BLOCK	    64
#define TIMEOUT	    (2 * TSC_HZ_MAX) /* at least 2 s per request */
#define MAX_REQUEST 64

static const char *cmdline;
static bool use_indirect;
static struct virtio_dev dev;
static struct virtq q;

static uint64_t failed(const char *what)
{
	printf("virtio-rng: FAIL %s: %s\n", what, dev.err);
	return 11;
}

/* Fills out[0..BLOCK) with entropy; returns the number of requests, 0 on failure. */
static unsigned read_block(uint8_t *out)
{
	uint8_t *buf = virtio_alloc(BLOCK, 64);
	if (!buf) {
		snprintf(dev.err, sizeof(dev.err), "pool used up");
		return 0;
	}
	unsigned got = 0, requests = 0;
	while (got < BLOCK && requests < MAX_REQUEST) {
		struct virtq_buf b = {buf, BLOCK - got};
		memset(buf, 0, BLOCK);
		int head;
		if (use_indirect && BLOCK - got >= 2) {
			uint32_t half = (BLOCK - got) / 2;
			struct virtq_buf two[2] = {{buf, half}, {buf + half, BLOCK - got - half}};
			head = virtq_add_indirect(&q, two, 0, 2);
		} else {
			head = virtq_add(&q, &b, 0, 1);
		}
		if (head < 0) {
			snprintf(dev.err, sizeof(dev.err), "queue full");
			return 0;
		}
		virtq_kick(&q);
		uint32_t len;
		int id = virtq_wait(&q, TIMEOUT, &len);
		if (id < 0)
			return 0;
		if (id != head || len > BLOCK - got) {
			snprintf(dev.err, sizeof(dev.err),
				 "used entry id %d len %u for head %d (%u asked)", id, len, head,
				 BLOCK - got);
			return 0;
		}
		memcpy(out + got, buf, len);
		got += len;
		requests++;
	}
	if (got < BLOCK) {
		snprintf(dev.err, sizeof(dev.err), "only %u bytes in %u requests", got, requests);
		return 0;
	}
	return requests;
}

static bool all_zero(const uint8_t *p, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static uint64_t rng_main(uint64_t arg)
{
	pci_init(pci_access_from_cmdline(cmdline));
	if (virtio_find(&dev, VIRTIO_ID_RNG, cmdline) < 0)
		return failed("find");
	if (dev.transport == VIRTIO_PCI)
		printf("virtio-rng: pci %02x:%02x.%x device %u\n", PCI_BUS(dev.bdf),
		       PCI_DEV(dev.bdf), PCI_FN(dev.bdf), dev.device_id);
	else
		printf("virtio-rng: mmio 0x%lx device %u\n", dev.base, dev.device_id);
	uint64_t got, required = VIRTIO_F_VERSION_1;
	use_indirect = cmdline_has_word(cmdline, "indirect");
	if (use_indirect)
		required |= VIRTIO_F_INDIRECT_DESC;
	if (cmdline_has_word(cmdline, "event_idx"))
		required |= VIRTIO_F_EVENT_IDX;
	if (virtio_negotiate(&dev, 0, required, &got) < 0)
		return failed("negotiate");
	printf("virtio-rng: features device 0x%lx accepted 0x%lx\n", dev.device_features, got);
	if (virtq_setup(&dev, &q, 0, 0, VIRTIO_NO_VECTOR) < 0)
		return failed("queue");
	printf("virtio-rng: queue 0 size %u\n", q.size);
	virtio_driver_ok(&dev);

	static uint8_t blocks[2][BLOCK];
	for (unsigned r = 0; r < 2; r++) {
		unsigned requests = read_block(blocks[r]);
		if (!requests) {
			printf("virtio-rng: FAIL read %u: %s\n", r + 1, dev.err);
			return 11;
		}
		printf("virtio-rng: read %u: %u bytes in %u requests: ", r + 1, BLOCK, requests);
		for (unsigned i = 0; i < 16; i++)
			printf("%02x", blocks[r][i]);
		puts("...");
	}
	printf("virtio-rng: isr 0x%x\n", virtio_isr(&dev));
	printf("virtio-rng: notifications %lu, suppressed %lu\n", q.kicks, q.kicks_suppressed);
	if (all_zero(blocks[0], BLOCK) || all_zero(blocks[1], BLOCK)) {
		puts("virtio-rng: FAIL a block is all zero");
		return 11;
	}
	if (!memcmp(blocks[0], blocks[1], BLOCK)) {
		puts("virtio-rng: FAIL the two blocks are the same");
		return 11;
	}
	uint8_t s = virtio_get_status(&dev);
	if (s & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)) {
		printf("virtio-rng: FAIL device status 0x%x\n", s);
		return 11;
	}
	virtio_reset(&dev);
	puts("virtio-rng: OK");
	/* hold: stay up (spinning in ring 3) for a monitor to look at the device. */
	if (cmdline_has_word(cmdline, "hold"))
		for (;;)
			__asm__ volatile("pause");
	return 0;
}

int guest_main(const struct boot_params *bp)
{
	cmdline = bp_cmdline(bp);
	return (int)user_call(rng_main, 0);
}
