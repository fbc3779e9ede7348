/* serial-echo: interrupt-driven UART input.
 *
 * Enables the received-data interrupt (IER bit 0) of COM1 and routes IRQ 4 through the
 * IOAPIC (the pin the MP table gives for ISA IRQ 4, vector 0x24, to the BSP; the PIC is
 * masked), or through the PIC (vector 0x24 via LINT0 ExtINT) if the command line holds
 * `serial_irq=pic`. The interrupt handler drains the receive FIFO into a ring buffer; the
 * main loop sleeps in hlt and turns the buffer into lines (ended by '\n' or '\r'; empty
 * lines are skipped; longer lines than 256 bytes are cut). Bytes that do not fit in the
 * ring stay in the UART until there is room: input is never dropped.
 *
 * A break on the line (LSR.BI: kvmini's Ctrl-A b) is not data: its NUL is dropped and the
 * main loop reports it as "serial-echo: break <n>".
 *
 * Expected output, for input lines "hello" and "quit":
 *   serial-echo: irq 4 -> ioapic pin 4, vector 0x24
 *   serial-echo: ready
 *   echo: hello
 *   echo: quit
 *   serial-echo: 2 receive interrupts              (the count varies)
 *   serial-echo: bye
 * Exit: power-off after the line "quit" (kvmini exits 0). With no input it waits forever.
 * debug-exit 5 (kvmini exits 11) if the MP table has no IOAPIC route for IRQ 4. */
#include "kit.h"

#define SERIAL_VECTOR 0x24
#define RX_RING	      1024
#define LINE_MAX      256

static volatile uint8_t ring[RX_RING];
static volatile uint32_t ring_head, ring_tail; /* head: written by the handler */
static volatile uint32_t irq_count;
static volatile uint32_t break_count;
static bool use_pic;

/* Moves received bytes into the ring while it has room. What does not fit stays in the
 * UART (and kvmini's queue behind it) until the main loop has made room and drains again:
 * nothing is dropped. */
static void uart_drain(void)
{
	(void)inb(COM1_BASE + UART_IIR); /* acknowledge */
	while (ring_head - ring_tail < RX_RING) {
		uint8_t lsr = inb(COM1_BASE + UART_LSR);
		if (!(lsr & UART_LSR_DR))
			break;
		uint8_t b = inb(COM1_BASE + UART_RBR);
		if (lsr & UART_LSR_BI) {
			break_count++;
			continue;
		}
		ring[ring_head % RX_RING] = b;
		ring_head++;
	}
}

static void serial_irq(struct intr_frame *f)
{
	irq_count++;
	uart_drain();
	if (use_pic)
		pic_eoi(COM1_IRQ);
	else
		lapic_eoi();
}

int guest_main(const struct boot_params *bp)
{
	use_pic = cmdline_has_word(bp_cmdline(bp), "serial_irq=pic");
	idt_set_handler(SERIAL_VECTOR, serial_irq);
	lapic_enable();
	pic_remap(PIC_VECTOR_BASE);
	if (use_pic) {
		lapic_route_pic();
		pic_set_mask((uint16_t) ~(1u << COM1_IRQ));
		printf("serial-echo: irq %u -> pic, vector 0x%x\n", COM1_IRQ, SERIAL_VECTOR);
	} else {
		struct mp_info mp;
		const char *why;
		unsigned pin = COM1_IRQ;
		if (mp_read(&mp, &why)) {
			if (mp.isa_irq_pin[COM1_IRQ] == 0xff) {
				printf("serial-echo: FAIL the MP table routes ISA IRQ %u nowhere\n",
				       COM1_IRQ);
				return 5;
			}
			pin = mp.isa_irq_pin[COM1_IRQ];
		}
		ioapic_route(pin, SERIAL_VECTOR, (uint8_t)lapic_id());
		printf("serial-echo: irq %u -> ioapic pin %u, vector 0x%x\n", COM1_IRQ, pin,
		       SERIAL_VECTOR);
	}
	/* Input that arrived before this point stays in the UART: the main loop looks at LSR
	 * before each sleep, so it is read even though its interrupt edge came too early. */
	outb(COM1_BASE + UART_IER, 0x01);
	puts("serial-echo: ready");

	char line[LINE_MAX + 1];
	unsigned len = 0;
	uint32_t breaks_reported = 0;
	for (;;) {
		cli();
		if (break_count != breaks_reported) {
			breaks_reported = break_count;
			sti();
			printf("serial-echo: break %u\n", breaks_reported);
			continue;
		}
		if (ring_tail == ring_head) {
			/* An edge lost while the line was already high would leave data
			 * unread forever: look once before sleeping. */
			if (inb(COM1_BASE + UART_LSR) & UART_LSR_DR)
				uart_drain();
			if (ring_tail == ring_head) {
				if (break_count == breaks_reported)
					sti_hlt();
				else
					sti();
				continue;
			}
		}
		sti();
		while (ring_tail != ring_head) {
			/* A break drained with the bytes after it is reported before them. */
			if (break_count != breaks_reported) {
				breaks_reported = break_count;
				printf("serial-echo: break %u\n", breaks_reported);
			}
			char c = (char)ring[ring_tail % RX_RING];
			ring_tail++;
			if (c != '\n' && c != '\r') {
				if (len < LINE_MAX)
					line[len++] = c;
				continue;
			}
			if (len == 0)
				continue;
			line[len] = '\0';
			printf("echo: %s\n", line);
			if (!strcmp(line, "quit")) {
				printf("serial-echo: %u receive interrupts\n", irq_count);
				puts("serial-echo: bye");
				return 0;
			}
			len = 0;
		}
	}
}
