/* PCI configuration access, enumeration, BARs, capabilities and MSI-X (see pci.h). */
#include "pci.h"

#include "acpi.h"
#include "cpu.h"
#include "io.h"
#include "kstring.h"

#define CAP_WALK_MAX 48
#define BAR_ALLOC_LO 0xc0000000ull
#define BAR_ALLOC_HI 0xe0000000ull

static enum pci_access access_mode;
static bool access_chosen;
static uint64_t bar_next = BAR_ALLOC_LO;
static uint64_t ecam_base = PCI_ECAM_BASE;
static unsigned ecam_buses = 1; /* kvmini's window covers bus 0 only */
static bool ecam_from_mcfg;

static uint64_t ecam_addr(uint16_t bdf, uint16_t off)
{
	return ecam_base + ((uint64_t)bdf << 12) + off;
}

/* The ACPI MCFG entry for segment 0 that starts at bus 0. */
static bool find_mcfg(uint64_t *base, unsigned *buses)
{
	uint64_t t = acpi_find_table("MCFG");
	if (!t)
		return false;
	uint32_t tlen;
	memcpy(&tlen, phys(t + 4), 4);
	for (uint32_t e = 44; e + 16 <= tlen && e < 4096; e += 16) {
		const uint8_t *p = phys(t + e);
		uint16_t seg;
		memcpy(&seg, p + 8, 2);
		if (seg == 0 && p[10] == 0) {
			memcpy(base, p, 8);
			*buses = (unsigned)p[11] + 1;
			return true;
		}
	}
	return false;
}

static void cf8_select(uint16_t bdf, uint16_t off)
{
	outl(PCI_CONFIG_ADDR, 0x80000000u | (uint32_t)bdf << 8 | (off & 0xfc));
}

static uint32_t raw_read(enum pci_access a, uint16_t bdf, uint16_t off, unsigned size)
{
	uint32_t ones = size == 4 ? 0xffffffffu : (1u << (size * 8)) - 1;
	if (off & (size - 1))
		return ones;
	if (a == PCI_ACCESS_ECAM) {
		if (off >= 4096 || PCI_BUS(bdf) >= ecam_buses)
			return ones;
		uint64_t p = ecam_addr(bdf, off);
		return size == 1 ? mmio_read8(p) : size == 2 ? mmio_read16(p) : mmio_read32(p);
	}
	if (a == PCI_ACCESS_CF8) {
		if (off >= 256)
			return ones;
		cf8_select(bdf, off);
		uint16_t port = PCI_CONFIG_DATA + (off & 3);
		return size == 1 ? inb(port) : size == 2 ? inw(port) : inl(port);
	}
	return ones;
}

static void raw_write(enum pci_access a, uint16_t bdf, uint16_t off, unsigned size, uint32_t v)
{
	if (off & (size - 1))
		return;
	if (a == PCI_ACCESS_ECAM) {
		if (off >= 4096 || PCI_BUS(bdf) >= ecam_buses)
			return;
		uint64_t p = ecam_addr(bdf, off);
		if (size == 1)
			mmio_write8(p, (uint8_t)v);
		else if (size == 2)
			mmio_write16(p, (uint16_t)v);
		else
			mmio_write32(p, v);
	} else if (a == PCI_ACCESS_CF8) {
		if (off >= 256)
			return;
		cf8_select(bdf, off);
		uint16_t port = PCI_CONFIG_DATA + (off & 3);
		if (size == 1)
			outb(port, (uint8_t)v);
		else if (size == 2)
			outw(port, (uint16_t)v);
		else
			outl(port, v);
	}
}

static bool answers(enum pci_access a)
{
	uint16_t vendor = (uint16_t)raw_read(a, 0, PCI_VENDOR_ID, 2);
	return vendor != 0xffff && vendor != 0;
}

enum pci_access pci_init(enum pci_access force)
{
	uint64_t base;
	unsigned buses;
	if (find_mcfg(&base, &buses) && kit_map_mmio(base, (uint64_t)buses << 20)) {
		ecam_base = base;
		ecam_buses = buses;
		ecam_from_mcfg = true;
	}
	if (force != PCI_ACCESS_NONE)
		access_mode = force;
	else if (answers(PCI_ACCESS_ECAM))
		access_mode = PCI_ACCESS_ECAM;
	else if (answers(PCI_ACCESS_CF8))
		access_mode = PCI_ACCESS_CF8;
	else
		access_mode = PCI_ACCESS_NONE;
	access_chosen = true;
	return access_mode;
}

static enum pci_access mode(void)
{
	if (!access_chosen)
		pci_init(PCI_ACCESS_NONE);
	return access_mode;
}

enum pci_access pci_access_mode(void)
{
	return mode();
}

const char *pci_access_name(enum pci_access a)
{
	return a == PCI_ACCESS_ECAM ? "ecam" : a == PCI_ACCESS_CF8 ? "cf8" : "none";
}

enum pci_access pci_access_from_cmdline(const char *cmdline)
{
	char v[8];
	if (!cmdline || !cmdline_get(cmdline, "pci", v, sizeof(v)))
		return PCI_ACCESS_NONE;
	if (!strcmp(v, "ecam"))
		return PCI_ACCESS_ECAM;
	if (!strcmp(v, "cf8"))
		return PCI_ACCESS_CF8;
	return PCI_ACCESS_NONE;
}

uint8_t pci_read8(uint16_t bdf, uint16_t off)
{
	return (uint8_t)raw_read(mode(), bdf, off, 1);
}

uint16_t pci_read16(uint16_t bdf, uint16_t off)
{
	return (uint16_t)raw_read(mode(), bdf, off, 2);
}

uint32_t pci_read32(uint16_t bdf, uint16_t off)
{
	return raw_read(mode(), bdf, off, 4);
}

void pci_write8(uint16_t bdf, uint16_t off, uint8_t v)
{
	raw_write(mode(), bdf, off, 1, v);
}

void pci_write16(uint16_t bdf, uint16_t off, uint16_t v)
{
	raw_write(mode(), bdf, off, 2, v);
}

void pci_write32(uint16_t bdf, uint16_t off, uint32_t v)
{
	raw_write(mode(), bdf, off, 4, v);
}

bool pci_read_func(uint16_t bdf, struct pci_func *out)
{
	uint32_t id = pci_read32(bdf, PCI_VENDOR_ID);
	if ((id & 0xffff) == 0xffff)
		return false;
	uint32_t cr = pci_read32(bdf, PCI_CLASS_REV);
	uint8_t ht = pci_read8(bdf, PCI_HEADER_TYPE);
	out->bdf = bdf;
	out->vendor = (uint16_t)id;
	out->device = (uint16_t)(id >> 16);
	out->class_code = cr >> 8;
	out->revision = (uint8_t)cr;
	out->header_type = ht & 0x7f;
	out->multifunction = ht & PCI_HDR_MULTIFN;
	out->subsys_vendor = out->header_type == 0 ? pci_read16(bdf, PCI_SUBSYS_VENDOR) : 0;
	out->subsys_id = out->header_type == 0 ? pci_read16(bdf, PCI_SUBSYS_ID) : 0;
	return true;
}

unsigned pci_enumerate(struct pci_func *out, unsigned max)
{
	unsigned n = 0;
	for (unsigned dev = 0; dev < 32; dev++) {
		struct pci_func f;
		if (!pci_read_func(PCI_BDF(0, dev, 0), &f))
			continue;
		unsigned fns = f.multifunction ? 8 : 1;
		for (unsigned fn = 0; fn < fns; fn++) {
			if (fn && !pci_read_func(PCI_BDF(0, dev, fn), &f))
				continue;
			if (n < max)
				out[n] = f;
			n++;
		}
	}
	return n;
}

bool pci_find(uint16_t vendor, uint16_t device, struct pci_func *out)
{
	struct pci_func all[64];
	unsigned n = pci_enumerate(all, 64);
	for (unsigned i = 0; i < n && i < 64; i++) {
		if (all[i].vendor == vendor && (device == 0xffff || all[i].device == device)) {
			*out = all[i];
			return true;
		}
	}
	return false;
}

unsigned pci_bar_probe(uint16_t bdf, unsigned index, struct pci_bar *out)
{
	memset(out, 0, sizeof(*out));
	if (index > 5)
		return 0;
	uint16_t reg = PCI_BAR0 + 4 * index;
	uint16_t cmd = pci_read16(bdf, PCI_COMMAND);
	pci_write16(bdf, PCI_COMMAND, cmd & ~(PCI_CMD_IO | PCI_CMD_MEM));

	uint32_t lo = pci_read32(bdf, reg);
	pci_write32(bdf, reg, 0xffffffffu);
	uint32_t mask_lo = pci_read32(bdf, reg);
	pci_write32(bdf, reg, lo);
	unsigned used = 1;

	if (lo & 1) {
		uint32_t mask = mask_lo & ~3u;
		if (mask) {
			out->type = PCI_BAR_IO;
			out->addr = lo & ~3u;
			/* I/O BARs may implement only the low 16 bits */
			if (!(mask & 0xffff0000u))
				mask |= 0xffff0000u;
			out->size = (uint32_t)(~mask + 1);
		}
	} else if (((lo >> 1) & 3) == 2 && index < 5) {
		uint32_t hi = pci_read32(bdf, reg + 4);
		pci_write32(bdf, reg + 4, 0xffffffffu);
		uint32_t mask_hi = pci_read32(bdf, reg + 4);
		pci_write32(bdf, reg + 4, hi);
		uint64_t mask = ((uint64_t)mask_hi << 32) | (mask_lo & ~0xfu);
		used = 2;
		if (mask) {
			out->type = PCI_BAR_MEM64;
			out->prefetchable = lo & 8;
			out->addr = ((uint64_t)hi << 32) | (lo & ~0xfu);
			out->size = ~mask + 1;
		}
	} else {
		uint32_t mask = mask_lo & ~0xfu;
		if (mask) {
			out->type = PCI_BAR_MEM32;
			out->prefetchable = lo & 8;
			out->addr = lo & ~0xfu;
			out->size = (uint32_t)(~mask + 1);
		}
	}
	pci_write16(bdf, PCI_COMMAND, cmd);
	return used;
}

uint64_t pci_bar_addr(uint16_t bdf, unsigned index)
{
	if (index > 5)
		return 0;
	uint32_t lo = pci_read32(bdf, PCI_BAR0 + 4 * index);
	if (lo & 1)
		return 0;
	uint64_t a = lo & ~0xfu;
	if (((lo >> 1) & 3) == 2 && index < 5)
		a |= (uint64_t)pci_read32(bdf, PCI_BAR0 + 4 * index + 4) << 32;
	return a;
}

const char *pci_bar_type_name(enum pci_bar_type t)
{
	return t == PCI_BAR_IO	    ? "io"
	       : t == PCI_BAR_MEM32 ? "mem32"
	       : t == PCI_BAR_MEM64 ? "mem64"
				    : "none";
}

bool pci_enable(uint16_t bdf)
{
	bool ok = true;
	uint16_t cmd = pci_read16(bdf, PCI_COMMAND);
	for (unsigned i = 0; i < 6;) {
		struct pci_bar b;
		unsigned used = pci_bar_probe(bdf, i, &b);
		if (!used)
			break;
		if ((b.type == PCI_BAR_MEM32 || b.type == PCI_BAR_MEM64) && b.addr == 0 && b.size) {
			uint64_t a = (bar_next + b.size - 1) & ~(b.size - 1);
			if (a + b.size > BAR_ALLOC_HI) {
				ok = false;
			} else {
				bar_next = a + b.size;
				pci_write32(bdf, PCI_BAR0 + 4 * i,
					    (uint32_t)a |
						(pci_read32(bdf, PCI_BAR0 + 4 * i) & 0xf));
				if (b.type == PCI_BAR_MEM64)
					pci_write32(bdf, PCI_BAR0 + 4 * i + 4, 0);
			}
		}
		i += used;
	}
	pci_write16(bdf, PCI_COMMAND, cmd | PCI_CMD_IO | PCI_CMD_MEM | PCI_CMD_MASTER);
	return ok;
}

static bool cap_off_ok(uint8_t off)
{
	return off >= 0x40 && !(off & 3);
}

uint8_t pci_cap_first(uint16_t bdf)
{
	if (!(pci_read16(bdf, PCI_STATUS) & PCI_STATUS_CAPS))
		return 0;
	uint8_t off = pci_read8(bdf, PCI_CAP_PTR) & 0xfc;
	return cap_off_ok(off) ? off : 0;
}

uint8_t pci_cap_next(uint16_t bdf, uint8_t off)
{
	uint8_t next = pci_read8(bdf, off + 1) & 0xfc;
	return cap_off_ok(next) ? next : 0;
}

uint8_t pci_cap_find(uint16_t bdf, uint8_t id, uint8_t start)
{
	uint8_t off = start ? start : pci_cap_first(bdf);
	for (unsigned n = 0; off && n < CAP_WALK_MAX; n++, off = pci_cap_next(bdf, off)) {
		if (pci_read8(bdf, off) == id)
			return off;
	}
	return 0;
}

uint8_t pci_cap_find_after(uint16_t bdf, uint8_t id, uint8_t off)
{
	uint8_t next = pci_cap_next(bdf, off);
	return next ? pci_cap_find(bdf, id, next) : 0;
}

void pci_cap_read(uint16_t bdf, uint8_t off, void *buf, unsigned len)
{
	uint8_t *p = buf;
	for (unsigned i = 0; i < len; i++)
		p[i] = off + i < 256 ? pci_read8(bdf, (uint16_t)(off + i)) : 0xff;
}

bool pci_msix_find(uint16_t bdf, struct pci_msix *out)
{
	memset(out, 0, sizeof(*out));
	uint8_t cap = pci_cap_find(bdf, PCI_CAP_ID_MSIX, 0);
	if (!cap)
		return false;
	uint16_t ctrl = pci_read16(bdf, cap + 2);
	uint32_t t = pci_read32(bdf, cap + 4), p = pci_read32(bdf, cap + 8);
	out->bdf = bdf;
	out->cap = cap;
	out->entries = (ctrl & 0x7ff) + 1;
	out->table_bir = t & 7;
	out->table_off = t & ~7u;
	out->pba_bir = p & 7;
	out->pba_off = p & ~7u;
	uint64_t tb = out->table_bir < 6 ? pci_bar_addr(bdf, out->table_bir) : 0;
	uint64_t pb = out->pba_bir < 6 ? pci_bar_addr(bdf, out->pba_bir) : 0;
	out->table = tb ? tb + out->table_off : 0;
	out->pba = pb ? pb + out->pba_off : 0;
	if (out->table && !kit_map_mmio(out->table, (uint64_t)out->entries * PCI_MSIX_ENTRY_SIZE))
		out->table = 0;
	if (out->pba && !kit_map_mmio(out->pba, 8))
		out->pba = 0;
	return true;
}

bool pci_msix_set(const struct pci_msix *m, unsigned idx, uint8_t apic_id, uint8_t vector,
		  bool masked)
{
	if (idx >= m->entries || !m->table)
		return false;
	uint64_t e = m->table + (uint64_t)idx * PCI_MSIX_ENTRY_SIZE;
	uint32_t ctl = mmio_read32(e + 12);
	mmio_write32(e + 12, ctl | PCI_MSIX_VEC_MASKED); /* mask while changing it */
	mmio_write32(e + 0, 0xfee00000u | (uint32_t)apic_id << 12);
	mmio_write32(e + 4, 0);
	mmio_write32(e + 8, vector);
	mmio_write32(e + 12, masked ? (ctl | PCI_MSIX_VEC_MASKED) : (ctl & ~PCI_MSIX_VEC_MASKED));
	return true;
}

void pci_msix_mask_entry(const struct pci_msix *m, unsigned idx, bool masked)
{
	if (idx >= m->entries || !m->table)
		return;
	uint64_t e = m->table + (uint64_t)idx * PCI_MSIX_ENTRY_SIZE + 12;
	uint32_t ctl = mmio_read32(e);
	mmio_write32(e, masked ? (ctl | PCI_MSIX_VEC_MASKED) : (ctl & ~PCI_MSIX_VEC_MASKED));
}

void pci_msix_read_entry(const struct pci_msix *m, unsigned idx, uint32_t out[4])
{
	for (unsigned i = 0; i < 4; i++)
		out[i] = idx < m->entries && m->table
			     ? mmio_read32(m->table + (uint64_t)idx * PCI_MSIX_ENTRY_SIZE + 4 * i)
			     : 0xffffffffu;
}

void pci_msix_enable(const struct pci_msix *m, bool enable, bool function_masked)
{
	uint16_t ctrl = pci_read16(m->bdf, m->cap + 2);
	ctrl &= ~(PCI_MSIX_CTRL_ENABLE | PCI_MSIX_CTRL_FMASK);
	if (enable)
		ctrl |= PCI_MSIX_CTRL_ENABLE;
	if (function_masked)
		ctrl |= PCI_MSIX_CTRL_FMASK;
	pci_write16(m->bdf, m->cap + 2, ctrl);
}

bool pci_msix_pending(const struct pci_msix *m, unsigned idx)
{
	if (idx >= m->entries || !m->pba)
		return false;
	return (mmio_read32(m->pba + (idx / 32) * 4) >> (idx % 32)) & 1;
}

uint64_t pci_ecam_base(bool *from_mcfg)
{
	mode();
	if (from_mcfg)
		*from_mcfg = ecam_from_mcfg;
	return ecam_base;
}
