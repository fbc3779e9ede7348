/* ACPI tables read back the way a guest would: scan for the RSDP, follow the pointers, and
 * decode fields at the spec's byte offsets (not through acpi.c's structs, so a wrong struct
 * layout shows up here). */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/acpi.h"
#include "devices/vmgenid.h"
#include "arch/x86/layout.h"
#include "core/guest_mem.h"

struct acpi_t_vm {
	struct guest_mem mem;
	uint8_t *ram;
	uint64_t size;
};

static void acpi_t_vm_init(struct acpi_t_vm *vm, uint64_t size)
{
	memset(vm, 0, sizeof(*vm));
	vm->size = size;
	vm->ram = malloc(size);
	cr_assert_not_null(vm->ram);
	/* Garbage, so that nothing passes only because memory happened to be zero. */
	memset(vm->ram, 0xa5, size);
	cr_assert_eq(guest_mem_add_region(&vm->mem, 0, size, vm->ram), 0);
}

static void acpi_t_vm_free(struct acpi_t_vm *vm)
{
	free(vm->ram);
}

static uint16_t acpi_t_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t acpi_t_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t acpi_t_u64(const uint8_t *p)
{
	return (uint64_t)acpi_t_u32(p) | (uint64_t)acpi_t_u32(p + 4) << 32;
}

static uint8_t acpi_t_sum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;
	for (size_t i = 0; i < len; i++)
		s += p[i];
	return s;
}

/* Host pointer to a table that must lie wholly inside the window the header reserves. */
static const uint8_t *acpi_t_at(const struct acpi_t_vm *vm, uint64_t gpa, uint64_t len)
{
	cr_assert_geq(gpa, ACPI_TABLES_START, "table at %#lx below the ACPI window",
		      (unsigned long)gpa);
	cr_assert_leq(gpa + len, ACPI_TABLES_START + ACPI_TABLES_SIZE,
		      "table at %#lx+%lu beyond the ACPI window", (unsigned long)gpa,
		      (unsigned long)len);
	const uint8_t *p = gpa_to_hva(&vm->mem, gpa, len);
	cr_assert_not_null(p);
	return p;
}

/* Checks the standard header (signature, ids, checksum) and returns the table. */
static const uint8_t *acpi_t_table(const struct acpi_t_vm *vm, uint64_t gpa, const char *sig,
				   uint32_t *len)
{
	const uint8_t *h = acpi_t_at(vm, gpa, 36);
	cr_assert_eq(memcmp(h, sig, 4), 0, "expected %s at %#lx, found %.4s", sig,
		     (unsigned long)gpa, (const char *)h);
	*len = acpi_t_u32(h + 4);
	cr_assert_geq(*len, 36, "%s length %u", sig, *len);
	const uint8_t *t = acpi_t_at(vm, gpa, *len);
	cr_assert_eq(acpi_t_sum(t, *len), 0, "%s checksum", sig);
	cr_assert_eq(memcmp(t + 10, "KVMINI", 6), 0, "%s OEM ID", sig);
	cr_assert_eq(memcmp(t + 16, "KVMINIVM", 8), 0, "%s OEM table ID", sig);
	cr_assert_eq(acpi_t_u32(t + 24), 1, "%s OEM revision", sig);
	cr_assert_eq(memcmp(t + 28, "KVMI", 4), 0, "%s creator ID", sig);
	cr_assert_eq(acpi_t_u32(t + 32), 1, "%s creator revision", sig);
	return t;
}

/* As Linux's acpi_find_root_pointer(): 16-byte steps through 0xe0000-0xfffff, the first
 * signature whose checksums hold. */
static uint64_t acpi_t_find_rsdp(const struct acpi_t_vm *vm)
{
	for (uint64_t gpa = 0xe0000; gpa < 0x100000; gpa += 16) {
		const uint8_t *p = gpa_to_hva(&vm->mem, gpa, 36);
		if (!p || memcmp(p, "RSD PTR ", 8) != 0 || acpi_t_sum(p, 20) != 0)
			continue;
		if (p[15] >= 2 && acpi_t_sum(p, 36) != 0)
			continue;
		return gpa;
	}
	return 0;
}

/* Decodes one AML data object that is an integer constant; returns its encoded size. */
static size_t acpi_t_aml_int(const uint8_t *p, size_t avail, uint64_t *v)
{
	cr_assert_geq(avail, 1);
	switch (p[0]) {
	case 0x00: /* ZeroOp */
		*v = 0;
		return 1;
	case 0x01: /* OneOp */
		*v = 1;
		return 1;
	case 0x0a: /* BytePrefix */
		cr_assert_geq(avail, 2);
		*v = p[1];
		return 2;
	case 0x0b: /* WordPrefix */
		cr_assert_geq(avail, 3);
		*v = acpi_t_u16(p + 1);
		return 3;
	case 0x0c: /* DWordPrefix */
		cr_assert_geq(avail, 5);
		*v = acpi_t_u32(p + 1);
		return 5;
	default:
		cr_assert_fail("unexpected AML opcode %#x in _S5_", p[0]);
		return 0;
	}
}

/* AML PkgLength at p: returns its value and sets *nbytes to the encoding's size. */
static uint32_t acpi_t_pkglen(const uint8_t *p, unsigned *nbytes)
{
	unsigned extra = p[0] >> 6;
	uint32_t v = extra ? (p[0] & 0x0f) : (p[0] & 0x3f);
	for (unsigned i = 0; i < extra; i++)
		v |= (uint32_t)p[1 + i] << (4 + 8 * i);
	*nbytes = 1 + extra;
	return v;
}

/* The DSDT body is a sequence of top-level terms that tiles it exactly: Name (_S5_),
 * Device (\_SB.PCI0), Device (\_SB.VGEN), Scope (\_GPE). Each term's start and the
 * PkgLength-delimited end are returned in order for the checks below. */
struct acpi_t_term {
	uint8_t op;			   /* 0x08 Name, 0x82 Device, 0x10 Scope */
	const uint8_t *start, *body, *end; /* body: just after the PkgLength */
};

static unsigned acpi_t_terms(const uint8_t *dsdt, uint32_t len, struct acpi_t_term *t, unsigned max)
{
	const uint8_t *p = dsdt + 36, *end = dsdt + len;
	unsigned n = 0, got;
	while (p < end) {
		cr_assert_lt(n, max, "too many top-level AML terms");
		t[n].start = p;
		if (p[0] == 0x08) { /* NameOp NameSeg PackageOp PkgLength ... */
			cr_assert_eq(p[5], 0x12, "top-level Name is not a Package");
			uint32_t pl = acpi_t_pkglen(p + 6, &got);
			t[n].op = 0x08;
			t[n].body = p + 6 + got;
			t[n].end = p + 6 + pl;
		} else if (p[0] == 0x5b && p[1] == 0x82) {
			uint32_t pl = acpi_t_pkglen(p + 2, &got);
			t[n].op = 0x82;
			t[n].body = p + 2 + got;
			t[n].end = p + 2 + pl;
		} else if (p[0] == 0x10) {
			uint32_t pl = acpi_t_pkglen(p + 1, &got);
			t[n].op = 0x10;
			t[n].body = p + 1 + got;
			t[n].end = p + 1 + pl;
		} else {
			cr_assert_fail("unexpected top-level AML opcode %#x at DSDT+%ld", p[0],
				       (long)(p - dsdt));
		}
		cr_assert_leq(t[n].end, end, "term %u runs past the DSDT", n);
		p = t[n++].end;
	}
	cr_assert_eq(p, end, "the terms do not end at the DSDT's end");
	return n;
}

/* A NameString "\_SB_VGEN"-style absolute path of two segments. */
static const uint8_t acpi_t_vgen_path[] = {'\\', 0x2e, '_', 'S', 'B', '_', 'V', 'G', 'E', 'N'};

/* Name (NAME, "string") at *pp (inside [.., end)): checks and steps over it. */
static void acpi_t_name_string(const uint8_t **pp, const uint8_t *end, const char *name,
			       const char *want)
{
	const uint8_t *p = *pp;
	cr_assert_eq(p[0], 0x08, "Name (%s) expected", name);
	cr_assert(!memcmp(p + 1, name, 4), "Name %.4s where %s was expected", p + 1, name);
	cr_assert_eq(p[5], 0x0d, "%s is not a string", name);
	size_t n = strlen(want);
	cr_assert_leq(p + 6 + n + 1, end);
	cr_assert(!memcmp(p + 6, want, n) && p[6 + n] == 0, "%s is not \"%s\"", name, want);
	*pp = p + 6 + n + 1;
}

/* Device (\_SB.VGEN): _HID "QEMUVGID", _CID and _DDN "VM_Gen_Counter", and Method (ADDR)
 * returning Package (2) { low, high } of VMGENID_ADDR (what Linux's vmgenid evaluates);
 * Scope (\_GPE) with Method (_E00) { Notify (\_SB.VGEN, 0x80) }. */
static void acpi_t_check_vmgenid(const struct acpi_t_term *dev, const struct acpi_t_term *gpe)
{
	cr_assert_eq(dev->op, 0x82);
	cr_assert(!memcmp(dev->body, acpi_t_vgen_path, sizeof(acpi_t_vgen_path)),
		  "the third term is not Device (\\_SB.VGEN)");
	const uint8_t *p = dev->body + sizeof(acpi_t_vgen_path);
	acpi_t_name_string(&p, dev->end, "_HID", "QEMUVGID");
	acpi_t_name_string(&p, dev->end, "_CID", "VM_Gen_Counter");
	acpi_t_name_string(&p, dev->end, "_DDN", "VM_Gen_Counter");
	unsigned got;
	cr_assert_eq(p[0], 0x14, "Method (ADDR) expected");
	uint32_t ml = acpi_t_pkglen(p + 1, &got);
	const uint8_t *m = p + 1 + got, *mend = p + 1 + ml;
	cr_assert_eq(mend, dev->end, "ADDR is not the device's last object");
	cr_assert(!memcmp(m, "ADDR", 4));
	cr_assert_eq(m[4] & 7, 0, "ADDR takes no arguments");
	cr_assert_eq(m[5], 0xa4, "ADDR's body is not a Return");
	cr_assert_eq(m[6], 0x12, "ADDR does not return a Package");
	uint32_t pl = acpi_t_pkglen(m + 7, &got);
	const uint8_t *e = m + 7 + got, *pend = m + 7 + pl;
	cr_assert_eq(pend, mend, "the Package ends where the method does");
	cr_assert_eq(e[0], 2, "ADDR's Package has %u elements, not 2", e[0]);
	e++;
	uint64_t lo, hi;
	e += acpi_t_aml_int(e, (size_t)(pend - e), &lo);
	e += acpi_t_aml_int(e, (size_t)(pend - e), &hi);
	cr_assert_eq(e, pend);
	cr_assert_leq(lo, 0xffffffffu);
	cr_assert_leq(hi, 0xffffffffu);
	cr_assert_eq(lo | hi << 32, VMGENID_ADDR, "ADDR gives %#lx",
		     (unsigned long)(lo | hi << 32));
	/* Inside the e820-reserved BIOS area, clear of the tables themselves. */
	cr_assert_geq(VMGENID_ADDR, ACPI_TABLES_START + acpi_tables_size(64));
	cr_assert_leq(VMGENID_ADDR + VMGENID_SIZE, ACPI_TABLES_START + ACPI_TABLES_SIZE);

	cr_assert_eq(gpe->op, 0x10);
	cr_assert(!memcmp(gpe->body, "\\_GPE", 5), "the last term is not Scope (\\_GPE)");
	p = gpe->body + 5;
	cr_assert_eq(p[0], 0x14, "Method (_E00) expected");
	ml = acpi_t_pkglen(p + 1, &got);
	m = p + 1 + got;
	cr_assert_eq(p + 1 + ml, gpe->end);
	char want[5];
	snprintf(want, sizeof(want), "_E%02X", VMGENID_GPE);
	cr_assert(!memcmp(m, want, 4), "the GPE method is %.4s, not %s", m, want);
	cr_assert_eq(m[5], 0x86, "_E00's body is not a Notify");
	cr_assert(!memcmp(m + 6, acpi_t_vgen_path, sizeof(acpi_t_vgen_path)),
		  "_E00 notifies something else than \\_SB.VGEN");
	cr_assert_eq(m[16], 0x0a);
	cr_assert_eq(m[17], 0x80, "Notify value %#x", m[17]);
	cr_assert_eq(m + 18, gpe->end);
}

/* Device (\_SB.PCI0) with _HID PNP0A03 (what Linux's ACPI PCI root driver binds) whose
 * _CRS buffer decodes: bus 0..0, and a 32-bit memory window covering kvmini's BAR window;
 * lengths consistent down to the end of the DSDT. */
static void acpi_t_check_pci0(const uint8_t *dsdt, uint32_t len)
{
	const uint8_t *body = dsdt + 36, *end = dsdt + len;
	static const uint8_t path[] = {'\\', 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0'};
	const uint8_t *name = memmem(body, len - 36, path, sizeof(path));
	cr_assert_not_null(name, "no Device (\\_SB.PCI0) in the DSDT");
	unsigned nb;
	const uint8_t *pl = name;
	/* DeviceOp, then a PkgLength of 1 to 4 bytes before the name. */
	for (nb = 1; nb <= 4 && !(pl[-(int)nb - 2] == 0x5b && pl[-(int)nb - 1] == 0x82); nb++)
		;
	cr_assert_leq(nb, 4, "\\_SB.PCI0 is not a Device");
	unsigned got;
	uint32_t dlen = acpi_t_pkglen(name - nb, &got);
	cr_assert_eq(got, nb);
	cr_assert_leq(name - nb + dlen, end, "the Device's PkgLength runs past the DSDT's end");
	const uint8_t *hid = memmem(name, (size_t)(end - name), "_HID", 4);
	cr_assert_not_null(hid);
	cr_assert_eq(hid[4], 0x0c, "_HID is an EisaId (DWordConst)");
	cr_assert_eq(acpi_t_u32(hid + 5), 0x030ad041u, "EisaId (\"PNP0A03\")");
	const uint8_t *crs = memmem(name, (size_t)(end - name), "_CRS", 4);
	cr_assert_not_null(crs);
	cr_assert_eq(crs[4], 0x11, "_CRS is a Buffer");
	uint32_t blen = acpi_t_pkglen(crs + 5, &got);
	const uint8_t *b = crs + 5 + got;
	cr_assert_eq(b[0], 0x0a, "BufferSize as a ByteConst");
	uint32_t size = b[1];
	cr_assert_eq(got + 2 + size, blen, "Buffer PkgLength and BufferSize agree");
	const uint8_t *r = b + 2, *rend = r + size;
	bool bus = false, mem = false, endtag = false;
	while (r < rend && !endtag) {
		if (r[0] & 0x80) { /* large item */
			uint16_t l = (uint16_t)(r[1] | r[2] << 8);
			cr_assert_leq(r + 3 + l, rend);
			if (r[0] == 0x88 && r[3] == 2) {
				cr_assert_eq(r[8] | r[9] << 8, 0, "bus min");
				cr_assert_eq(r[10] | r[11] << 8, 0, "bus max");
				bus = true;
			}
			if (r[0] == 0x87 && r[3] == 0) {
				cr_assert_leq(acpi_t_u32(r + 10), X86_PCI_MMIO32_START);
				cr_assert_geq(acpi_t_u32(r + 14), X86_PCI_MMIO32_END - 1);
				cr_assert_lt(acpi_t_u32(r + 14), X86_PCI_ECAM_BASE,
					     "the window stays clear of the ECAM reservation");
				mem = true;
			}
			r += 3 + l;
		} else { /* small item */
			endtag = (r[0] >> 3) == 0x0f;
			r += 1 + (r[0] & 7);
		}
	}
	cr_assert(bus && mem && endtag, "bus %d mem %d end %d", bus, mem, endtag);
	cr_assert_eq(r, rend, "the EndTag closes the buffer");
}

/* Finds Name(_S5_, Package(){a, b, ...}) in the DSDT body and returns SLP_TYPa and b. */
static void acpi_t_check_s5(const uint8_t *dsdt, uint32_t len)
{
	const uint8_t *body = dsdt + 36;
	size_t n = len - 36;
	const uint8_t *name = memmem(body, n, "_S5_", 4);
	cr_assert_not_null(name, "no _S5_ in the DSDT");
	cr_assert(name > body);
	/* NameOp, optionally with the root prefix. */
	const uint8_t *op = name - 1;
	if (*op == '\\' && op > body)
		op--;
	cr_assert_eq(*op, 0x08, "_S5_ not introduced by NameOp");

	const uint8_t *p = name + 4;
	const uint8_t *end = body + n;
	cr_assert_lt(p + 2, end);
	cr_assert_eq(p[0], 0x12, "_S5_ is not a Package");
	/* PkgLength: only the one-byte form is expected for so small a package. */
	cr_assert_eq(p[1] >> 6, 0, "multi-byte PkgLength");
	size_t pkglen = p[1] & 0x3f;
	const uint8_t *pkg_end = p + 1 + pkglen;
	cr_assert_leq(pkg_end, end, "package runs past the DSDT");
	unsigned nelem = p[2];
	cr_assert_geq(nelem, 2, "_S5_ needs SLP_TYPa and SLP_TYPb");

	const uint8_t *e = p + 3;
	uint64_t vals[8];
	unsigned i;
	for (i = 0; i < nelem && i < 8; i++) {
		e += acpi_t_aml_int(e, (size_t)(pkg_end - e), &vals[i]);
		cr_assert_leq(e, pkg_end);
	}
	cr_assert_eq(e, pkg_end, "package length does not match its elements");
	cr_assert_eq(vals[0], ACPI_S5_SLP_TYP, "SLP_TYPa %lu", (unsigned long)vals[0]);
	cr_assert_eq(vals[1], ACPI_S5_SLP_TYP, "SLP_TYPb %lu", (unsigned long)vals[1]);
}

static void acpi_t_check_gas(const uint8_t *g, uint8_t width, uint64_t addr, const char *what)
{
	cr_assert_eq(g[0], 1, "%s not in system I/O space", what);
	cr_assert_eq(g[1], width, "%s bit width %u", what, g[1]);
	cr_assert_eq(g[2], 0, "%s bit offset", what);
	cr_assert_eq(acpi_t_u64(g + 4), addr, "%s address", what);
}

static void acpi_t_check_fadt(const struct acpi_t_vm *vm, const uint8_t *f, uint32_t len)
{
	cr_assert_eq(len, 276, "FADT length %u", len);
	cr_assert_eq(f[8], 6, "FADT revision");
	cr_assert_eq(acpi_t_u16(f + 46), ACPI_SCI_IRQ, "SCI_INT");
	cr_assert_eq(acpi_t_u32(f + 48), 0, "SMI_CMD");
	cr_assert_eq(acpi_t_u32(f + 56), ACPI_PM1A_EVT_PORT, "PM1a_EVT_BLK");
	cr_assert_eq(acpi_t_u32(f + 60), 0, "PM1b_EVT_BLK");
	cr_assert_eq(acpi_t_u32(f + 64), 0x604, "PM1a_CNT_BLK");
	cr_assert_eq(acpi_t_u32(f + 68), 0, "PM1b_CNT_BLK");
	cr_assert_eq(acpi_t_u32(f + 76), 0, "PM_TMR_BLK");
	cr_assert_eq(acpi_t_u32(f + 80), ACPI_GPE0_PORT, "GPE0_BLK");
	cr_assert_eq(acpi_t_u32(f + 84), 0, "GPE1_BLK");
	cr_assert_eq(f[92], ACPI_GPE0_LEN, "GPE0_BLK_LEN");
	cr_assert_eq(f[92] % 2, 0, "GPE0_BLK_LEN must be even (status + enable halves)");
	cr_assert_eq(f[88], 4, "PM1_EVT_LEN");
	cr_assert_eq(f[89], 2, "PM1_CNT_LEN");
	cr_assert_eq(f[91], 0, "PM_TMR_LEN");
	uint16_t iapc = acpi_t_u16(f + 109);
	cr_assert(iapc & (1u << 1), "8042 flag");
	cr_assert(iapc & (1u << 2), "VGA-not-present flag");
	uint32_t flags = acpi_t_u32(f + 112);
	cr_assert_not(flags & (1u << 20), "HW_REDUCED_ACPI set");
	cr_assert_not(flags & (1u << 4), "PWR_BUTTON set: no fixed power button");
	cr_assert(flags & (1u << 5), "SLP_BUTTON (no fixed sleep button) clear");
	cr_assert(flags & (1u << 10), "RESET_REG_SUP");
	/* RESET_REG: system I/O, 8 bits, byte access, port 0xcf9; RESET_VALUE 6. */
	cr_assert_eq(f[116], 1, "RESET_REG address space");
	cr_assert_eq(f[117], 8, "RESET_REG bit width");
	cr_assert_eq(f[119], 1, "RESET_REG access size");
	cr_assert_eq(acpi_t_u64(f + 120), 0xcf9, "RESET_REG address");
	cr_assert_eq(f[128], 6, "RESET_VALUE");

	acpi_t_check_gas(f + 148, 32, ACPI_PM1A_EVT_PORT, "X_PM1a_EVT_BLK");
	acpi_t_check_gas(f + 172, 16, ACPI_PM1A_CNT_PORT, "X_PM1a_CNT_BLK");
	acpi_t_check_gas(f + 220, 8 * ACPI_GPE0_LEN, ACPI_GPE0_PORT, "X_GPE0_BLK");
	for (unsigned off = 160; off < 268; off += 12)
		if (off != 172 && off != 220)
			cr_assert_eq(acpi_t_u64(f + off + 4), 0, "unexpected GAS at FADT+%u", off);

	/* DSDT: both pointers, equal. */
	uint32_t dsdt32 = acpi_t_u32(f + 40);
	uint64_t dsdt64 = acpi_t_u64(f + 140);
	cr_assert_neq(dsdt64, 0, "X_DSDT");
	cr_assert_eq(dsdt32, dsdt64, "DSDT %#x != X_DSDT %#lx", dsdt32, (unsigned long)dsdt64);
	uint32_t dlen;
	const uint8_t *dsdt = acpi_t_table(vm, dsdt64, "DSDT", &dlen);
	cr_assert_geq(dsdt[8], 2, "DSDT revision < 2 means 32-bit AML integers");
	acpi_t_check_s5(dsdt, dlen);
	acpi_t_check_pci0(dsdt, dlen);
	struct acpi_t_term terms[8];
	unsigned nterms = acpi_t_terms(dsdt, dlen, terms, 8);
	cr_assert_eq(nterms, 4, "%u top-level terms", nterms);
	cr_assert_eq(terms[0].op, 0x08, "_S5_ first");
	cr_assert_eq(terms[1].op, 0x82, "PCI0 second");
	acpi_t_check_vmgenid(&terms[2], &terms[3]);

	/* FACS: required unless hardware-reduced; 64-byte aligned, no checksum. */
	uint64_t facs = acpi_t_u32(f + 36) ? acpi_t_u32(f + 36) : acpi_t_u64(f + 132);
	cr_assert_neq(facs, 0, "no FACS");
	cr_assert_eq(facs % 64, 0, "FACS not 64-byte aligned");
	const uint8_t *fc = acpi_t_at(vm, facs, 64);
	cr_assert_eq(memcmp(fc, "FACS", 4), 0);
	cr_assert_eq(acpi_t_u32(fc + 4), 64, "FACS length");
}

/* MCFG (PCI Firmware 3.2, 4.1.2): 8 reserved bytes, then one 16-byte allocation: the ECAM
 * base Linux's pci_mmcfg reads, segment 0, buses 0..0, inside the e820-reserved window. */
static void acpi_t_check_mcfg(const uint8_t *m, uint32_t len)
{
	cr_assert_eq(len, 36 + 8 + 16, "MCFG with one allocation: %u bytes", len);
	cr_assert_eq(acpi_t_u64(m + 44), X86_PCI_ECAM_BASE, "ECAM base");
	cr_assert_eq(m[52] | m[53] << 8, 0, "PCI segment 0");
	cr_assert_eq(m[54], 0, "start bus");
	cr_assert_eq(m[55], X86_PCI_ECAM_BUSES - 1, "end bus");
	cr_assert_leq((uint64_t)(m[55] + 1) << 20, X86_PCI_ECAM_SIZE,
		      "the buses fit the reserved window");
}

static void acpi_t_check_madt(const uint8_t *m, uint32_t len, unsigned ncpus)
{
	cr_assert_geq(len, 44);
	cr_assert_eq(acpi_t_u32(m + 36), 0xfee00000, "local APIC address");
	cr_assert_eq(acpi_t_u32(m + 40) & 1, 1, "PCAT_COMPAT");

	uint64_t seen_ids = 0;
	unsigned lapics = 0, ioapics = 0, sci_isos = 0, nmis = 0;
	uint32_t off = 44;
	while (off < len) {
		cr_assert_leq(off + 2, len, "subtable header at %u past MADT end %u", off, len);
		uint8_t type = m[off], slen = m[off + 1];
		cr_assert_geq(slen, 2, "subtable type %u length %u", type, slen);
		cr_assert_leq(off + slen, len, "subtable type %u at %u runs past the MADT", type,
			      off);
		const uint8_t *s = m + off;
		switch (type) {
		case 0:
			cr_assert_eq(slen, 8);
			cr_assert(acpi_t_u32(s + 4) & 1, "local APIC %u not enabled", s[3]);
			cr_assert_lt(s[3], ncpus, "APIC ID %u", s[3]);
			cr_assert_not(seen_ids & (1ull << s[3]), "APIC ID %u twice", s[3]);
			cr_assert_eq(s[2], s[3], "processor UID differs from APIC ID");
			seen_ids |= 1ull << s[3];
			if (lapics == 0)
				cr_assert_eq(s[3], 0, "first local APIC is not the BSP");
			lapics++;
			break;
		case 1:
			cr_assert_eq(slen, 12);
			cr_assert_eq(acpi_t_u32(s + 4), 0xfec00000, "IOAPIC address");
			cr_assert_eq(acpi_t_u32(s + 8), 0, "IOAPIC GSI base");
			cr_assert_geq(s[2], ncpus, "IOAPIC ID %u collides with a CPU", s[2]);
			ioapics++;
			break;
		case 2:
			cr_assert_eq(slen, 10);
			cr_assert_eq(s[2], 0, "override not on the ISA bus");
			cr_assert_neq(s[3], 0, "IRQ 0 override: KVM routes IRQ 0 to pin 0");
			if (s[3] == ACPI_SCI_IRQ) {
				cr_assert_eq(acpi_t_u32(s + 4), ACPI_SCI_IRQ, "SCI GSI");
				cr_assert_eq(acpi_t_u16(s + 8), 0x000d, "SCI flags");
				sci_isos++;
			}
			break;
		case 4:
			cr_assert_eq(slen, 6);
			cr_assert_eq(s[2], 0xff, "NMI not for all processors");
			cr_assert_eq(s[5], 1, "NMI not on LINT1");
			nmis++;
			break;
		default:
			cr_assert_fail("unexpected MADT subtable type %u", type);
		}
		off += slen;
	}
	cr_assert_eq(off, len, "subtables end at %u, MADT length %u", off, len);
	cr_assert_eq(lapics, ncpus, "%u local APICs for %u CPUs", lapics, ncpus);
	cr_assert_eq(seen_ids, ncpus == 64 ? ~0ull : (1ull << ncpus) - 1);
	cr_assert_eq(ioapics, 1);
	cr_assert_eq(sci_isos, 1);
	cr_assert_eq(nmis, 1);
}

static void acpi_t_check_all(unsigned ncpus)
{
	struct acpi_t_vm vm;
	acpi_t_vm_init(&vm, 1 << 20);
	cr_assert_eq(acpi_write_tables(&vm.mem, ncpus), 0);

	uint64_t rsdp_gpa = acpi_t_find_rsdp(&vm);
	cr_assert_eq(rsdp_gpa, ACPI_RSDP_ADDR, "RSDP found at %#lx", (unsigned long)rsdp_gpa);
	const uint8_t *rsdp = acpi_t_at(&vm, rsdp_gpa, 36);
	cr_assert_eq(acpi_t_sum(rsdp, 20), 0, "RSDP checksum");
	cr_assert_eq(acpi_t_sum(rsdp, 36), 0, "RSDP extended checksum");
	cr_assert_eq(rsdp[15], 2, "RSDP revision");
	cr_assert_eq(memcmp(rsdp + 9, "KVMINI", 6), 0, "RSDP OEM ID");
	cr_assert_eq(acpi_t_u32(rsdp + 20), 36, "RSDP length");

	uint32_t xlen;
	const uint8_t *xsdt = acpi_t_table(&vm, acpi_t_u64(rsdp + 24), "XSDT", &xlen);
	cr_assert_eq((xlen - 36) % 8, 0, "XSDT length %u", xlen);
	unsigned fadts = 0, madts = 0, mcfgs = 0;
	uint64_t lo[8], hi[8];
	unsigned ntables = 0;
	for (uint32_t off = 36; off < xlen; off += 8) {
		uint64_t gpa = acpi_t_u64(xsdt + off);
		const uint8_t *h = acpi_t_at(&vm, gpa, 36);
		uint32_t len;
		if (memcmp(h, "FACP", 4) == 0) {
			const uint8_t *f = acpi_t_table(&vm, gpa, "FACP", &len);
			acpi_t_check_fadt(&vm, f, len);
			fadts++;
		} else if (memcmp(h, "APIC", 4) == 0) {
			const uint8_t *m = acpi_t_table(&vm, gpa, "APIC", &len);
			acpi_t_check_madt(m, len, ncpus);
			madts++;
		} else if (memcmp(h, "MCFG", 4) == 0) {
			const uint8_t *m = acpi_t_table(&vm, gpa, "MCFG", &len);
			acpi_t_check_mcfg(m, len);
			mcfgs++;
		} else {
			cr_assert_fail("unknown table %.4s in the XSDT", (const char *)h);
		}
		cr_assert_lt(ntables, 8);
		lo[ntables] = gpa;
		hi[ntables++] = gpa + len;
	}
	cr_assert_eq(fadts, 1);
	cr_assert_eq(madts, 1);
	cr_assert_eq(mcfgs, 1, "the XSDT lists the MCFG table (PCI ECAM)");

	/* Tables must not overlap each other or the root pointers. */
	lo[ntables] = rsdp_gpa;
	hi[ntables++] = rsdp_gpa + 36;
	lo[ntables] = acpi_t_u64(rsdp + 24);
	hi[ntables] = lo[ntables] + xlen;
	ntables++;
	for (unsigned i = 0; i < ntables; i++)
		for (unsigned j = i + 1; j < ntables; j++)
			cr_assert(hi[i] <= lo[j] || hi[j] <= lo[i], "tables %u and %u overlap", i,
				  j);
	acpi_t_vm_free(&vm);
}

Test(acpi, tables_one_cpu)
{
	acpi_t_check_all(1);
}

Test(acpi, tables_two_cpus)
{
	acpi_t_check_all(2);
}

Test(acpi, tables_64_cpus)
{
	acpi_t_check_all(64);
}

Test(acpi, rewrite_with_fewer_cpus_is_consistent)
{
	/* A reboot rewrites the tables in place; nothing from the larger set may survive in a
	 * way that confuses a reader. */
	struct acpi_t_vm vm;
	acpi_t_vm_init(&vm, 1 << 20);
	cr_assert_eq(acpi_write_tables(&vm.mem, 64), 0);
	cr_assert_eq(acpi_write_tables(&vm.mem, 3), 0);
	const uint8_t *rsdp = gpa_to_hva(&vm.mem, ACPI_RSDP_ADDR, 36);
	uint32_t len;
	const uint8_t *xsdt = acpi_t_table(&vm, acpi_t_u64(rsdp + 24), "XSDT", &len);
	const uint8_t *madt = acpi_t_table(&vm, acpi_t_u64(xsdt + 44), "APIC", &len);
	acpi_t_check_madt(madt, len, 3);
	acpi_t_vm_free(&vm);
}

Test(acpi, rejects_zero_cpus)
{
	struct acpi_t_vm vm;
	acpi_t_vm_init(&vm, 1 << 20);
	cr_assert_eq(acpi_write_tables(&vm.mem, 0), -EINVAL);
	cr_assert_eq(acpi_t_find_rsdp(&vm), 0, "RSDP written despite the error");
	acpi_t_vm_free(&vm);
}

Test(acpi, rejects_65_cpus)
{
	struct acpi_t_vm vm;
	acpi_t_vm_init(&vm, 1 << 20);
	cr_assert_eq(acpi_write_tables(&vm.mem, 65), -EINVAL);
	cr_assert_eq(acpi_t_find_rsdp(&vm), 0, "RSDP written despite the error");
	acpi_t_vm_free(&vm);
}

Test(acpi, fails_without_memory_for_the_tables)
{
	struct acpi_t_vm vm;
	acpi_t_vm_init(&vm, 512 << 10);
	cr_assert_eq(acpi_write_tables(&vm.mem, 1), -EFAULT);
	acpi_t_vm_free(&vm);
}
