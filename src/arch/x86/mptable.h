/* Intel MultiProcessor Specification 1.4 tables, so that Linux (and the test guests) find
 * every CPU, the IOAPIC and the ISA interrupt routing without ACPI. */
#ifndef KVMINI_ARCH_X86_MPTABLE_H
#define KVMINI_ARCH_X86_MPTABLE_H

#include <stdint.h>

#include "core/guest_mem.h"

/* Where the floating pointer and table go: the BIOS area 0xf0000-0xfffff, one of the
 * three places the spec tells an OS to scan; 64 KiB holds tables for 64 CPUs with room to
 * spare. e820 marks [0xa0000, 1 MiB) as not RAM. */
#define MPTABLE_START	 0xf0000ull
#define MPTABLE_MAX_SIZE 0x10000ull
#define IOAPIC_ADDR	 0xfec00000ull
#define LAPIC_ADDR	 0xfee00000ull

/* Writes the floating pointer structure and configuration table at MPTABLE_START for ncpus
 * processors (APIC IDs 0..ncpus-1, CPU 0 the BSP), one IOAPIC (ID ncpus, GSIs 0-23), an ISA
 * bus, and identity-mapped ISA IRQ 0-15 routing (plus ExtINT for the PIC on pin 0).
 * Returns 0, -EINVAL for ncpus 0 or > 64, -EFAULT if memory is missing, -ENOSPC if the table
 * does not fit. */
int mptable_write(const struct guest_mem *mem, unsigned ncpus);

/* Bytes the tables occupy for ncpus (floating pointer + config table). */
uint64_t mptable_size(unsigned ncpus);

#endif
