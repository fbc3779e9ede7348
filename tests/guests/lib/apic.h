/* Interrupt controllers and timers: local APIC (xAPIC MMIO at 0xfee00000), IOAPIC
 * (0xfec00000), the 8259A PIC pair and the 8254 PIT. */
#ifndef KIT_APIC_H
#define KIT_APIC_H

#include <stdbool.h>
#include <stdint.h>

#define LAPIC_BASE  0xfee00000ull
#define IOAPIC_BASE 0xfec00000ull

/* LAPIC registers */
#define LAPIC_ID	 0x020
#define LAPIC_VERSION	 0x030
#define LAPIC_TPR	 0x080
#define LAPIC_EOI	 0x0b0
#define LAPIC_SVR	 0x0f0
#define LAPIC_ICR_LOW	 0x300
#define LAPIC_ICR_HIGH	 0x310
#define LAPIC_LVT_TIMER	 0x320
#define LAPIC_LVT_LINT0	 0x350
#define LAPIC_LVT_LINT1	 0x360
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR	 0x390
#define LAPIC_TIMER_DIV	 0x3e0

#define LAPIC_LVT_MASKED      (1u << 16)
#define LAPIC_TIMER_PERIODIC  (1u << 17)
#define LAPIC_DELIVERY_EXTINT (7u << 8)
#define LAPIC_DELIVERY_NMI    (4u << 8)

#define ICR_INIT	 0x00004500u /* INIT, level assert */
#define ICR_STARTUP	 0x00004600u /* STARTUP (| vector = start page) */
#define ICR_FIXED	 0x00004000u /* fixed (| vector) */
#define ICR_SEND_PENDING (1u << 12)

uint32_t lapic_read(uint32_t reg);
void lapic_write(uint32_t reg, uint32_t v);
/* Software-enables the LAPIC (SVR bit 8, spurious vector 0xff), TPR 0. */
void lapic_enable(void);
uint32_t lapic_id(void);
void lapic_eoi(void);
/* LINT0 as ExtINT (unmasked), LINT1 as NMI: what a BIOS leaves for the PIC to reach the CPU
 * through the LAPIC (KVM delivers PIC interrupts only so, once the LAPIC is enabled). */
void lapic_route_pic(void);
/* Sends an IPI (ICR low value) to the APIC ID dest and waits (bounded) for delivery. Returns
 * false if the delivery-status bit never cleared. */
bool lapic_send_ipi(uint32_t dest, uint32_t icr_low);
/* LAPIC timer. div_code is the divide-configuration value (0xb: 1, 0x0: 2, 0x1: 4, 0x2: 8,
 * 0x3: 16, 0x8: 32, 0x9: 64, 0xa: 128). */
void lapic_timer_start(uint8_t vector, bool periodic, bool masked, uint32_t div_code,
		       uint32_t initial);
void lapic_timer_stop(void);
uint32_t lapic_timer_current(void);

/* IOAPIC */
uint32_t ioapic_read(uint32_t reg);
void ioapic_write(uint32_t reg, uint32_t v);
unsigned ioapic_pins(void);
/* Routes pin to vector on APIC ID dest: fixed, physical, edge, active high, unmasked. */
void ioapic_route(unsigned pin, uint8_t vector, uint8_t dest);
void ioapic_mask(unsigned pin);

/* 8259A PIC pair: remapped to vectors base..base+15 (ICW4 8086 mode, cascade on IRQ 2). */
#define PIC_VECTOR_BASE 0x20
void pic_remap(uint8_t base);
/* Bit n set masks IRQ n (IRQ 2, the cascade, is never masked when any slave IRQ is open). */
void pic_set_mask(uint16_t mask);
void pic_eoi(unsigned irq);

/* 8254 PIT */
#define PIT_HZ 1193182u
/* Channel 0, mode 2 (rate generator), lobyte/hibyte: IRQ 0 at PIT_HZ / divisor. */
void pit_start_periodic(uint16_t divisor);
/* Channel 0 back to mode 0 with count 0 (stops the periodic interrupts). */
void pit_stop(void);

#endif
