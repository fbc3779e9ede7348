/* powerbtn: the ACPI fixed power button as an OS sees it. Reads the FADT for the PM1a event
 * block, SCI_INT and the PWR_BUTTON flag (clear = a fixed power button), routes the SCI's
 * IOAPIC pin (the ISA IRQ, identity-mapped with the MADT's override: level, active high)
 * to vector 0x62 with interrupts off (the 8259s remapped and masked), clears PM1_STS, sets
 * PWRBTN_EN (bit 8) in PM1_EN and prints the ready line. Then it polls PM1_STS until PWRBTN_STS is
 * set (the host's QMP or HMP system_powerdown), checks that the SCI reached the local APIC (its IRR
 * bit for 0x62), and enables interrupts: the handler reads PM1_STS, clears PWRBTN_STS by writing 1
 * and EOIs. The status must then read 0 and the line must not interrupt again. Finally the guest
 * powers off through PM1a_CNT's SLP_EN, as Linux's orderly_poweroff would.
 *
 * Expected output:
 *   powerbtn: pm1a_evt 0x600 len 4 pm1a_cnt 0x604 sci 9 gpe0 0x620 len 4
 *   powerbtn: ready
 *   powerbtn: PWRBTN_STS set, sci pending in the local APIC 1
 *   powerbtn: interrupts 1, status in the handler 0x100, status after 0x0
 *   powerbtn: OK
 * Exit: power-off (kvmini exits 0); on failure "powerbtn: FAIL <why>" and debug-exit 14
 * (kvmini exits 29). No button press within 60 s is a failure. */
#include "kit.h"
#include "acpi.h"

#define SCI_VECTOR 0x62
#define PWRBTN	   0x0100
#define WAIT	   (60 * TSC_HZ_MAX)

static uint16_t sts_port, en_port;
static volatile uint32_t interrupts;
static volatile uint16_t sts_in_handler;

static void sci_irq(struct intr_frame *f)
{
	uint16_t s = inw(sts_port);
	if (!interrupts)
		sts_in_handler = s;
	interrupts++;
	if (s & PWRBTN)
		outw(sts_port, PWRBTN); /* write 1 to clear: the SCI goes down */
	lapic_eoi();
}

static uint32_t rd32(uint64_t a)
{
	uint32_t v;
	memcpy(&v, phys(a), 4);
	return v;
}

int guest_main(const struct boot_params *bp)
{
	uint64_t fadt = acpi_find_table("FACP");
	if (!fadt || rd32(fadt + 4) < 116) {
		puts("powerbtn: FAIL no FADT");
		return 14;
	}
	const uint8_t *f = phys(fadt);
	uint16_t sci = (uint16_t)(f[46] | f[47] << 8);
	uint32_t evt = rd32(fadt + 56), cnt = rd32(fadt + 64), gpe0 = rd32(fadt + 80);
	uint8_t evt_len = f[88], gpe0_len = f[92];
	uint32_t flags = rd32(fadt + 112);
	printf("powerbtn: pm1a_evt 0x%x len %u pm1a_cnt 0x%x sci %u gpe0 0x%x len %u\n", evt,
	       evt_len, cnt, sci, gpe0, gpe0_len);
	if (flags & (1u << 4)) {
		puts("powerbtn: FAIL FADT PWR_BUTTON is set: no fixed power button");
		return 14;
	}
	if (!evt || evt > 0xfffc || evt_len < 4 || sci >= ioapic_pins()) {
		puts("powerbtn: FAIL no usable PM1a event block or SCI");
		return 14;
	}
	sts_port = (uint16_t)evt;
	en_port = (uint16_t)(evt + evt_len / 2);

	/* GSI 9 also reaches the 8259 pair (KVM wires ISA IRQs to both): remap and mask them,
	 * as an OS that uses the IOAPIC does, or the slave would deliver IRQ 9 too. */
	pic_remap(0x20);
	pic_set_mask(0xffff);
	lapic_enable();
	idt_set_handler(SCI_VECTOR, sci_irq);
	/* Level-triggered (bit 15), active high, fixed delivery to this CPU. */
	ioapic_write(0x10 + 2 * sci + 1, lapic_id() << 24);
	ioapic_write(0x10 + 2 * sci, SCI_VECTOR | 1u << 15);

	outw(sts_port, 0xffff);
	outw(en_port, PWRBTN);
	if (!(inw(en_port) & PWRBTN)) {
		puts("powerbtn: FAIL PWRBTN_EN does not stick");
		return 14;
	}
	if (inw(sts_port) & PWRBTN) {
		puts("powerbtn: FAIL PWRBTN_STS set before any press");
		return 14;
	}
	puts("powerbtn: ready");

	uint64_t t0 = rdtsc();
	while (!(inw(sts_port) & PWRBTN)) {
		if (rdtsc() - t0 > WAIT) {
			puts("powerbtn: FAIL no power button press");
			return 14;
		}
		tsc_delay(TSC_HZ_MAX / 1000);
	}
	/* Interrupts are off: a delivered SCI waits in the IRR. Give the IOAPIC a moment. */
	tsc_delay(TSC_HZ_MAX / 100);
	uint32_t irr = lapic_read(0x200 + (SCI_VECTOR / 32) * 0x10);
	unsigned pending = (irr >> (SCI_VECTOR % 32)) & 1;
	printf("powerbtn: PWRBTN_STS set, sci pending in the local APIC %u\n", pending);

	sti();
	uint64_t t1 = rdtsc();
	while (!interrupts && rdtsc() - t1 < 2 * TSC_HZ_MAX)
		cpu_relax();
	/* A little longer: a line left asserted would interrupt again after the EOI. */
	tsc_delay(TSC_HZ_MAX / 50);
	cli();
	uint16_t after = inw(sts_port);
	printf("powerbtn: interrupts %u, status in the handler 0x%x, status after 0x%x\n",
	       interrupts, sts_in_handler, after);
	ioapic_mask(sci);
	if (!pending) {
		puts("powerbtn: FAIL the SCI did not reach the local APIC");
		return 14;
	}
	if (!interrupts || !(sts_in_handler & PWRBTN)) {
		puts("powerbtn: FAIL no SCI interrupt with PWRBTN_STS");
		return 14;
	}
	/* One extra delivery is what this host's KVM shows for a level line (see intx.c). */
	if (interrupts > 2 || (after & PWRBTN)) {
		puts("powerbtn: FAIL PWRBTN_STS or the SCI stayed up after the write-1 clear");
		return 14;
	}
	puts("powerbtn: OK");
	return 0;
}
