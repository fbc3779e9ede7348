#include "arch/x86/mptable.h"
#include "util/checksum.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

/* Layouts from the Intel MultiProcessor Specification 1.4, chapter 4. The tables are
 * little-endian and are built in host memory, so the host must be too. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "MP tables are little-endian");

struct mp_floating_ptr {
	char signature[4]; /* "_MP_" */
	uint32_t config_table;
	uint8_t length; /* in 16-byte paragraphs */
	uint8_t spec_rev;
	uint8_t checksum;
	uint8_t feature1; /* 0: a configuration table follows (no default configuration) */
	uint8_t feature2; /* bit 7 IMCR: 0 = virtual-wire mode, there is no IMCR to program */
	uint8_t feature3_5[3];
} __attribute__((packed));

struct mp_config_header {
	char signature[4]; /* "PCMP" */
	uint16_t base_length;
	uint8_t spec_rev;
	uint8_t checksum;
	char oem_id[8];
	char product_id[12];
	uint32_t oem_table;
	uint16_t oem_table_size;
	uint16_t entry_count;
	uint32_t lapic_addr;
	uint16_t ext_length;
	uint8_t ext_checksum;
	uint8_t reserved;
} __attribute__((packed));

struct mp_processor {
	uint8_t type;
	uint8_t lapic_id;
	uint8_t lapic_version;
	uint8_t flags;
	uint32_t signature;
	uint32_t features;
	uint32_t reserved[2];
} __attribute__((packed));

struct mp_bus {
	uint8_t type;
	uint8_t bus_id;
	char bus_type[6];
} __attribute__((packed));

struct mp_ioapic {
	uint8_t type;
	uint8_t id;
	uint8_t version;
	uint8_t flags;
	uint32_t addr;
} __attribute__((packed));

/* Type 3 (I/O interrupt assignment) and type 4 (local interrupt assignment) share this
 * layout; for type 4 dst_id is a local APIC and dst_pin its LINTIN pin. */
struct mp_intsrc {
	uint8_t type;
	uint8_t irq_type;
	uint16_t flags;
	uint8_t src_bus;
	uint8_t src_irq;
	uint8_t dst_id;
	uint8_t dst_pin;
} __attribute__((packed));

_Static_assert(sizeof(struct mp_floating_ptr) == 16, "MP floating pointer is 16 bytes");
_Static_assert(sizeof(struct mp_config_header) == 44, "MP config header is 44 bytes");
_Static_assert(sizeof(struct mp_processor) == 20, "MP processor entry is 20 bytes");
_Static_assert(sizeof(struct mp_bus) == 8, "MP bus entry is 8 bytes");
_Static_assert(sizeof(struct mp_ioapic) == 8, "MP I/O APIC entry is 8 bytes");
_Static_assert(sizeof(struct mp_intsrc) == 8, "MP interrupt entry is 8 bytes");

enum {
	MP_ENTRY_PROCESSOR = 0,
	MP_ENTRY_BUS = 1,
	MP_ENTRY_IOAPIC = 2,
	MP_ENTRY_IOINT = 3,
	MP_ENTRY_LOCALINT = 4,
};

enum { MP_INT = 0, MP_NMI = 1, MP_SMI = 2, MP_EXTINT = 3 };

#define MP_SPEC_REV	  4
#define MP_MAX_CPUS	  64
#define MP_ISA_IRQS	  16
#define MP_ISA_BUS_ID	  0
#define MP_CPU_ENABLED	  0x01
#define MP_CPU_BSP	  0x02
#define MP_IOAPIC_ENABLED 0x01
#define MP_ALL_LAPICS	  0xff
/* What KVM's in-kernel local APIC and IOAPIC report in their version registers. */
#define MP_LAPIC_VERSION  0x14
#define MP_IOAPIC_VERSION 0x11
/* Linux only prints these; any family-6 part with an FPU and a local APIC will do. */
#define MP_CPU_SIGNATURE    ((6u << 8) | (15u << 4) | 11u)
#define MP_CPU_FEATURE_FPU  (1u << 0)
#define MP_CPU_FEATURE_APIC (1u << 9)

#define MP_TABLE_BYTES(n)                                                                       \
	(sizeof(struct mp_floating_ptr) + sizeof(struct mp_config_header) +                     \
	 (n) * sizeof(struct mp_processor) + sizeof(struct mp_bus) + sizeof(struct mp_ioapic) + \
	 (MP_ISA_IRQS + 2) * sizeof(struct mp_intsrc))

/* The -ENOSPC of the interface cannot happen for any accepted ncpus: proven here. */
_Static_assert(MP_TABLE_BYTES(MP_MAX_CPUS) <= MPTABLE_MAX_SIZE, "MP table fits its area");
_Static_assert(MPTABLE_START + MPTABLE_MAX_SIZE <= (1ull << 20),
	       "Linux scans for the floating pointer below 1 MiB only");

uint64_t mptable_size(unsigned ncpus)
{
	return MP_TABLE_BYTES((uint64_t)ncpus);
}

/* Appends one entry at *pos in buf, counting it for the header. */
static void mp_put(uint8_t *buf, size_t *pos, uint16_t *count, const void *entry, size_t len)
{
	memcpy(buf + *pos, entry, len);
	*pos += len;
	(*count)++;
}

int mptable_write(const struct guest_mem *mem, unsigned ncpus)
{
	uint8_t buf[MP_TABLE_BYTES(MP_MAX_CPUS)];
	const size_t fp_off = 0, hdr_off = sizeof(struct mp_floating_ptr);
	size_t pos = hdr_off + sizeof(struct mp_config_header);
	uint16_t count = 0;
	const uint8_t ioapic_id = (uint8_t)ncpus; /* the first ID no local APIC uses */

	if (ncpus == 0 || ncpus > MP_MAX_CPUS)
		return -EINVAL;
	memset(buf, 0, sizeof(buf));

	for (unsigned i = 0; i < ncpus; i++) {
		struct mp_processor cpu = {
		    .type = MP_ENTRY_PROCESSOR,
		    .lapic_id = (uint8_t)i,
		    .lapic_version = MP_LAPIC_VERSION,
		    .flags = MP_CPU_ENABLED | (i == 0 ? MP_CPU_BSP : 0),
		    .signature = MP_CPU_SIGNATURE,
		    .features = MP_CPU_FEATURE_FPU | MP_CPU_FEATURE_APIC,
		};
		mp_put(buf, &pos, &count, &cpu, sizeof(cpu));
	}

	struct mp_bus bus = {.type = MP_ENTRY_BUS, .bus_id = MP_ISA_BUS_ID};
	memcpy(bus.bus_type, "ISA   ", sizeof(bus.bus_type));
	mp_put(buf, &pos, &count, &bus, sizeof(bus));

	struct mp_ioapic ioapic = {
	    .type = MP_ENTRY_IOAPIC,
	    .id = ioapic_id,
	    .version = MP_IOAPIC_VERSION,
	    .flags = MP_IOAPIC_ENABLED,
	    .addr = (uint32_t)IOAPIC_ADDR,
	};
	mp_put(buf, &pos, &count, &ioapic, sizeof(ioapic));

	/* KVM's default GSI routing wires ISA IRQ n to IOAPIC pin n, IRQ 0 included (no
	 * IRQ0->pin 2 override as on real chipsets), so the table must say the same or Linux
	 * would wait on the wrong pin for the timer. Flags 0: the ISA bus's own polarity and
	 * trigger (active high, edge). */
	for (uint8_t irq = 0; irq < MP_ISA_IRQS; irq++) {
		struct mp_intsrc src = {
		    .type = MP_ENTRY_IOINT,
		    .irq_type = MP_INT,
		    .src_bus = MP_ISA_BUS_ID,
		    .src_irq = irq,
		    .dst_id = ioapic_id,
		    .dst_pin = irq,
		};
		mp_put(buf, &pos, &count, &src, sizeof(src));
	}

	/* Virtual-wire mode: the 8259 reaches the BSP through LINT0 as ExtINT (only the BSP,
	 * as the spec's default configurations have it); NMI goes to LINT1 of every CPU. */
	struct mp_intsrc lint0 = {
	    .type = MP_ENTRY_LOCALINT,
	    .irq_type = MP_EXTINT,
	    .src_bus = MP_ISA_BUS_ID,
	    .dst_id = 0,
	    .dst_pin = 0,
	};
	mp_put(buf, &pos, &count, &lint0, sizeof(lint0));
	struct mp_intsrc lint1 = {
	    .type = MP_ENTRY_LOCALINT,
	    .irq_type = MP_NMI,
	    .src_bus = MP_ISA_BUS_ID,
	    .dst_id = MP_ALL_LAPICS,
	    .dst_pin = 1,
	};
	mp_put(buf, &pos, &count, &lint1, sizeof(lint1));

	struct mp_config_header hdr = {
	    .signature = {'P', 'C', 'M', 'P'},
	    .base_length = (uint16_t)(pos - hdr_off),
	    .spec_rev = MP_SPEC_REV,
	    .entry_count = count,
	    .lapic_addr = (uint32_t)LAPIC_ADDR,
	};
	memcpy(hdr.oem_id, "KVMINI  ", sizeof(hdr.oem_id));
	memcpy(hdr.product_id, "KVMINI      ", sizeof(hdr.product_id));
	memcpy(buf + hdr_off, &hdr, sizeof(hdr));
	/* The checksum covers the entries too, so it comes last. */
	buf[hdr_off + offsetof(struct mp_config_header, checksum)] =
	    table_checksum(buf + hdr_off, pos - hdr_off);

	struct mp_floating_ptr fp = {
	    .signature = {'_', 'M', 'P', '_'},
	    .config_table = (uint32_t)(MPTABLE_START + hdr_off),
	    .length = 1,
	    .spec_rev = MP_SPEC_REV,
	};
	fp.checksum = table_checksum((const uint8_t *)&fp, sizeof(fp));
	memcpy(buf + fp_off, &fp, sizeof(fp));

	return guest_mem_write(mem, MPTABLE_START, buf, pos);
}
