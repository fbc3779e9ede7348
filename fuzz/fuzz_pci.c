/* libFuzzer target for the PCI host bridge and the virtio-pci transport: a byte stream of
 * guest accesses (config space through ECAM and the 0xcf8/0xcfc ports, any offset of the
 * virtio BAR, device-side interrupts), each of any width, in any order and state. The
 * sanitizers catch memory errors; the checks abort on a broken invariant (IDs changed,
 * vectors out of range, the BAR mapped where it overlaps another range).
 *
 * Input: records of 8 bytes: [0] low 2 bits the target (0 ECAM, 1 BAR, 2 ports, 3 device),
 * bit 2 write, bits 3-4 log2 of the width, bits 5-7 a sub-choice; [1..2] offset (u16 LE);
 * [3..7] the value. Build and run: see fuzz/pci.mk. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_pci.h>

#include "arch/x86/layout.h"
#include "devices/pci.h"
#include "virtio/pci.h"

#define check(c)                 \
	do {                     \
		if (!(c))        \
			abort(); \
	} while (0)

static uint64_t fz_features(struct virtio_dev *d)
{
	return 1ull << 3;
}

static uint8_t fz_config[8];
static void fz_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	memcpy(data, fz_config + off, len);
}

static void fz_config_write(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len)
{
	memcpy(fz_config + off, data, len);
}

static void fz_notify(struct virtio_dev *d, unsigned q)
{
}

static const struct virtio_dev_ops fz_ops = {
    .name = "fuzz",
    .device_id = VIRTIO_ID_RNG,
    .version = 1,
    .features = fz_features,
    .config_read = fz_config_read,
    .config_write = fz_config_write,
    .queue_notify = fz_notify,
};

static uint8_t ram[1 << 16] __attribute__((aligned(4096)));

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
	struct guest_mem mem = {0};
	struct bus pio, mmio;
	struct device_list list;
	struct pci_host host;
	struct irq_router router;
	struct virtio_pci *vp;
	struct errbuf e;

	guest_mem_add_region(&mem, 0, sizeof(ram), ram);
	bus_init(&pio, "pio");
	bus_init(&mmio, "mmio");
	irq_router_init(&router, -1);
	device_list_init(&list);
	check(pci_host_create(&host, &list, &pio, &mmio, NULL) == 0);
	struct virtio_dev *dev = calloc(1, sizeof(*dev));
	check(virtio_dev_init(dev, &fz_ops, NULL, &mem, 2, 16, sizeof(fz_config)) == 0);
	device_list_add(&list, &virtio_dev_device_ops, dev, 0);
	struct virtio_pci_env env = {.host = &host, .router = &router, .loop = NULL, .vm_fd = -1};
	check(virtio_pci_create(&env, dev, &vp, &e) == 0);
	device_list_add(&list, &virtio_pci_device_ops, vp, 0);
	uint32_t id = pci_cfg_get32(&vp->fn, 0);

	for (size_t at = 0; at + 8 <= size; at += 8) {
		const uint8_t *r = in + at;
		unsigned target = r[0] & 3, len = 1u << ((r[0] >> 3) & 3), sub = r[0] >> 5;
		bool wr = r[0] & 4;
		uint32_t off = (uint32_t)(r[1] | r[2] << 8);
		uint8_t d[8] = {0};
		memcpy(d, r + 3, 5);
		switch (target) {
		case 0:
			off &= 0xfff;
			if (len > 4)
				len = 4;
			if (off + len > 0x1000)
				len = 1;
			if (wr)
				pci_host_ecam(&host, ((uint64_t)(sub & 1 ? 0 : 1) << 15) + off, d,
					      len, true);
			else
				pci_host_ecam(&host, (1ull << 15) + off, d, len, false);
			break;
		case 1:
			virtio_pci_bar_io(vp, off % VIRTIO_PCI_BAR_SIZE, d, len, wr);
			break;
		case 2:
			bus_dispatch(&pio, PCI_CONFIG_ADDRESS_PORT + (sub & 7), d,
				     len > 4 ? 4 : len, wr);
			break;
		case 3:
			if (sub & 1)
				dev->tops->notify_queue(dev->transport, off % 4);
			else if (sub & 2)
				dev->tops->notify_config(dev->transport);
			else if (sub & 4)
				device_list_reset(&list);
			else
				bus_dispatch(&mmio,
					     vp->fn.bars[0].addr + (off % VIRTIO_PCI_BAR_SIZE), d,
					     len, wr);
			break;
		}
		check(pci_cfg_get32(&vp->fn, 0) == id);
		check(vp->msix_config == VIRTIO_MSI_NO_VECTOR || vp->msix_config < vp->nvectors);
		for (unsigned q = 0; q < dev->nqueues; q++)
			check(vp->queue_vector[q] == VIRTIO_MSI_NO_VECTOR ||
			      vp->queue_vector[q] < vp->nvectors);
		check(!vp->fn.bars[0].mapped ||
		      vp->fn.bars[0].addr + VIRTIO_PCI_BAR_SIZE <= X86_PCI_ECAM_BASE ||
		      vp->fn.bars[0].addr >= X86_PCI_ECAM_BASE + X86_PCI_ECAM_SIZE);
	}

	device_list_destroy(&list);
	pci_host_destroy(&host);
	irq_router_destroy(&router);
	bus_destroy(&pio);
	bus_destroy(&mmio);
	guest_mem_destroy(&mem);
	return 0;
}
