#include "mptable.h"

#include "io.h"
#include "kstring.h"

static uint8_t sum8(const uint8_t *p, unsigned n)
{
	uint8_t s = 0;
	for (unsigned i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

static uint64_t scan(uint64_t start, uint64_t len)
{
	for (uint64_t a = start; a + 16 <= start + len; a += 16) {
		const uint8_t *p = phys(a);
		if (p[0] == '_' && p[1] == 'M' && p[2] == 'P' && p[3] == '_' && p[8] == 1 &&
		    sum8(p, 16) == 0)
			return a;
	}
	return 0;
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

bool mp_read(struct mp_info *mp, const char **why)
{
	const char *dummy;
	if (!why)
		why = &dummy;
	memset(mp, 0, sizeof(*mp));
	memset(mp->isa_irq_pin, 0xff, sizeof(mp->isa_irq_pin));

	uint64_t fps = scan(0xf0000, 0x10000);
	if (!fps) {
		uint64_t ebda = (uint64_t) * (const uint16_t *)phys(0x40e) << 4;
		if (ebda >= 0x80000 && ebda < 0xa0000)
			fps = scan(ebda, 1024);
	}
	if (!fps)
		fps = scan(0x9fc00, 1024);
	if (!fps) {
		*why = "no MP floating pointer in 0xf0000-0xfffff, EBDA or 0x9fc00";
		return false;
	}
	mp->fps_addr = fps;
	const uint8_t *f = phys(fps);
	mp->table_addr = rd32(f + 4);
	if (!mp->table_addr) {
		*why = "MP floating pointer has no configuration table (default config)";
		return false;
	}
	const uint8_t *t = phys(mp->table_addr);
	if (memcmp(t, "PCMP", 4)) {
		*why = "MP configuration table has no PCMP signature";
		return false;
	}
	uint16_t len = rd16(t + 4);
	if (len < 44 || sum8(t, len) != 0) {
		*why = "MP configuration table checksum is wrong";
		return false;
	}
	memcpy(mp->oem, t + 8, 8);
	memcpy(mp->product, t + 16, 12);
	mp->lapic_addr = rd32(t + 36);
	uint16_t count = rd16(t + 34);

	int isa_bus = -1;
	const uint8_t *e = t + 44, *end = t + len;
	for (unsigned i = 0; i < count && e < end; i++) {
		switch (e[0]) {
		case 0: /* processor */
			if ((e[3] & 1) && mp->ncpus < MP_MAX_CPUS) {
				mp->apic_id[mp->ncpus++] = e[1];
				if (e[3] & 2)
					mp->bsp_apic_id = e[1];
			}
			e += 20;
			break;
		case 1: /* bus */
			if (!memcmp(e + 2, "ISA", 3))
				isa_bus = e[1];
			e += 8;
			break;
		case 2: /* IOAPIC */
			if ((e[3] & 1) && mp->nioapics++ == 0) {
				mp->ioapic_id = e[1];
				mp->ioapic_addr = rd32(e + 4);
			}
			e += 8;
			break;
		case 3: /* I/O interrupt assignment */
			if (e[1] == 0 && isa_bus >= 0 && e[4] == isa_bus && e[5] < 16 &&
			    e[6] == mp->ioapic_id)
				mp->isa_irq_pin[e[5]] = e[7];
			e += 8;
			break;
		case 4: /* local interrupt assignment */
			e += 8;
			break;
		default:
			*why = "MP configuration table has an unknown entry type";
			return false;
		}
	}
	if (!mp->ncpus) {
		*why = "MP configuration table lists no enabled processor";
		return false;
	}
	mp->found = true;
	*why = "";
	return true;
}
