/* Intel MultiProcessor Specification 1.4 tables: the CPU list, the IOAPIC and the ISA
 * interrupt routing, as kvmini (and a PC BIOS) describe them. */
#ifndef KIT_MPTABLE_H
#define KIT_MPTABLE_H

#include <stdbool.h>
#include <stdint.h>

#define MP_MAX_CPUS 64

struct mp_info {
	bool found;
	uint64_t fps_addr;   /* the "_MP_" floating pointer */
	uint64_t table_addr; /* the "PCMP" configuration table */
	uint32_t lapic_addr;
	unsigned ncpus; /* enabled processor entries */
	uint8_t apic_id[MP_MAX_CPUS];
	uint8_t bsp_apic_id;
	unsigned nioapics;
	uint8_t ioapic_id;
	uint32_t ioapic_addr;	 /* of the first IOAPIC */
	uint8_t isa_irq_pin[16]; /* IOAPIC pin of ISA IRQ n (0xff: no entry) */
	char oem[9], product[13];
};

/* Scans 0xf0000-0xfffff (where kvmini puts it), the first KiB of the EBDA and the last KiB
 * of base memory for a floating pointer with a valid checksum, then parses its table
 * (checksum checked too). Returns false (mp->found false) if there is none or it is bad;
 * *why then says what was wrong. */
bool mp_read(struct mp_info *mp, const char **why);

#endif
