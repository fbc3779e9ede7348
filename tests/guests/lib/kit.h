/* The kvmini test-guest kit: everything a guest program includes.
 *
 * A guest defines `int guest_main(const struct boot_params *bp)`. The runtime (crt0.S +
 * runtime.c) sets its own stack, GDT (with user segments and a TSS) and an IDT that reports
 * any exception, initialises COM1, then calls guest_main. Returning 0 powers the VM off
 * (kvmini exits 0); returning v in 1..0x7e debug-exits with v (kvmini exits (v << 1) | 1).
 * An unexpected exception or interrupt debug-exits with KIT_EXIT_EXCEPTION (kvmini: 255). */
#ifndef KIT_KIT_H
#define KIT_KIT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io.h"
#include "kstring.h"
#include "atomic.h"
#include "console.h"
#include "bootparams.h"
#include "cpu.h"
#include "apic.h"
#include "mptable.h"
#include "ap.h"

#define KIT_EXIT_EXCEPTION    0x7f /* unexpected exception or interrupt */
#define KIT_EXIT_POWEROFF_BAD 0x7d /* the power-off write did not stop the VM */

#define DEBUG_EXIT_PORT	 0xf4
#define PM1A_CNT_PORT	 0x604
#define PM1A_CNT_SLP_EN	 0x2000
#define BOOT_MARKER_PORT 0x80

struct boot_params;
int guest_main(const struct boot_params *bp);

/* Stops the VM through the debug-exit port: kvmini exits with (v << 1) | 1. Works from
 * ring 3 too (IOPL 3). Never returns. */
__attribute__((noreturn)) void debug_exit(uint32_t v);
/* ACPI power-off (SLP_EN at the FADT's PM1a_CNT_BLK, 0x604 without one): kvmini exits 0. Falls back
 * to debug_exit(0x7d) if the VM keeps running. Never returns. */
__attribute__((noreturn)) void poweroff(void);
/* Halts this CPU forever (cli; hlt in ring 0, a pause loop in ring 3). */
__attribute__((noreturn)) void halt_forever(void);
/* Writes a boot-progress code (0x40..0x7f) to port 0x80; kvmini logs it with its time. */
static inline void boot_marker(uint8_t code)
{
	outb(BOOT_MARKER_PORT, code);
}

/* Busy-waits at least `cycles` TSC cycles. */
void tsc_delay(uint64_t cycles);
/* For timeouts when the TSC frequency is unknown: an upper bound on it, so a timeout of
 * n * TSC_HZ_MAX cycles lasts at least n seconds. */
#define TSC_HZ_MAX 5000000000ull

#endif
