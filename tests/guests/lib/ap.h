/* Starting application processors: INIT + STARTUP IPIs with vector 8, so each AP begins in
 * real mode at 0x8000 (CS 0x0800, IP 0) in a trampoline (trampoline.S) copied there, which
 * goes through 32-bit protected mode to long mode with the BSP's CR3, loads a per-CPU stack
 * and calls into C. There the AP loads the kit's GDT and IDT, enables its LAPIC, checks in,
 * runs the caller's function and halts with interrupts off. */
#ifndef KIT_AP_H
#define KIT_AP_H

#include <stdint.h>

#define AP_TRAMPOLINE_ADDR 0x8000
#define AP_MAX_APIC_ID	   63
#define AP_STACK_SIZE	   8192

typedef void (*ap_fn_t)(unsigned apic_id);

/* Starts the AP with this APIC ID (1..63) running fn(apic_id). Returns 0 once the AP is
 * running C code on its stack (fn may still be running), -1 if it did not check in within
 * timeout_cycles TSC cycles, -2 for a bad APIC ID, -3 if the IPIs could not be sent. Start
 * APs one at a time (the trampoline holds one stack pointer). */
int ap_start(unsigned apic_id, ap_fn_t fn, uint64_t timeout_cycles);

#endif
