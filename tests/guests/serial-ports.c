/* serial-ports: finds the PC's four serial ports and writes a line into each one present.
 *
 * A port is present when its scratch register keeps what is written to it (an absent port
 * reads all-ones). Each present port is set up for 8N1 with its FIFOs on and gets, polled
 * (LSR.THRE before each 16-byte burst, as the kit's console does):
 *   ttyS<n>: hello from 0x<base>
 * Then COM1 (the kit's console; nowhere if ttyS0 is absent) gets a summary:
 *   serial-ports: ttyS0 present, ttyS1 present, ttyS2 absent, ttyS3 absent
 * Exit: power-off (kvmini exits 0). */
#include "kit.h"

static const uint16_t bases[4] = {0x3f8, 0x2f8, 0x3e8, 0x2e8};

static bool port_present(uint16_t base)
{
	outb(base + 7, 0x5a);
	if (inb(base + 7) != 0x5a)
		return false;
	outb(base + 7, 0xa5);
	return inb(base + 7) == 0xa5;
}

static void port_write(uint16_t base, const char *s)
{
	unsigned room = 0;
	for (; *s; s++) {
		while (room == 0) {
			if (inb(base + UART_LSR) & UART_LSR_THRE)
				room = 16;
			else
				cpu_relax();
		}
		outb(base + UART_THR, (uint8_t)*s);
		room--;
	}
}

int guest_main(const struct boot_params *bp)
{
	bool present[4];
	char line[64];

	for (unsigned i = 0; i < 4; i++) {
		present[i] = port_present(bases[i]);
		if (!present[i])
			continue;
		outb(bases[i] + UART_IER, 0x00);
		outb(bases[i] + UART_LCR, 0x03);
		outb(bases[i] + UART_FCR, 0x07);
		outb(bases[i] + UART_MCR, 0x03);
		snprintf(line, sizeof(line), "ttyS%u: hello from 0x%x\n", i, bases[i]);
		port_write(bases[i], line);
	}
	printf("serial-ports: ttyS0 %s, ttyS1 %s, ttyS2 %s, ttyS3 %s\n",
	       present[0] ? "present" : "absent", present[1] ? "present" : "absent",
	       present[2] ? "present" : "absent", present[3] ? "present" : "absent");
	return 0;
}
