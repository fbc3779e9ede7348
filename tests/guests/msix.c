/* msix: an MSI-X vector of a virtio-pci device reaches the guest's IDT handler.
 *
 * Finds the virtio-rng PCI function, programs its MSI-X table entry 0 with address
 * 0xfee00000 | (this CPU's APIC ID << 12) and data MSIX_VECTOR (0x60), enables MSI-X with
 * the function unmasked, negotiates VIRTIO_F_VERSION_1 and sets up queue 0 with MSI-X
 * vector 0 (config changes: no vector). It then offers one 16-byte writable buffer,
 * notifies, and waits with interrupts enabled (bounded by the TSC) until the handler has
 * run; the handler counts and EOIs. The used ring must hold the buffer too. All in ring 0
 * (a few hundred instructions of set-up; the wait spins with interrupts on).
 *
 * Expected output:
 *   msix: pci 00:01.0 table entries 2 at 0xc0001000, vector 0x60 -> apic 0
 *   msix: interrupts 1, used len 16
 *   msix: OK
 * Options: pci=ecam|cf8.
 * Exit: power-off (kvmini exits 0); on failure "msix: FAIL <why>" and debug-exit 12 (kvmini
 * exits 25). */
#include "kit.h"
#include "pci.h"
#include "virtio.h"

#define MSIX_VECTOR 0x60
#define TIMEOUT	    (2 * TSC_HZ_MAX)

static volatile uint32_t interrupts;
static struct virtio_dev dev;
static struct virtq q;

static void msix_irq(struct intr_frame *f)
{
	interrupts++;
	lapic_eoi();
}

int guest_main(const struct boot_params *bp)
{
	const char *cmdline = bp_cmdline(bp);
	pci_init(pci_access_from_cmdline(cmdline));
	if (virtio_find(&dev, VIRTIO_ID_RNG, NULL) < 0) {
		printf("msix: FAIL find: %s\n", dev.err);
		return 12;
	}
	struct pci_msix m;
	if (!pci_msix_find(dev.bdf, &m) || !m.table) {
		printf("msix: FAIL %02x:%02x.%x has no usable MSI-X capability\n", PCI_BUS(dev.bdf),
		       PCI_DEV(dev.bdf), PCI_FN(dev.bdf));
		return 12;
	}
	/* a BIOS (QEMU's SeaBIOS) may leave the PIT ticking on the PIC at vector 8: off */
	pic_remap(PIC_VECTOR_BASE);
	pic_set_mask(0xffff);
	lapic_enable();
	idt_set_handler(MSIX_VECTOR, msix_irq);
	uint8_t apic = (uint8_t)lapic_id();
	printf("msix: pci %02x:%02x.%x table entries %u at 0x%lx, vector 0x%x -> apic %u\n",
	       PCI_BUS(dev.bdf), PCI_DEV(dev.bdf), PCI_FN(dev.bdf), m.entries, m.table, MSIX_VECTOR,
	       apic);
	pci_msix_set(&m, 0, apic, MSIX_VECTOR, false);
	pci_msix_enable(&m, true, false);

	if (virtio_negotiate(&dev, 0, VIRTIO_F_VERSION_1, NULL) < 0 ||
	    virtq_setup(&dev, &q, 0, 0, 0) < 0) {
		printf("msix: FAIL set-up: %s\n", dev.err);
		return 12;
	}
	virtio_pci_set_config_vector(&dev, VIRTIO_NO_VECTOR);
	virtio_driver_ok(&dev);

	static uint8_t buf[16];
	struct virtq_buf b = {buf, sizeof(buf)};
	virtq_add(&q, &b, 0, 1);
	virtq_kick(&q);
	uint64_t t0 = rdtsc();
	sti();
	while (!interrupts && rdtsc() - t0 < TIMEOUT)
		cpu_relax();
	cli();
	uint32_t len = 0;
	int id = virtq_poll(&q, &len);
	printf("msix: interrupts %u, used len %u\n", interrupts, id >= 0 ? len : 0);
	if (!interrupts) {
		uint32_t e[4];
		pci_msix_read_entry(&m, 0, e);
		printf("msix: FAIL no interrupt on vector 0x%x (entry 0x%x 0x%x 0x%x 0x%x, pending "
		       "%u, used entry %s)\n",
		       MSIX_VECTOR, e[0], e[1], e[2], e[3], pci_msix_pending(&m, 0),
		       id >= 0 ? "present" : "absent");
		return 12;
	}
	if (id < 0) {
		puts("msix: FAIL the interrupt came but the used ring is empty");
		return 12;
	}
	pci_msix_enable(&m, false, false);
	virtio_reset(&dev);
	puts("msix: OK");
	return 0;
}
