/* Minimal ACPI tables so that Linux finds every CPU (MADT), can power off (FADT PM1a
 * control block + a DSDT holding \_S5) and finds the PCI root bridge (DSDT) and its ECAM
 * window (MCFG). Some kernels (Debian's cloud kernel) are built without MP-table parsing,
 * so the MADT is the only CPU list they read. */
#ifndef KVMINI_ARCH_X86_ACPI_H
#define KVMINI_ARCH_X86_ACPI_H

#include <stdint.h>

#include "core/guest_mem.h"

/* Tables live in 0xe0000-0xeffff, with the RSDP at its start: inside the 0xe0000-0xfffff
 * window Linux scans for "RSD PTR " and reported to it directly through
 * boot_params.acpi_rsdp_addr and hvm_start_info.rsdp_paddr. */
#define ACPI_TABLES_START 0xe0000ull
#define ACPI_TABLES_SIZE  0x10000ull
#define ACPI_RSDP_ADDR	  ACPI_TABLES_START

/* The fixed-hardware registers the FADT describes; the devices behind them are in
 * src/devices (pm at 0x600-0x605). */
#define ACPI_PM1A_EVT_PORT 0x600 /* PM1a status (2 bytes) + enable (2 bytes) */
#define ACPI_PM1A_CNT_PORT 0x604 /* PM1a control (2 bytes): SLP_TYP bits 10-12, SLP_EN bit 13 */
#define ACPI_GPE0_PORT	   0x620 /* GPE0 status (2 bytes) + enable (2 bytes) */
#define ACPI_GPE0_LEN	   4
#define ACPI_RESET_PORT	   0xcf9 /* FADT RESET_REG: the reset control register */
#define ACPI_RESET_VALUE   0x06
#define ACPI_SCI_IRQ	   9
#define ACPI_S5_SLP_TYP	   5

/* Writes RSDP (rev 2, XSDT only), XSDT (FADT, MADT, MCFG), FACS, FADT (rev 6: PM1a event/control
 * and GPE0 blocks above, a fixed power button, SCI 9, no SMI command port, so the OS finds the
 * machine already in ACPI mode), DSDT (\_S5 = {5, 5}; Device \_SB.PCI0, PNP0A03, with _CRS: bus 0,
 * ports 0xcf8-0xcff, I/O 0-0xcf7 and 0xd00-0xffff, memory 0xc0000000-0xdfffffff; Device \_SB.VGEN,
 * the VM generation ID, whose ADDR returns VMGENID_ADDR as {low, high}; \_GPE._E00 notifying it),
 * MADT (one enabled local APIC per CPU, APIC IDs 0..ncpus-1; one IOAPIC, ID ncpus, at 0xfec00000,
 * GSI base 0; an interrupt source override for the SCI: IRQ 9 -> GSI 9, active high, level; LINT1 =
 * NMI on all CPUs), MCFG (the PCI ECAM window of segment 0, buses 0..X86_PCI_ECAM_BUSES-1 at
 * X86_PCI_ECAM_BASE). Every table's checksum is valid. Returns 0, -EINVAL for ncpus 0 or > 64,
 * -EFAULT if memory is missing, -ENOSPC if the tables would not fit. */
int acpi_write_tables(const struct guest_mem *mem, unsigned ncpus);

/* Bytes from ACPI_TABLES_START the tables occupy for ncpus (the whole window if ncpus is
 * out of range). */
uint64_t acpi_tables_size(unsigned ncpus);

#endif
