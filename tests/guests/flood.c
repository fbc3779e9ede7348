/* flood: writes many numbered lines as fast as the UART lets it, for tests of output
 * backpressure (a reader that stops reading must stall the guest, not lose its bytes).
 *
 * Output, with `lines=N` on the command line (default 1000):
 *   flood 00000 abcdefghijklmnopqrstuvwxyz
 *   ...
 *   flood <N-1> abcdefghijklmnopqrstuvwxyz
 *   flood: done
 * Unlike the kit's console, which gives up waiting for THRE after a while (so a UART that
 * never drains cannot hang a test guest), flood waits as long as THRE says to: a byte it
 * wrote and a byte lost can only be kvmini's doing.
 * Exit: power-off (kvmini exits 0). */
#include "kit.h"

static void flood_write(const char *s)
{
	static unsigned room;
	for (; *s; s++) {
		while (room == 0) {
			if (inb(COM1_BASE + UART_LSR) & UART_LSR_THRE)
				room = 16; /* an empty 16-byte FIFO */
			else
				cpu_relax();
		}
		outb(COM1_BASE + UART_THR, (uint8_t)*s);
		room--;
	}
}

int guest_main(const struct boot_params *bp)
{
	uint64_t lines = 1000;
	char line[64];
	cmdline_get_u64(bp_cmdline(bp), "lines", &lines);
	for (uint64_t i = 0; i < lines; i++) {
		snprintf(line, sizeof(line), "flood %05u abcdefghijklmnopqrstuvwxyz\n",
			 (unsigned)i);
		flood_write(line);
	}
	flood_write("flood: done\n");
	return 0;
}
