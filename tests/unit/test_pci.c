/* The PCI host bridge and the virtio-pci transport without /dev/kvm: config space through
 * mechanism #1 and ECAM, BAR sizing and placement on a real MMIO bus, the capability list,
 * MSI-X (table, PBA, masking) on recorded irqs, INTx and the ISR, the common configuration,
 * and hostile register sequences. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <linux/virtio_pci.h>

#include "arch/x86/layout.h"
#include "devices/pci.h"
#include "virtio/pci.h"

struct pt_fake {
	uint8_t config[8];
	unsigned notifies[2];
};

static uint64_t pt_features(struct virtio_dev *d)
{
	return 1ull << 3;
}

static void pt_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	memcpy(data, ((struct pt_fake *)d->priv)->config + off, len);
}

static void pt_config_write(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len)
{
	memcpy(((struct pt_fake *)d->priv)->config + off, data, len);
}

static void pt_notify(struct virtio_dev *d, unsigned q)
{
	((struct pt_fake *)d->priv)->notifies[q]++;
}

static const struct virtio_dev_ops pt_ops = {
    .name = "fake",
    .device_id = VIRTIO_ID_RNG,
    .version = 1,
    .features = pt_features,
    .config_read = pt_config_read,
    .config_write = pt_config_write,
    .queue_notify = pt_notify,
};

static uint8_t ram[1 << 16] __attribute__((aligned(4096)));
static struct guest_mem mem;
static struct bus pio, mmio;
static struct device_list list;
static struct pci_host host;
static struct irq_router router;
static struct virtio_dev *dev;
static struct pt_fake fake;
static struct virtio_pci *vp;

#define DEVFN	 (1u << 3)
#define BAR_BASE X86_PCI_MMIO32_START

static void pt_setup(void)
{
	memset(&mem, 0, sizeof(mem));
	memset(&fake, 0, sizeof(fake));
	cr_assert_eq(guest_mem_add_region(&mem, 0, sizeof(ram), ram), 0);
	cr_assert_eq(bus_init(&pio, "pio"), 0);
	cr_assert_eq(bus_init(&mmio, "mmio"), 0);
	cr_assert_eq(irq_router_init(&router, -1), 0);
	device_list_init(&list);
	cr_assert_eq(pci_host_create(&host, &list, &pio, &mmio, NULL), 0);
	dev = calloc(1, sizeof(*dev));
	cr_assert_eq(virtio_dev_init(dev, &pt_ops, &fake, &mem, 2, 16, sizeof(fake.config)), 0);
	cr_assert_eq(device_list_add(&list, &virtio_dev_device_ops, dev, 0), 0);
	struct virtio_pci_env env = {.host = &host, .router = &router, .loop = NULL, .vm_fd = -1};
	struct errbuf e;
	cr_assert_eq(virtio_pci_create(&env, dev, &vp, &e), 0, "%s", e.msg);
	cr_assert_eq(device_list_add(&list, &virtio_pci_device_ops, vp, 0), 0);
}

static void pt_teardown(void)
{
	device_list_destroy(&list);
	pci_host_destroy(&host);
	irq_router_destroy(&router);
	bus_destroy(&pio);
	bus_destroy(&mmio);
	guest_mem_destroy(&mem);
}

TestSuite(pci, .init = pt_setup, .fini = pt_teardown);

/* --- access helpers --------------------------------------------------------------------- */

static uint64_t pt_get(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void pt_put(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t cf8_read(unsigned devfn, uint32_t off, unsigned len)
{
	uint8_t a[4], d[4] = {0};
	pt_put(a, 0x80000000u | devfn << 8 | (off & 0xfc), 4);
	cr_assert(bus_dispatch(&pio, PCI_CONFIG_ADDRESS_PORT, a, 4, true));
	cr_assert(bus_dispatch(&pio, PCI_CONFIG_DATA_PORT + (off & 3), d, len, false));
	return (uint32_t)pt_get(d, len);
}

static void cf8_write(unsigned devfn, uint32_t off, uint32_t v, unsigned len)
{
	uint8_t a[4], d[4];
	pt_put(a, 0x80000000u | devfn << 8 | (off & 0xfc), 4);
	pt_put(d, v, len);
	cr_assert(bus_dispatch(&pio, PCI_CONFIG_ADDRESS_PORT, a, 4, true));
	cr_assert(bus_dispatch(&pio, PCI_CONFIG_DATA_PORT + (off & 3), d, len, true));
}

static uint32_t ecam_read(unsigned devfn, uint32_t off, unsigned len)
{
	uint8_t d[4] = {0};
	cr_assert(
	    bus_dispatch(&mmio, X86_PCI_ECAM_BASE + ((uint64_t)devfn << 12) + off, d, len, false));
	return (uint32_t)pt_get(d, len);
}

static void ecam_write(unsigned devfn, uint32_t off, uint32_t v, unsigned len)
{
	uint8_t d[4];
	pt_put(d, v, len);
	cr_assert(
	    bus_dispatch(&mmio, X86_PCI_ECAM_BASE + ((uint64_t)devfn << 12) + off, d, len, true));
}

static uint64_t bar_read(uint32_t off, unsigned len)
{
	uint8_t d[8] = {0};
	virtio_pci_bar_io(vp, off, d, len, false);
	return pt_get(d, len);
}

static void bar_write(uint32_t off, uint64_t v, unsigned len)
{
	uint8_t d[8];
	pt_put(d, v, len);
	virtio_pci_bar_io(vp, off, d, len, true);
}

#define COMMON(off) (VIRTIO_PCI_COMMON_OFFSET + (off))

/* --- config space ----------------------------------------------------------------------- */

Test(pci, mechanism_1_and_ecam_see_the_same_bytes)
{
	for (unsigned devfn = 0; devfn <= DEVFN; devfn += DEVFN) {
		for (uint32_t off = 0; off < 256; off += 4)
			cr_assert_eq(cf8_read(devfn, off, 4), ecam_read(devfn, off, 4),
				     "devfn %u offset 0x%x", devfn, off);
		for (uint32_t off = 0; off < 256; off++)
			cr_assert_eq(cf8_read(devfn, off, 1), ecam_read(devfn, off, 1));
	}
	cr_assert_eq(ecam_read(0, 0, 4), 0x29c08086u, "host bridge 8086:29c0");
	cr_assert_eq(ecam_read(0, 0x08, 4) >> 8, 0x060000u, "class host bridge");
	cr_assert_eq(ecam_read(DEVFN, 0, 4), 0x10441af4u, "virtio 1af4:1040 + 4");
	cr_assert_eq(ecam_read(DEVFN, 0x08, 1), 1, "modern devices have revision 1");
	cr_assert_eq(ecam_read(DEVFN, 0x2c, 4), 0x00041af4u, "subsystem 1af4:device id");
	/* A write through one mechanism is read back through the other. */
	cf8_write(DEVFN, PCI_REG_INTERRUPT_LINE, 0x0b, 1);
	cr_assert_eq(ecam_read(DEVFN, PCI_REG_INTERRUPT_LINE, 1), 0x0b);
	ecam_write(DEVFN, 0x0c, 0x10, 1);
	cr_assert_eq(cf8_read(DEVFN, 0x0c, 1), 0x10);
	cr_assert_eq(ecam_read(DEVFN, PCI_REG_INTERRUPT_PIN, 1), 1, "INTA");
}

Test(pci, empty_slots_and_disabled_config_address_read_all_ones)
{
	cr_assert_eq(ecam_read(2 << 3, 0, 4), 0xffffffffu);
	cr_assert_eq(ecam_read(DEVFN | 1, 0, 4), 0xffffffffu,
		     "function 1 of a single-function slot");
	cr_assert_eq(cf8_read(5 << 3, 0, 2), 0xffffu);
	/* Bus 1 does not exist (the ECAM window covers bus 0 only). */
	uint8_t a[4], d[4];
	pt_put(a, 0x80010000u, 4);
	cr_assert(bus_dispatch(&pio, PCI_CONFIG_ADDRESS_PORT, a, 4, true));
	cr_assert(bus_dispatch(&pio, PCI_CONFIG_DATA_PORT, d, 4, false));
	cr_assert_eq(pt_get(d, 4), 0xffffffffu);
	/* Enable bit clear: nothing answers. */
	pt_put(a, 0x00000000u, 4);
	cr_assert(bus_dispatch(&pio, PCI_CONFIG_ADDRESS_PORT, a, 4, true));
	cr_assert(bus_dispatch(&pio, PCI_CONFIG_DATA_PORT, d, 4, false));
	cr_assert_eq(pt_get(d, 4), 0xffffffffu);
}

Test(pci, config_address_is_a_dword_register)
{
	uint8_t a[4];
	pt_put(a, 0xfffffffflu, 4);
	cr_assert(bus_dispatch(&pio, PCI_CONFIG_ADDRESS_PORT, a, 4, true));
	cr_assert(bus_dispatch(&pio, PCI_CONFIG_ADDRESS_PORT, a, 4, false));
	cr_assert_eq(pt_get(a, 4), 0x80fffffcu, "reserved bits 30:24 and 1:0 read 0");
	/* A byte write at 0xcf8 or 0xcfb is not CONFIG_ADDRESS. */
	uint8_t b = 0x12;
	cr_assert(bus_dispatch(&pio, PCI_CONFIG_ADDRESS_PORT, &b, 1, true));
	cr_assert(bus_dispatch(&pio, PCI_CONFIG_ADDRESS_PORT + 3, &b, 1, true));
	cr_assert(bus_dispatch(&pio, PCI_CONFIG_ADDRESS_PORT, a, 4, false));
	cr_assert_eq(pt_get(a, 4), 0x80fffffcu);
	/* Linux's probe (pci_check_type1): a byte to 0xcfb, then the dword reads back. */
	pt_put(a, 0x80000000u, 4);
	cr_assert(bus_dispatch(&pio, PCI_CONFIG_ADDRESS_PORT, a, 4, true));
	cr_assert(bus_dispatch(&pio, PCI_CONFIG_ADDRESS_PORT, a, 4, false));
	cr_assert_eq(pt_get(a, 4), 0x80000000u);
}

Test(pci, read_only_ids_and_writable_command)
{
	ecam_write(DEVFN, 0, 0xdeadbeef, 4);
	cr_assert_eq(ecam_read(DEVFN, 0, 4), 0x10441af4u, "IDs are read-only");
	ecam_write(DEVFN, PCI_REG_COMMAND, 0xffff, 2);
	cr_assert_eq(ecam_read(DEVFN, PCI_REG_COMMAND, 2),
		     PCI_CMD_IO | PCI_CMD_MEMORY | PCI_CMD_MASTER | PCI_CMD_INTX_DISABLE);
	cr_assert(ecam_read(DEVFN, PCI_REG_STATUS, 2) & PCI_STATUS_CAP_LIST);
}

Test(pci, bar_sizing_reads_back_the_size_mask)
{
	uint32_t old = ecam_read(DEVFN, PCI_REG_BAR0, 4);
	cr_assert_eq(old, (uint32_t)BAR_BASE, "kvmini placed BAR0 at the window's start");
	ecam_write(DEVFN, PCI_REG_BAR0, 0xffffffffu, 4);
	uint32_t mask = ecam_read(DEVFN, PCI_REG_BAR0, 4);
	cr_assert_eq(mask, ~(VIRTIO_PCI_BAR_SIZE - 1), "32-bit memory BAR of 32 KiB: 0x%x", mask);
	ecam_write(DEVFN, PCI_REG_BAR0, old, 4);
	cr_assert_eq(ecam_read(DEVFN, PCI_REG_BAR0, 4), old);
	/* Unimplemented BARs read 0 whatever is written. */
	ecam_write(DEVFN, PCI_REG_BAR0 + 4, 0xffffffffu, 4);
	cr_assert_eq(ecam_read(DEVFN, PCI_REG_BAR0 + 4, 4), 0);
	/* The host bridge has none. */
	ecam_write(0, PCI_REG_BAR0, 0xffffffffu, 4);
	cr_assert_eq(ecam_read(0, PCI_REG_BAR0, 4), 0);
}

static bool mmio_read16(uint64_t addr, uint16_t *v)
{
	uint8_t d[2];
	bool hit = bus_dispatch(&mmio, addr, d, 2, false);
	*v = (uint16_t)pt_get(d, 2);
	return hit;
}

Test(pci, bar_decodes_only_with_memory_enable_and_follows_moves)
{
	uint16_t v;
	uint64_t numq = BAR_BASE + COMMON(VIRTIO_PCI_COMMON_NUMQ);
	cr_assert_not(mmio_read16(numq, &v), "decode is off until the guest enables it");
	ecam_write(DEVFN, PCI_REG_COMMAND, PCI_CMD_MEMORY, 2);
	cr_assert(mmio_read16(numq, &v));
	cr_assert_eq(v, 2, "num_queues through the BAR");
	/* The guest moves the BAR: the old place goes dark, the new one answers. */
	ecam_write(DEVFN, PCI_REG_BAR0, 0xd0000000u, 4);
	cr_assert_not(mmio_read16(numq, &v));
	cr_assert(mmio_read16(0xd0000000u + COMMON(VIRTIO_PCI_COMMON_NUMQ), &v));
	cr_assert_eq(v, 2);
	/* Sizing with decode on leaves nothing mapped at the all-ones pattern's address
	 * where it would collide (the ECAM window is below it: no crash, no overlap). */
	ecam_write(DEVFN, PCI_REG_BAR0, 0xffffffffu, 4);
	ecam_write(DEVFN, PCI_REG_BAR0, 0xe0000000u, 4); /* onto ECAM: refused, unmapped */
	cr_assert_eq(ecam_read(0, 0, 4), 0x29c08086u, "ECAM still answers");
	ecam_write(DEVFN, PCI_REG_BAR0, 0xd0008000u, 4);
	cr_assert(mmio_read16(0xd0008000u + COMMON(VIRTIO_PCI_COMMON_NUMQ), &v));
	ecam_write(DEVFN, PCI_REG_COMMAND, 0, 2);
	cr_assert_not(mmio_read16(0xd0008000u + COMMON(VIRTIO_PCI_COMMON_NUMQ), &v));
	/* A VM reset puts it back where kvmini placed it, decode off. */
	device_list_reset(&list);
	cr_assert_eq(ecam_read(DEVFN, PCI_REG_BAR0, 4), (uint32_t)BAR_BASE);
	cr_assert_eq(ecam_read(DEVFN, PCI_REG_COMMAND, 2), 0);
}

Test(pci, capability_list_walk)
{
	uint8_t at = (uint8_t)ecam_read(DEVFN, PCI_REG_CAP_PTR, 1);
	unsigned types = 0, n = 0, msix = 0;
	while (at && n < 16) {
		cr_assert_geq(at, 0x40);
		cr_assert_eq(at % 4, 0, "capabilities are dword aligned");
		uint8_t id = (uint8_t)ecam_read(DEVFN, at, 1);
		if (id == PCI_CAP_ID_VNDR) {
			uint8_t type = (uint8_t)ecam_read(DEVFN, at + VIRTIO_PCI_CAP_CFG_TYPE, 1);
			types |= 1u << type;
			cr_assert_eq(ecam_read(DEVFN, at + VIRTIO_PCI_CAP_BAR, 1), 0);
			if (type == VIRTIO_PCI_CAP_NOTIFY_CFG) {
				cr_assert_eq(ecam_read(DEVFN, at + VIRTIO_PCI_CAP_LEN, 1), 20);
				cr_assert_eq(ecam_read(DEVFN, at + 16, 4), 4,
					     "notify_off_multiplier");
				cr_assert_eq(ecam_read(DEVFN, at + VIRTIO_PCI_CAP_LENGTH, 4),
					     2 * 4);
			}
			if (type == VIRTIO_PCI_CAP_COMMON_CFG)
				cr_assert_geq(ecam_read(DEVFN, at + VIRTIO_PCI_CAP_LENGTH, 4),
					      0x38);
		} else if (id == PCI_CAP_ID_MSIX) {
			msix++;
			cr_assert_eq(ecam_read(DEVFN, at + 2, 2) & 0x7ff, 2, "3 vectors (N-1 = 2)");
			cr_assert_eq(ecam_read(DEVFN, at + 4, 4), VIRTIO_PCI_MSIX_TABLE, "BIR 0");
			cr_assert_eq(ecam_read(DEVFN, at + 8, 4), VIRTIO_PCI_MSIX_PBA, "BIR 0");
		}
		at = (uint8_t)ecam_read(DEVFN, at + 1, 1);
		n++;
	}
	cr_assert_eq(types, 1u << VIRTIO_PCI_CAP_COMMON_CFG | 1u << VIRTIO_PCI_CAP_NOTIFY_CFG |
				1u << VIRTIO_PCI_CAP_ISR_CFG | 1u << VIRTIO_PCI_CAP_DEVICE_CFG |
				1u << VIRTIO_PCI_CAP_PCI_CFG);
	cr_assert_eq(msix, 1);
	cr_assert_eq(n, 6);
	/* The list itself is read-only. */
	uint8_t first = (uint8_t)ecam_read(DEVFN, PCI_REG_CAP_PTR, 1);
	ecam_write(DEVFN, first + 1, 0, 1);
	ecam_write(DEVFN, PCI_REG_CAP_PTR, 0, 1);
	cr_assert_eq(ecam_read(DEVFN, PCI_REG_CAP_PTR, 1), first);
	cr_assert_neq(ecam_read(DEVFN, first + 1, 1), 0);
}

/* --- the common configuration ------------------------------------------------------------ */

Test(pci, common_config_registers)
{
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_NUMQ), 2), 2);
	bar_write(COMMON(VIRTIO_PCI_COMMON_DFSELECT), 0, 4);
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_DF), 4), 1u << 3);
	bar_write(COMMON(VIRTIO_PCI_COMMON_DFSELECT), 1, 4);
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_DF), 4), 1, "VERSION_1 is bit 32");
	bar_write(COMMON(VIRTIO_PCI_COMMON_DFSELECT), 7, 4);
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_DF), 4), 0);

	bar_write(COMMON(VIRTIO_PCI_COMMON_STATUS),
		  VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER, 1);
	bar_write(COMMON(VIRTIO_PCI_COMMON_GFSELECT), 0, 4);
	bar_write(COMMON(VIRTIO_PCI_COMMON_GF), 1u << 3, 4);
	bar_write(COMMON(VIRTIO_PCI_COMMON_GFSELECT), 1, 4);
	bar_write(COMMON(VIRTIO_PCI_COMMON_GF), 1, 4);
	cr_assert_eq(dev->driver_features, 1ull << 32 | 1u << 3);
	bar_write(COMMON(VIRTIO_PCI_COMMON_STATUS), VIRTIO_CONFIG_S_FEATURES_OK, 1);
	cr_assert(bar_read(COMMON(VIRTIO_PCI_COMMON_STATUS), 1) & VIRTIO_CONFIG_S_FEATURES_OK);

	/* Queue 1: size, vector, addresses in halves, notify offset, enable. */
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_SELECT), 1, 2);
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_Q_SIZE), 2), 16, "max size offered");
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_SIZE), 8, 2);
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_Q_SIZE), 2), 8);
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_SIZE), 12, 2); /* not a power of two */
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_Q_SIZE), 2), 8);
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_Q_NOFF), 2), 1);
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_MSIX), 1, 2);
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_Q_MSIX), 2), 1);
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_MSIX), 9, 2);
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_Q_MSIX), 2), VIRTIO_MSI_NO_VECTOR,
		     "a vector the function lacks reads back as NO_VECTOR");
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_DESCLO), 0x1000, 4);
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_DESCHI), 0, 4);
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_AVAILLO), 0x2000, 8);
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_USEDLO), 0x3000, 4);
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_Q_DESCLO), 8), 0x1000);
	cr_assert_eq(dev->vqs[1].avail_gpa, 0x2000);
	cr_assert_eq(dev->vqs[1].used_gpa, 0x3000);
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_ENABLE), 1, 2);
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_Q_ENABLE), 2), 1);
	cr_assert(dev->vqs[1].enabled);
	/* An enabled queue keeps its set-up. */
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_DESCLO), 0x5000, 4);
	cr_assert_eq(dev->vqs[1].desc_gpa, 0x1000);

	bar_write(COMMON(VIRTIO_PCI_COMMON_STATUS), VIRTIO_CONFIG_S_DRIVER_OK, 1);
	bar_write(VIRTIO_PCI_NOTIFY_OFFSET + 1 * VIRTIO_PCI_NOTIFY_MULT, 1, 2);
	cr_assert_eq(fake.notifies[1], 1, "the notify address of queue 1 (MMIO fall-back)");
	cr_assert_eq(fake.notifies[0], 0, "queue 0 is not enabled");

	/* Device config, and the generation counter that moves with it. */
	fake.config[2] = 0x5a;
	cr_assert_eq(bar_read(VIRTIO_PCI_DEVICE_OFFSET + 2, 1), 0x5a);
	uint8_t gen = (uint8_t)bar_read(COMMON(VIRTIO_PCI_COMMON_CFGGENERATION), 1);
	virtio_dev_config_changed(dev);
	cr_assert_eq((uint8_t)bar_read(COMMON(VIRTIO_PCI_COMMON_CFGGENERATION), 1),
		     (uint8_t)(gen + 1));

	/* Status 0 resets the device and the transport's selectors and vectors. */
	bar_write(COMMON(VIRTIO_PCI_COMMON_STATUS), 0, 1);
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_STATUS), 1), 0);
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_Q_SELECT), 2), 0);
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_SELECT), 1, 2);
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_Q_MSIX), 2), VIRTIO_MSI_NO_VECTOR);
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_Q_ENABLE), 2), 0);
}

Test(pci, queue_select_out_of_range)
{
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_SELECT), 0xffff, 2);
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_Q_SELECT), 2), 0xffff);
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_Q_SIZE), 2), 0, "no such queue: size 0");
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_SIZE), 4, 2);
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_ENABLE), 1, 2);
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_MSIX), 0, 2);
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_DESCLO), 0x1000, 8);
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_Q_ENABLE), 2), 0);
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_Q_MSIX), 2), VIRTIO_MSI_NO_VECTOR);
	/* Notify addresses past the last queue, and unaligned ones, do nothing. */
	bar_write(VIRTIO_PCI_NOTIFY_OFFSET + 40 * VIRTIO_PCI_NOTIFY_MULT, 0, 2);
	bar_write(VIRTIO_PCI_NOTIFY_OFFSET + 0xffe, 0, 2);
	cr_assert_eq(fake.notifies[0] + fake.notifies[1], 0);
}

/* The access window (VIRTIO_PCI_CAP_PCI_CFG) reaches BAR 0 through config space. */
Test(pci, pci_cfg_access_window)
{
	uint8_t at = vp->cfg_cap;
	uint32_t data = at + offsetof(struct virtio_pci_cfg_cap, pci_cfg_data);
	ecam_write(DEVFN, at + VIRTIO_PCI_CAP_BAR, 0, 1);
	ecam_write(DEVFN, at + VIRTIO_PCI_CAP_OFFSET, COMMON(VIRTIO_PCI_COMMON_NUMQ), 4);
	ecam_write(DEVFN, at + VIRTIO_PCI_CAP_LENGTH, 2, 4);
	cr_assert_eq(ecam_read(DEVFN, data, 4) & 0xffff, 2, "num_queues through the window");
	ecam_write(DEVFN, at + VIRTIO_PCI_CAP_OFFSET, COMMON(VIRTIO_PCI_COMMON_Q_SELECT), 4);
	ecam_write(DEVFN, data, 1, 4);
	cr_assert_eq(bar_read(COMMON(VIRTIO_PCI_COMMON_Q_SELECT), 2), 1, "a write goes through");
	/* A bad length, a misaligned offset or another BAR reach nothing. */
	ecam_write(DEVFN, at + VIRTIO_PCI_CAP_LENGTH, 3, 4);
	cr_assert_eq(ecam_read(DEVFN, data, 4), 0);
	ecam_write(DEVFN, at + VIRTIO_PCI_CAP_LENGTH, 2, 4);
	ecam_write(DEVFN, at + VIRTIO_PCI_CAP_OFFSET, 0x13, 4);
	cr_assert_eq(ecam_read(DEVFN, data, 4), 0);
	ecam_write(DEVFN, at + VIRTIO_PCI_CAP_OFFSET, 0x12, 4);
	ecam_write(DEVFN, at + VIRTIO_PCI_CAP_BAR, 5, 1);
	cr_assert_eq(ecam_read(DEVFN, data, 4), 0);
}

/* --- interrupts --------------------------------------------------------------------------- */

static void msix_enable(bool enable, bool fmask)
{
	uint16_t ctrl = (enable ? 0x8000 : 0) | (fmask ? 0x4000 : 0);
	ecam_write(DEVFN, vp->msix_cap + 2, ctrl, 2);
}

static void msix_entry(unsigned v, uint64_t addr, uint32_t data, bool masked)
{
	uint32_t o = VIRTIO_PCI_MSIX_TABLE + 16 * v;
	bar_write(o, (uint32_t)addr, 4);
	bar_write(o + 4, addr >> 32, 4);
	bar_write(o + 8, data, 4);
	bar_write(o + 12, masked, 4);
}

Test(pci, msix_table_pba_and_masking)
{
	/* Entries start masked (PCI 3.0 6.8.2.9). */
	cr_assert_eq(bar_read(VIRTIO_PCI_MSIX_TABLE + 12, 4), 1);
	msix_entry(0, 0xfee00000, 0x60, false);
	msix_entry(2, 0xfee01000, 0x61, false);
	cr_assert_eq(bar_read(VIRTIO_PCI_MSIX_TABLE + 16 * 2 + 8, 4), 0x61);
	msix_enable(true, false);
	struct kvm_irq_routing_entry rt;
	cr_assert_eq(irq_router_lookup(&router, vp->vec[0].irq.gsi, &rt), 0);
	cr_assert_eq(rt.type, KVM_IRQ_ROUTING_MSI);
	cr_assert_eq(rt.u.msi.address_lo, 0xfee00000);
	cr_assert_eq(rt.u.msi.data, 0x60, "the route follows the table entry");
	cr_assert_gt(router.commits, 0, "committed to KVM");

	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_SELECT), 0, 2);
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_MSIX), 0, 2);
	bar_write(COMMON(VIRTIO_PCI_COMMON_MSIX), 2, 2);
	dev->tops->notify_queue(dev->transport, 0);
	cr_assert_eq(atomic_load(&vp->vec[0].irq.raises), 1, "queue 0 fires vector 0");
	dev->tops->notify_config(dev->transport);
	cr_assert_eq(atomic_load(&vp->vec[2].irq.raises), 1, "config fires vector 2");
	cr_assert_eq(atomic_load(&vp->isr), 0, "no ISR bits with MSI-X on");

	/* A masked entry sets its PBA bit instead, and fires when unmasked. */
	bar_write(VIRTIO_PCI_MSIX_TABLE + 12, 1, 4);
	dev->tops->notify_queue(dev->transport, 0);
	cr_assert_eq(atomic_load(&vp->vec[0].irq.raises), 1);
	cr_assert_eq(bar_read(VIRTIO_PCI_MSIX_PBA, 8), 1, "PBA bit 0 pending");
	bar_write(VIRTIO_PCI_MSIX_PBA, ~0ull, 8); /* read-only */
	cr_assert_eq(bar_read(VIRTIO_PCI_MSIX_PBA, 8), 1);
	bar_write(VIRTIO_PCI_MSIX_TABLE + 12, 0, 4);
	cr_assert_eq(atomic_load(&vp->vec[0].irq.raises), 2, "delivered on unmask");
	cr_assert_eq(bar_read(VIRTIO_PCI_MSIX_PBA, 8), 0);

	/* The function mask does the same for every vector. */
	msix_enable(true, true);
	dev->tops->notify_queue(dev->transport, 0);
	dev->tops->notify_config(dev->transport);
	cr_assert_eq(bar_read(VIRTIO_PCI_MSIX_PBA, 8), 0x5);
	cr_assert_eq(atomic_load(&vp->vec[0].irq.raises), 2);
	msix_enable(true, false);
	cr_assert_eq(atomic_load(&vp->vec[0].irq.raises), 3);
	cr_assert_eq(atomic_load(&vp->vec[2].irq.raises), 2);

	/* NO_VECTOR: nothing at all. */
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_MSIX), VIRTIO_MSI_NO_VECTOR, 2);
	dev->tops->notify_queue(dev->transport, 0);
	cr_assert_eq(atomic_load(&vp->vec[0].irq.raises), 3);
	cr_assert_eq(bar_read(VIRTIO_PCI_MSIX_PBA, 8), 0);

	/* A rewritten entry moves its route. */
	msix_entry(0, 0xfee02000, 0x70, false);
	cr_assert_eq(irq_router_lookup(&router, vp->vec[0].irq.gsi, &rt), 0);
	cr_assert_eq(rt.u.msi.address_lo, 0xfee02000);
	cr_assert_eq(rt.u.msi.data, 0x70);
	/* Table entries beyond the last vector read 0 and ignore writes. */
	bar_write(VIRTIO_PCI_MSIX_TABLE + 16 * 3, 0x1234, 4);
	cr_assert_eq(bar_read(VIRTIO_PCI_MSIX_TABLE + 16 * 3, 4), 0);
}

Test(pci, intx_and_isr_without_msix)
{
	cr_assert_eq(vp->intx.gsi, VIRTIO_PCI_INTX_GSI_BASE + 1, "slot 1: IOAPIC pin 17");
	cr_assert_eq(ecam_read(DEVFN, PCI_REG_INTERRUPT_LINE, 1), VIRTIO_PCI_INTX_GSI_BASE + 1);
	dev->tops->notify_queue(dev->transport, 0);
	cr_assert(atomic_load(&vp->intx.level), "the line is asserted");
	dev->tops->notify_config(dev->transport);
	cr_assert_eq(bar_read(VIRTIO_PCI_ISR_OFFSET, 1), 0x3, "queue and config bits");
	cr_assert_not(atomic_load(&vp->intx.level), "reading the ISR lowers the line");
	cr_assert_eq(bar_read(VIRTIO_PCI_ISR_OFFSET, 1), 0, "and clears it");
	/* INTx disable in the command register keeps the line down. */
	ecam_write(DEVFN, PCI_REG_COMMAND, PCI_CMD_INTX_DISABLE, 2);
	dev->tops->notify_queue(dev->transport, 0);
	cr_assert_not(atomic_load(&vp->intx.level));
	cr_assert_eq(bar_read(VIRTIO_PCI_ISR_OFFSET, 1), 1);
}

/* --- hostile guests ----------------------------------------------------------------------- */

static uint64_t pt_rng = 0x9e3779b97f4a7c15ull;
static uint64_t pt_next(void)
{
	pt_rng ^= pt_rng << 13;
	pt_rng ^= pt_rng >> 7;
	pt_rng ^= pt_rng << 17;
	return pt_rng;
}

/* Any register, any width, any order: config space, the whole BAR, the ports. kvmini
 * must neither crash nor break its own invariants (the sanitizer build catches the rest). */
Test(pci, hostile_register_sequences)
{
	static const unsigned widths[] = {1, 2, 4, 8};
	for (unsigned i = 0; i < 200000; i++) {
		uint64_t r = pt_next();
		unsigned len = widths[r & 3];
		uint64_t v = pt_next();
		uint8_t d[8];
		pt_put(d, v, 8);
		bool wr = (r >> 2) & 1;
		switch ((r >> 3) % 4) {
		case 0: { /* ECAM of the virtio function, mostly the interesting first 256 bytes */
			uint32_t off = (uint32_t)(r >> 8) % (((r >> 5) & 1) ? 0x1000 : 0x100);
			if (off + len > 0x1000)
				len = 1;
			if (!wr || ((r >> 20) & 7)) /* keep the BAR from wandering every step */
				pci_host_cfg_read(&host, 0, DEVFN, off, d, len > 4 ? 4 : len);
			else
				pci_host_cfg_write(&host, 0, DEVFN, off, d, len > 4 ? 4 : len);
			break;
		}
		case 1: { /* the BAR */
			uint32_t off = (uint32_t)(r >> 8) % VIRTIO_PCI_BAR_SIZE;
			if (((r >> 30) & 3) == 0)
				off = COMMON((uint32_t)(r >> 8) % 0x40);
			virtio_pci_bar_io(vp, off, d, len, wr);
			break;
		}
		case 2: /* the config ports, CONFIG_ADDRESS aimed at our slot or another */
			bus_dispatch(&pio, PCI_CONFIG_ADDRESS_PORT + ((r >> 8) & 7), d,
				     len > 4 ? 4 : len, wr);
			break;
		case 3: /* interrupts from the device side */
			if ((r >> 8) & 1)
				dev->tops->notify_queue(dev->transport, (unsigned)(r >> 9) % 4);
			else
				dev->tops->notify_config(dev->transport);
			break;
		}
		cr_assert_leq(vp->msix_config == VIRTIO_MSI_NO_VECTOR || vp->msix_config < 3, 1);
		for (unsigned q = 0; q < 2; q++)
			cr_assert(vp->queue_vector[q] == VIRTIO_MSI_NO_VECTOR ||
				  vp->queue_vector[q] < 3);
		cr_assert_eq(ecam_read(DEVFN, 0, 4), 0x10441af4u);
	}
}

/* Save and load carry the MSI-X table, vectors, selectors and the config space (BARs
 * placed again through the host's write path). */
Test(pci, save_and_load_round_trip)
{
	ecam_write(DEVFN, PCI_REG_BAR0, 0xd0000000u, 4);
	ecam_write(DEVFN, PCI_REG_COMMAND, PCI_CMD_MEMORY, 2);
	msix_entry(1, 0xfee00000, 0x44, false);
	msix_enable(true, false);
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_SELECT), 1, 2);
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_MSIX), 1, 2);
	struct device *d = device_list_find(&list, "virtio-pci", 0);
	cr_assert_not_null(d);
	struct state_writer w = {0};
	cr_assert_eq(device_save(d, &w), 0);
	device_list_reset(&list);
	cr_assert_eq(ecam_read(DEVFN, PCI_REG_BAR0, 4), (uint32_t)BAR_BASE);
	cr_assert_eq(vp->queue_vector[1], VIRTIO_MSI_NO_VECTOR);
	cr_assert_eq(device_load(d, w.buf, w.len), 0);
	cr_assert_eq(ecam_read(DEVFN, PCI_REG_BAR0, 4), 0xd0000000u);
	cr_assert(vp->fn.bars[0].mapped, "the BAR is decoded again");
	cr_assert(vp->msix_enabled);
	cr_assert_eq(vp->queue_vector[1], 1);
	cr_assert_eq(bar_read(VIRTIO_PCI_MSIX_TABLE + 16 + 8, 4), 0x44);
	/* A truncated blob is refused. */
	cr_assert_neq(device_load(d, w.buf, w.len - 3), 0);
	state_writer_free(&w);
}

/* A device whose reset waits for a worker that keeps interrupting (virtio-blk's shape),
 * while another vCPU reads queue registers: the status write that resets must not
 * deadlock against either (lock order: transport, device, interrupt state). */
struct pt_busy {
	pthread_t worker;
	atomic_bool stop;
	struct virtio_dev *d;
};
static struct pt_busy busy;

static void *pt_busy_worker(void *arg)
{
	while (!atomic_load(&busy.stop))
		busy.d->tops->notify_queue(busy.d->transport, 0);
	return NULL;
}

static void pt_busy_reset(struct virtio_dev *d)
{
	/* Long enough for the reader to be waiting for the device lock this reset holds. */
	usleep(20000);
	atomic_store(&busy.stop, true);
	pthread_join(busy.worker, NULL);
}

static atomic_bool reader_stop;
static void *pt_reader(void *arg)
{
	while (!atomic_load(&reader_stop))
		bar_read(COMMON(VIRTIO_PCI_COMMON_Q_SIZE), 2);
	return NULL;
}

static void *pt_status_writer(void *arg)
{
	bar_write(COMMON(VIRTIO_PCI_COMMON_STATUS), 0, 1);
	return NULL;
}

Test(pci, reset_joining_an_interrupting_worker_does_not_deadlock)
{
	static struct virtio_dev_ops ops;
	ops = pt_ops;
	ops.reset = pt_busy_reset;
	dev->ops = &ops;
	busy.d = dev;
	atomic_store(&busy.stop, false);
	msix_entry(0, 0xfee00000, 0x60, false);
	msix_enable(true, false);
	bar_write(COMMON(VIRTIO_PCI_COMMON_Q_MSIX), 0, 2);
	pthread_t reader, writer;
	cr_assert_eq(pthread_create(&busy.worker, NULL, pt_busy_worker, NULL), 0);
	cr_assert_eq(pthread_create(&reader, NULL, pt_reader, NULL), 0);
	cr_assert_eq(pthread_create(&writer, NULL, pt_status_writer, NULL), 0);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	cr_assert_eq(pthread_timedjoin_np(writer, NULL, &until), 0, "the reset deadlocked");
	atomic_store(&reader_stop, true);
	pthread_join(reader, NULL);
	cr_assert_gt(atomic_load(&vp->vec[0].irq.raises), 0);
	dev->ops = &pt_ops;
}

/* --- vectors=N ----------------------------------------------------------------------------- */

#define DEVFN2 (2u << 3)

/* A second function (slot 2) with vectors=n, in the list so the teardown frees it. */
static struct virtio_pci *pt_second(unsigned n, struct virtio_dev **dout)
{
	struct virtio_dev *d = calloc(1, sizeof(*d));
	cr_assert_eq(virtio_dev_init(d, &pt_ops, &fake, &mem, 2, 16, sizeof(fake.config)), 0);
	cr_assert_eq(device_list_add(&list, &virtio_dev_device_ops, d, 1), 0);
	struct virtio_pci_env env = {
	    .host = &host, .router = &router, .vm_fd = -1, .vectors_given = true, .vectors = n};
	struct virtio_pci *t;
	struct errbuf e;
	cr_assert_eq(virtio_pci_create(&env, d, &t, &e), 0, "%s", e.msg);
	cr_assert_eq(device_list_add(&list, &virtio_pci_device_ops, t, 1), 0);
	cr_assert_eq(t->fn.devfn, DEVFN2);
	*dout = d;
	return t;
}

static uint64_t bar2_read(struct virtio_pci *t, uint32_t off, unsigned len)
{
	uint8_t d[8] = {0};
	virtio_pci_bar_io(t, off, d, len, false);
	return pt_get(d, len);
}

static void bar2_write(struct virtio_pci *t, uint32_t off, uint64_t v, unsigned len)
{
	uint8_t d[8];
	pt_put(d, v, len);
	virtio_pci_bar_io(t, off, d, len, true);
}

/* The capability ids of devfn in list order. */
static unsigned pt_cap_ids(unsigned devfn, uint8_t *ids, unsigned max)
{
	unsigned n = 0;
	for (uint8_t at = (uint8_t)ecam_read(devfn, PCI_REG_CAP_PTR, 1); at && n < max;
	     at = (uint8_t)ecam_read(devfn, at + 1u, 1))
		ids[n++] = (uint8_t)ecam_read(devfn, at, 1);
	return n;
}

Test(pci, vectors_0_has_no_msix_capability_and_uses_intx)
{
	struct virtio_dev *d;
	struct virtio_pci *t = pt_second(0, &d);
	uint8_t ids[16];
	unsigned n = pt_cap_ids(DEVFN2, ids, 16);
	cr_assert_eq(n, 5, "common, notify, ISR, device, access window");
	for (unsigned i = 0; i < n; i++)
		cr_assert_eq(ids[i], PCI_CAP_ID_VNDR, "capability %u is 0x%x", i, ids[i]);
	cr_assert_eq(pt_cap_ids(DEVFN, ids, 16), 6, "the default function keeps MSI-X");
	/* No vector can be chosen; the table reads 0 and ignores writes. */
	bar2_write(t, COMMON(VIRTIO_PCI_COMMON_MSIX), 0, 2);
	cr_assert_eq(bar2_read(t, COMMON(VIRTIO_PCI_COMMON_MSIX), 2), VIRTIO_MSI_NO_VECTOR);
	bar2_write(t, COMMON(VIRTIO_PCI_COMMON_Q_MSIX), 0, 2);
	cr_assert_eq(bar2_read(t, COMMON(VIRTIO_PCI_COMMON_Q_MSIX), 2), VIRTIO_MSI_NO_VECTOR);
	bar2_write(t, VIRTIO_PCI_MSIX_TABLE, 0xfee00000, 4);
	cr_assert_eq(bar2_read(t, VIRTIO_PCI_MSIX_TABLE, 4), 0);
	/* Writes near config offset 0 (where a capability at 0 would have its control word)
	 * do not turn MSI-X on. */
	ecam_write(DEVFN2, 0, 0xffffffff, 4);
	cr_assert_not(t->msix_enabled);
	/* Interrupts go through the ISR and INTx. */
	d->tops->notify_queue(d->transport, 0);
	cr_assert(atomic_load(&t->intx.level), "the line is asserted");
	cr_assert_eq(bar2_read(t, VIRTIO_PCI_ISR_OFFSET, 1), 0x1);
	cr_assert_not(atomic_load(&t->intx.level));
}

Test(pci, vectors_n_sizes_the_table)
{
	struct virtio_dev *d;
	struct virtio_pci *t = pt_second(5, &d);
	uint8_t ids[16];
	unsigned n = pt_cap_ids(DEVFN2, ids, 16);
	cr_assert_eq(ids[n - 1], PCI_CAP_ID_MSIX);
	cr_assert_eq(t->nvectors, 5);
	/* Table size N - 1 in the message control word. */
	uint8_t at = (uint8_t)ecam_read(DEVFN2, PCI_REG_CAP_PTR, 1);
	while (ecam_read(DEVFN2, at, 1) != PCI_CAP_ID_MSIX)
		at = (uint8_t)ecam_read(DEVFN2, at + 1u, 1);
	cr_assert_eq(ecam_read(DEVFN2, at + 2u, 2) & 0x7ff, 4);
	bar2_write(t, COMMON(VIRTIO_PCI_COMMON_Q_MSIX), 4, 2);
	cr_assert_eq(bar2_read(t, COMMON(VIRTIO_PCI_COMMON_Q_MSIX), 2), 4, "the last vector");
	bar2_write(t, COMMON(VIRTIO_PCI_COMMON_Q_MSIX), 5, 2);
	cr_assert_eq(bar2_read(t, COMMON(VIRTIO_PCI_COMMON_Q_MSIX), 2), VIRTIO_MSI_NO_VECTOR);
}

Test(pci, vectors_past_the_table_refused)
{
	struct virtio_dev *d2 = calloc(1, sizeof(*d2));
	cr_assert_eq(virtio_dev_init(d2, &pt_ops, &fake, &mem, 2, 16, sizeof(fake.config)), 0);
	struct virtio_pci_env env = {.host = &host,
				     .router = &router,
				     .vm_fd = -1,
				     .vectors_given = true,
				     .vectors = VIRTIO_PCI_MAX_VECTORS + 1};
	struct virtio_pci *t;
	struct errbuf e = {{0}};
	cr_assert_eq(virtio_pci_create(&env, d2, &t, &e), -EINVAL);
	cr_assert(strstr(e.msg, "vectors=257, at most 256"), "%s", e.msg);
	virtio_dev_destroy(d2);
	free(d2);
}
