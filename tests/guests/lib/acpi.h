/* Finding ACPI tables (read-only): the RSDP in the EBDA or 0xe0000-0xfffff, then the XSDT
 * (revision 2+) or RSDT. Used for the PCI ECAM window (MCFG) and the power-off port
 * (FADT PM1a_CNT_BLK). Works in ring 0 and ring 3 (tables below 4 GiB). */
#ifndef KIT_ACPI_H
#define KIT_ACPI_H

#include <stdint.h>

/* Physical address of the first table with this 4-character signature ("MCFG", "FACP"),
 * 0 if there is none (no RSDP, bad checksum, or the table is missing). */
uint64_t acpi_find_table(const char *sig);
/* The FADT's PM1a_CNT_BLK port, 0 without a FADT. */
uint16_t acpi_pm1a_cnt_port(void);

#endif
