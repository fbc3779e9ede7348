/* The MP tables read back the way Linux's mpparse.c reads them: by byte offsets from the
 * spec, not by the writer's structs, so a layout mistake in both places cannot cancel out. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/mptable.h"
#include "core/guest_mem.h"

#define MPT_RAM_SIZE (1u << 20)

static uint8_t *mpt_ram;
static struct guest_mem mpt_mem;

static void mpt_setup(void)
{
	mpt_ram = malloc(MPT_RAM_SIZE);
	cr_assert_not_null(mpt_ram);
	/* Garbage, not zeros: every byte the guest relies on must be written. */
	memset(mpt_ram, 0xa5, MPT_RAM_SIZE);
	memset(&mpt_mem, 0, sizeof(mpt_mem));
	cr_assert_eq(guest_mem_add_region(&mpt_mem, 0, MPT_RAM_SIZE, mpt_ram), 0);
}

static void mpt_teardown(void)
{
	free(mpt_ram);
	mpt_ram = NULL;
}

static uint16_t mpt_rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t mpt_rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint8_t mpt_sum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;
	for (size_t i = 0; i < len; i++)
		s += p[i];
	return s;
}

/* As smp_scan_config() does: 16-byte steps, signature, length 1, checksum. */
static const uint8_t *mpt_find_fp(const uint8_t *ram)
{
	for (uint32_t a = 0xf0000; a < 0x100000; a += 16) {
		const uint8_t *p = ram + a;
		if (!memcmp(p, "_MP_", 4) && p[8] == 1 && mpt_sum(p, 16) == 0)
			return p;
	}
	return NULL;
}

struct mpt_seen {
	unsigned entries, cpus, bsps, buses, ioapics, ioints, lints;
	uint8_t ioapic_id;
	uint16_t irq_mask;
};

static void mpt_check(unsigned ncpus)
{
	struct mpt_seen s = {0};

	cr_assert_eq(mptable_write(&mpt_mem, ncpus), 0, "ncpus %u", ncpus);

	const uint8_t *fp = mpt_find_fp(mpt_ram);
	cr_assert_not_null(fp, "no _MP_ floating pointer in 0xf0000-0xfffff");
	cr_assert_eq(fp[9], 4, "spec revision");
	cr_assert_eq(fp[11], 0, "feature byte 1 must say a config table is present");
	cr_assert_eq(fp[12] & 0x80, 0, "IMCR bit must be clear (virtual wire)");

	uint32_t ct = mpt_rd32(fp + 4);
	cr_assert(ct >= 0xf0000 && ct < MPT_RAM_SIZE - 44, "config table at %#x", ct);
	const uint8_t *h = mpt_ram + ct;
	cr_assert_eq(memcmp(h, "PCMP", 4), 0);
	uint16_t len = mpt_rd16(h + 4);
	cr_assert_eq(h[6], 4, "spec revision");
	cr_assert_eq(mpt_sum(h, len), 0, "config table checksum");
	cr_assert_eq(memcmp(h + 8, "KVMINI  ", 8), 0, "OEM ID");
	cr_assert_eq(mpt_rd32(h + 36), 0xfee00000u, "LAPIC address");
	cr_assert_eq(mpt_rd16(h + 40), 0, "extended table length");
	cr_assert_eq(16 + (uint64_t)len, mptable_size(ncpus));

	const uint8_t *p = h + 44, *end = h + len;
	while (p < end) {
		s.entries++;
		switch (p[0]) {
		case 0:
			cr_assert_eq(p[1], s.cpus, "APIC IDs in order");
			cr_assert_eq(p[2], 0x14);
			cr_assert(p[3] & 1, "cpu %u enabled", s.cpus);
			if (p[3] & 2) {
				s.bsps++;
				cr_assert_eq(p[1], 0, "the BSP is cpu 0");
			}
			cr_assert_eq(mpt_rd32(p + 8) & 0x201, 0x201, "FPU and APIC features");
			s.cpus++;
			p += 20;
			break;
		case 1:
			cr_assert_eq(p[1], 0);
			cr_assert_eq(memcmp(p + 2, "ISA   ", 6), 0);
			s.buses++;
			p += 8;
			break;
		case 2:
			s.ioapic_id = p[1];
			cr_assert_eq(p[2], 0x11);
			cr_assert_eq(p[3] & 1, 1, "IOAPIC enabled");
			cr_assert_eq(mpt_rd32(p + 4), 0xfec00000u);
			s.ioapics++;
			p += 8;
			break;
		case 3:
			cr_assert_eq(p[1], 0, "INT type");
			cr_assert_eq(mpt_rd16(p + 2), 0, "conforming polarity/trigger");
			cr_assert_eq(p[4], 0, "source bus ISA");
			cr_assert_lt(p[5], 16);
			cr_assert_eq(p[6], s.ioapic_id, "destination is the IOAPIC");
			cr_assert_eq(p[7], p[5], "ISA IRQ n on pin n, as KVM routes it");
			s.irq_mask |= (uint16_t)(1u << p[5]);
			s.ioints++;
			p += 8;
			break;
		case 4:
			if (p[7] == 0) {
				cr_assert_eq(p[1], 3, "LINT0 is ExtINT");
				cr_assert_eq(p[6], 0, "ExtINT goes to the BSP");
			} else {
				cr_assert_eq(p[7], 1);
				cr_assert_eq(p[1], 1, "LINT1 is NMI");
				cr_assert_eq(p[6], 0xff, "NMI to all local APICs");
			}
			s.lints++;
			p += 8;
			break;
		default:
			cr_assert_fail("unknown entry type %u at offset %td", p[0], p - h);
		}
	}
	cr_assert_eq(p, end, "entries end exactly at the table length");
	cr_assert_eq(mpt_rd16(h + 34), s.entries, "entry count");
	cr_assert_eq(s.cpus, ncpus);
	cr_assert_eq(s.bsps, 1);
	cr_assert_eq(s.buses, 1);
	cr_assert_eq(s.ioapics, 1);
	cr_assert_eq(s.ioapic_id, ncpus, "IOAPIC ID follows the last APIC ID");
	cr_assert_eq(s.ioints, 16);
	cr_assert_eq(s.irq_mask, 0xffff, "each ISA IRQ exactly once");
	cr_assert_eq(s.lints, 2);
}

TestSuite(mptable, .init = mpt_setup, .fini = mpt_teardown);

Test(mptable, one_cpu)
{
	mpt_check(1);
}

Test(mptable, two_cpus)
{
	mpt_check(2);
}

Test(mptable, max_cpus)
{
	mpt_check(64);
}

Test(mptable, rewrite_with_fewer_cpus)
{
	/* The table written last must stand on its own, whatever an earlier, longer one left
	 * behind it. */
	mpt_check(64);
	mpt_check(3);
}

Test(mptable, rejects_bad_cpu_counts_without_writing)
{
	cr_assert_eq(mptable_write(&mpt_mem, 0), -EINVAL);
	cr_assert_eq(mptable_write(&mpt_mem, 65), -EINVAL);
	cr_assert_null(mpt_find_fp(mpt_ram));
}

Test(mptable, size_grows_by_processor_entry)
{
	cr_assert_eq(mptable_size(2) - mptable_size(1), 20);
	cr_assert_leq(mptable_size(64), MPTABLE_MAX_SIZE);
}

Test(mptable, memory_too_small)
{
	struct guest_mem small = {0};
	uint8_t *half = malloc(512 << 10);

	cr_assert_not_null(half);
	cr_assert_eq(guest_mem_add_region(&small, 0, 512 << 10, half), 0);
	cr_assert_eq(mptable_write(&small, 1), -EFAULT);
	free(half);
}

Test(mptable, memory_ending_inside_the_table)
{
	struct guest_mem cut = {0};
	uint64_t size = MPTABLE_START + mptable_size(4) - 1;

	cr_assert_eq(guest_mem_add_region(&cut, 0, size, mpt_ram), 0);
	cr_assert_eq(mptable_write(&cut, 4), -EFAULT);
}

Test(mptable, exact_fit_region)
{
	struct guest_mem exact = {0};

	cr_assert_eq(
	    guest_mem_add_region(&exact, MPTABLE_START, mptable_size(4), mpt_ram + MPTABLE_START),
	    0);
	cr_assert_eq(mptable_write(&exact, 4), 0);
	cr_assert_not_null(mpt_find_fp(mpt_ram));
}
