/* vmgenid: the VM generation ID as an OS finds it. Walks RSDP -> XSDT -> FADT -> DSDT,
 * finds Method (ADDR) (bytes "ADDR", flags 0, Return (Package (2) { DWord low, DWord high }),
 * what Linux's vmgenid driver evaluates), reads the 16-byte GUID there (Microsoft layout:
 * three little-endian fields, then 8 bytes) and prints it. Then it enables GPE0 bit 0 in the
 * FADT's GPE0 block and polls its status: each time the VMM announces a new generation (a
 * restored snapshot), it clears the bit (write 1) and prints the GUID again. Runs until
 * killed (or 120 s).
 *
 * Expected output:
 *   vmgenid: addr 0xef000 gpe0 0x620 len 4
 *   vmgenid: guid xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx
 *   vmgenid: ready
 *   vmgenid: new generation N guid xxxxxxxx-... gpe0_sts 0x1 after 0x0 sci 1   (each restore;
 *   sci: the SCI, IRQ SCI_INT routed level/active high to vector 0x63 with interrupts off,
 *   is pending in the local APIC)
 * Exit: on failure "vmgenid: FAIL <why>" and debug-exit 15 (kvmini exits 31); 0 after 120 s. */
#include "kit.h"
#include "acpi.h"

#define SCI_VECTOR 0x63

static uint32_t rd32(uint64_t a)
{
	uint32_t v;
	memcpy(&v, phys(a), 4);
	return v;
}

static void print_guid(const char *prefix, uint64_t addr)
{
	const uint8_t *g = phys(addr);
	uint32_t d1;
	uint16_t d2, d3;
	memcpy(&d1, g, 4);
	memcpy(&d2, g + 4, 2);
	memcpy(&d3, g + 6, 2);
	printf("%sguid %08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", prefix, d1, d2, d3, g[8],
	       g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
}

int guest_main(const struct boot_params *bp)
{
	uint64_t fadt = acpi_find_table("FACP");
	if (!fadt || rd32(fadt + 4) < 148) {
		puts("vmgenid: FAIL no FADT");
		return 15;
	}
	uint64_t dsdt = rd32(fadt + 40);
	if (!dsdt || dsdt >= 0x100000000ull || rd32(dsdt + 4) < 36 || rd32(dsdt + 4) > 65536 ||
	    memcmp(phys(dsdt), "DSDT", 4)) {
		puts("vmgenid: FAIL no DSDT");
		return 15;
	}
	uint32_t len = rd32(dsdt + 4);
	const uint8_t *d = phys(dsdt);
	uint64_t addr = 0;
	bool hid = false;
	for (uint32_t i = 36; i + 8 <= len && !hid; i++)
		hid = !memcmp(d + i, "QEMUVGID", 8);
	for (uint32_t i = 36; i + 17 <= len; i++) {
		const uint8_t *m = d + i;
		if (memcmp(m, "ADDR", 4) || m[4] != 0 || m[5] != 0xa4 || m[6] != 0x12 ||
		    m[8] != 2 || m[9] != 0x0c || m[14] != 0x0c)
			continue;
		uint32_t lo, hi;
		memcpy(&lo, m + 10, 4);
		memcpy(&hi, m + 15, 4);
		addr = (uint64_t)hi << 32 | lo;
		break;
	}
	if (!hid || !addr || addr >= 0x100000000ull) {
		puts("vmgenid: FAIL no VM generation ID device with an ADDR method");
		return 15;
	}
	uint32_t gpe0 = rd32(fadt + 80);
	uint8_t gpe0_len = ((const uint8_t *)phys(fadt))[92];
	printf("vmgenid: addr 0x%lx gpe0 0x%x len %u\n", (unsigned long)addr, gpe0, gpe0_len);
	if (!gpe0 || gpe0 > 0xfff0 || gpe0_len < 2) {
		puts("vmgenid: FAIL no GPE0 block");
		return 15;
	}
	uint16_t sts = (uint16_t)gpe0, en = (uint16_t)(gpe0 + gpe0_len / 2);
	/* The SCI (FADT SCI_INT) to vector 0x63, level, active high, with interrupts off: a
	 * delivered SCI stays pending in the local APIC's IRR, where the guest looks for it. */
	const uint8_t *f = phys(fadt);
	unsigned sci = (unsigned)(f[46] | f[47] << 8);
	if (sci >= ioapic_pins()) {
		puts("vmgenid: FAIL no usable SCI");
		return 15;
	}
	pic_remap(0x20);
	pic_set_mask(0xffff);
	lapic_enable();
	ioapic_write(0x10 + 2 * sci + 1, lapic_id() << 24);
	ioapic_write(0x10 + 2 * sci, SCI_VECTOR | 1u << 15);
	print_guid("vmgenid: ", addr);
	printf("\n");
	outb(sts, 0xff);
	outb(en, 1);
	puts("vmgenid: ready");
	unsigned gen = 0;
	uint64_t t0 = rdtsc();
	while (rdtsc() - t0 < 120 * TSC_HZ_MAX) {
		uint8_t s = inb(sts);
		if (!(s & 1)) {
			tsc_delay(TSC_HZ_MAX / 1000);
			continue;
		}
		tsc_delay(TSC_HZ_MAX / 100);
		uint32_t irr = lapic_read(0x200 + (SCI_VECTOR / 32) * 0x10);
		outb(sts, 1);
		uint8_t after = inb(sts);
		gen++;
		printf("vmgenid: new generation %u ", gen);
		print_guid("", addr);
		printf(" gpe0_sts 0x%x after 0x%x sci %u\n", s, after,
		       (irr >> (SCI_VECTOR % 32)) & 1);
	}
	return 0;
}
