/* ACPI table lookup for the guest kit (see acpi.h). */
#include "acpi.h"

#include "io.h"
#include "kstring.h"

#define BELOW_4G(a) ((a) && (a) < 0x100000000ull)

static uint32_t rd32(uint64_t a)
{
	uint32_t v;
	memcpy(&v, phys(a), 4);
	return v;
}

static uint64_t rd64(uint64_t a)
{
	uint64_t v;
	memcpy(&v, phys(a), 8);
	return v;
}

static bool checksum_ok(uint64_t a, uint32_t len)
{
	const uint8_t *p = phys(a);
	uint8_t sum = 0;
	for (uint32_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + p[i]);
	return sum == 0;
}

static uint64_t find_rsdp(void)
{
	uint16_t seg;
	memcpy(&seg, phys(0x40e), 2);
	uint64_t ebda = (uint64_t)seg << 4;
	if (ebda >= 0x80000 && ebda < 0xa0000)
		for (uint64_t a = ebda; a < ebda + 1024; a += 16)
			if (!memcmp(phys(a), "RSD PTR ", 8) && checksum_ok(a, 20))
				return a;
	for (uint64_t a = 0xe0000; a < 0x100000; a += 16)
		if (!memcmp(phys(a), "RSD PTR ", 8) && checksum_ok(a, 20))
			return a;
	return 0;
}

uint64_t acpi_find_table(const char *sig)
{
	uint64_t rsdp = find_rsdp();
	if (!rsdp)
		return 0;
	uint8_t rev = *(const uint8_t *)phys(rsdp + 15);
	uint64_t sdt = rd32(rsdp + 16);
	unsigned esize = 4;
	if (rev >= 2 && BELOW_4G(rd64(rsdp + 24))) {
		sdt = rd64(rsdp + 24);
		esize = 8;
	}
	if (!BELOW_4G(sdt))
		return 0;
	uint32_t len = rd32(sdt + 4);
	if (len < 36 || len > 4096)
		return 0;
	for (uint32_t o = 36; o + esize <= len; o += esize) {
		uint64_t t = esize == 8 ? rd64(sdt + o) : rd32(sdt + o);
		if (BELOW_4G(t) && !memcmp(phys(t), sig, 4))
			return t;
	}
	return 0;
}

uint16_t acpi_pm1a_cnt_port(void)
{
	uint64_t fadt = acpi_find_table("FACP");
	if (!fadt || rd32(fadt + 4) < 68)
		return 0;
	return (uint16_t)rd32(fadt + 64);
}
