/* pci-probe: enumerates PCI bus 0 from ring 3 and prints what it finds, one line per
 * function, so tests can assert on config space, BAR sizing, capabilities and MSI-X.
 *
 * Expected output (a virtio-rng-pci function at 00:01.0 as an example):
 *   pci-probe: access ecam at 0xe0000000 (acpi mcfg)    ("default" without an MCFG table;
 *                                                        "access cf8" with pci=cf8 or no ECAM)
 *   pci 00:00.0 8086:29c0 class=060000 rev=00 hdr=00 sub=0000:0000 caps=none
 *   pci 00:01.0 1af4:1044 class=00ff00 rev=01 hdr=00 sub=1af4:1100 bar1=mem32:0xc0000000+0x1000
 * bar4=mem64p:0xc0004000+0x4000 caps=11,09,09,09,09,09 msix=2 vcap 00:01.0 @0x50 type=1 bar=4
 * off=0x0 len=0x38 msix 00:01.0 entries=2 table=bar1+0x0 pba=bar1+0x800 enabled=0 fmask=0
 *   pci-probe: 2 functions
 *   pci-probe: OK
 * Line formats (fields separated by one space):
 *   pci BB:DD.F VVVV:DDDD class=CCCCCC rev=RR hdr=HH sub=VVVV:SSSS [barN=TYPE:ADDR+SIZE]...
 *       caps=ID,ID,...|none [msix=N]
 *     TYPE is io, mem32, mem64 (a trailing p: prefetchable); ADDR and SIZE in 0x hex, ADDR as
 *     programmed (0 if nothing placed it); unimplemented BARs are left out. caps are the
 *     capability ids in list order (two hex digits). msix=N is the MSI-X table size.
 *   vcap BB:DD.F @0xOFF type=T bar=B off=0xO len=0xL     per vendor capability (id 0x09),
 *     read as a virtio-pci capability (cfg_type, bar, offset, length)
 *   msix BB:DD.F entries=N table=barB+0xO pba=barB+0xO enabled=E fmask=M
 * Every BAR is checked to read back its old value after sizing.
 * Options: pci=ecam or pci=cf8 forces the configuration mechanism.
 * Exit: power-off (kvmini exits 0) if at least one function answered and every BAR was
 * restored; otherwise "pci-probe: FAIL <why>" and debug-exit 10 (kvmini exits 21). */
#include "kit.h"
#include "pci.h"

#define MAX_FUNCS 64

static const char *cmdline;

static void print_func(const struct pci_func *f, unsigned *bad)
{
	char line[512];
	size_t n = 0;
	uint16_t bdf = f->bdf;
	n += snprintf(line + n, sizeof(line) - n,
		      "pci %02x:%02x.%x %04x:%04x class=%06x rev=%02x hdr=%02x sub=%04x:%04x",
		      PCI_BUS(bdf), PCI_DEV(bdf), PCI_FN(bdf), f->vendor, f->device, f->class_code,
		      f->revision, f->header_type, f->subsys_vendor, f->subsys_id);
	unsigned nbars = f->header_type == 0 ? 6 : f->header_type == 1 ? 2 : 0;
	for (unsigned i = 0; i < nbars;) {
		uint32_t before = pci_read32(bdf, PCI_BAR0 + 4 * i);
		struct pci_bar b;
		unsigned used = pci_bar_probe(bdf, i, &b);
		if (pci_read32(bdf, PCI_BAR0 + 4 * i) != before) {
			printf("pci-probe: FAIL %02x:%02x.%x bar%u reads 0x%x after sizing, was "
			       "0x%x\n",
			       PCI_BUS(bdf), PCI_DEV(bdf), PCI_FN(bdf), i,
			       pci_read32(bdf, PCI_BAR0 + 4 * i), before);
			(*bad)++;
		}
		if (b.type != PCI_BAR_NONE && n < sizeof(line))
			n += snprintf(line + n, sizeof(line) - n, " bar%u=%s%s:0x%lx+0x%lx", i,
				      pci_bar_type_name(b.type), b.prefetchable ? "p" : "", b.addr,
				      b.size);
		i += used ? used : 1;
	}
	if (n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - n, " caps=");
	uint8_t off = pci_cap_first(bdf);
	if (!off && n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - n, "none");
	for (unsigned k = 0; off && k < 48; k++, off = pci_cap_next(bdf, off)) {
		if (n < sizeof(line))
			n += snprintf(line + n, sizeof(line) - n, "%s%02x", k ? "," : "",
				      pci_read8(bdf, off));
	}
	struct pci_msix m;
	bool has_msix = pci_msix_find(bdf, &m);
	if (has_msix && n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - n, " msix=%u", m.entries);
	puts(line);

	off = pci_cap_find(bdf, PCI_CAP_ID_VENDOR, 0);
	for (unsigned k = 0; off && k < 48; k++) {
		uint8_t c[16];
		pci_cap_read(bdf, off, c, sizeof(c));
		uint32_t o, l;
		memcpy(&o, c + 8, 4);
		memcpy(&l, c + 12, 4);
		printf("vcap %02x:%02x.%x @0x%02x type=%u bar=%u off=0x%x len=0x%x\n", PCI_BUS(bdf),
		       PCI_DEV(bdf), PCI_FN(bdf), off, c[3], c[4], o, l);
		off = pci_cap_find_after(bdf, PCI_CAP_ID_VENDOR, off);
	}
	if (has_msix) {
		uint16_t ctrl = pci_read16(bdf, m.cap + 2);
		printf("msix %02x:%02x.%x entries=%u table=bar%u+0x%x pba=bar%u+0x%x enabled=%u "
		       "fmask=%u\n",
		       PCI_BUS(bdf), PCI_DEV(bdf), PCI_FN(bdf), m.entries, m.table_bir, m.table_off,
		       m.pba_bir, m.pba_off, !!(ctrl & PCI_MSIX_CTRL_ENABLE),
		       !!(ctrl & PCI_MSIX_CTRL_FMASK));
	}
}

static uint64_t probe(uint64_t arg)
{
	enum pci_access a = pci_init(pci_access_from_cmdline(cmdline));
	bool mcfg;
	uint64_t ecam = pci_ecam_base(&mcfg);
	if (a == PCI_ACCESS_ECAM)
		printf("pci-probe: access ecam at 0x%lx (%s)\n", ecam,
		       mcfg ? "acpi mcfg" : "default");
	else
		printf("pci-probe: access %s\n", pci_access_name(a));
	if (a == PCI_ACCESS_NONE) {
		puts("pci-probe: FAIL no configuration mechanism answers at 00:00.0");
		return 10;
	}
	static struct pci_func funcs[MAX_FUNCS];
	unsigned n = pci_enumerate(funcs, MAX_FUNCS), bad = 0;
	for (unsigned i = 0; i < n && i < MAX_FUNCS; i++)
		print_func(&funcs[i], &bad);
	printf("pci-probe: %u functions\n", n);
	if (!n) {
		puts("pci-probe: FAIL no function on bus 0");
		return 10;
	}
	if (bad)
		return 10;
	puts("pci-probe: OK");
	return 0;
}

int guest_main(const struct boot_params *bp)
{
	cmdline = bp_cmdline(bp);
	return (int)user_call(probe, 0);
}
