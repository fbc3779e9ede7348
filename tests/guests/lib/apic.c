#include "apic.h"

#include "io.h"

uint32_t lapic_read(uint32_t reg)
{
	return mmio_read32(LAPIC_BASE + reg);
}

void lapic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(LAPIC_BASE + reg, v);
}

void lapic_enable(void)
{
	lapic_write(LAPIC_SVR, 0x100 | 0xff);
	lapic_write(LAPIC_TPR, 0);
}

uint32_t lapic_id(void)
{
	return lapic_read(LAPIC_ID) >> 24;
}

void lapic_eoi(void)
{
	lapic_write(LAPIC_EOI, 0);
}

void lapic_route_pic(void)
{
	lapic_write(LAPIC_LVT_LINT0, LAPIC_DELIVERY_EXTINT);
	lapic_write(LAPIC_LVT_LINT1, LAPIC_DELIVERY_NMI);
}

bool lapic_send_ipi(uint32_t dest, uint32_t icr_low)
{
	lapic_write(LAPIC_ICR_HIGH, dest << 24);
	lapic_write(LAPIC_ICR_LOW, icr_low);
	for (unsigned i = 0; i < 1000; i++) {
		if (!(lapic_read(LAPIC_ICR_LOW) & ICR_SEND_PENDING))
			return true;
		cpu_relax();
	}
	return false;
}

void lapic_timer_start(uint8_t vector, bool periodic, bool masked, uint32_t div_code,
		       uint32_t initial)
{
	lapic_write(LAPIC_TIMER_DIV, div_code);
	lapic_write(LAPIC_LVT_TIMER, vector | (periodic ? LAPIC_TIMER_PERIODIC : 0) |
					 (masked ? LAPIC_LVT_MASKED : 0));
	lapic_write(LAPIC_TIMER_INIT, initial);
}

void lapic_timer_stop(void)
{
	lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED);
	lapic_write(LAPIC_TIMER_INIT, 0);
}

uint32_t lapic_timer_current(void)
{
	return lapic_read(LAPIC_TIMER_CUR);
}

uint32_t ioapic_read(uint32_t reg)
{
	mmio_write32(IOAPIC_BASE, reg);
	return mmio_read32(IOAPIC_BASE + 0x10);
}

void ioapic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(IOAPIC_BASE, reg);
	mmio_write32(IOAPIC_BASE + 0x10, v);
}

unsigned ioapic_pins(void)
{
	return ((ioapic_read(1) >> 16) & 0xff) + 1;
}

void ioapic_route(unsigned pin, uint8_t vector, uint8_t dest)
{
	ioapic_write(0x10 + 2 * pin + 1, (uint32_t)dest << 24);
	ioapic_write(0x10 + 2 * pin, vector);
}

void ioapic_mask(unsigned pin)
{
	ioapic_write(0x10 + 2 * pin, 1u << 16);
}

#define PIC1_CMD  0x20
#define PIC1_DATA 0x21
#define PIC2_CMD  0xa0
#define PIC2_DATA 0xa1

void pic_remap(uint8_t base)
{
	outb(PIC1_CMD, 0x11); /* ICW1: edge, cascade, ICW4 follows */
	outb(PIC2_CMD, 0x11);
	outb(PIC1_DATA, base); /* ICW2: vector base */
	outb(PIC2_DATA, (uint8_t)(base + 8));
	outb(PIC1_DATA, 0x04); /* ICW3: slave on IRQ 2 */
	outb(PIC2_DATA, 0x02);
	outb(PIC1_DATA, 0x01); /* ICW4: 8086 mode, normal EOI */
	outb(PIC2_DATA, 0x01);
	pic_set_mask(0xffff);
}

void pic_set_mask(uint16_t mask)
{
	if ((mask & 0xff00) != 0xff00)
		mask &= (uint16_t) ~(1u << 2);
	outb(PIC1_DATA, (uint8_t)mask);
	outb(PIC2_DATA, (uint8_t)(mask >> 8));
}

void pic_eoi(unsigned irq)
{
	if (irq >= 8)
		outb(PIC2_CMD, 0x20);
	outb(PIC1_CMD, 0x20);
}

void pit_start_periodic(uint16_t divisor)
{
	outb(0x43, 0x34); /* channel 0, lobyte/hibyte, mode 2, binary */
	outb(0x40, (uint8_t)divisor);
	outb(0x40, (uint8_t)(divisor >> 8));
}

void pit_stop(void)
{
	outb(0x43, 0x30); /* channel 0, lobyte/hibyte, mode 0: one shot, then silence */
	outb(0x40, 0);
	outb(0x40, 0);
}
