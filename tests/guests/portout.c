/* portout: writes one value to one I/O port, so a test can see which ports a device
 * (here isa-debug-exit, moved with -device) answers.
 *
 * Command line: port=N (required), value=V (default 1), width=1|2|4 (default 1).
 * Expected output:
 *   portout: writing 0x<V> to port 0x<N> (<width> bytes)
 *   portout: nothing stopped the VM        (only if the write did not end it)
 * Exit: whatever the write causes (isa-debug-exit: (V << 1) | 1); else power-off (0);
 * without port=: 19 (v = 9). */
#include "kit.h"

int guest_main(const struct boot_params *bp)
{
	const char *cmdline = bp_cmdline(bp);
	uint64_t port, value = 1, width = 1;

	if (!cmdline_get_u64(cmdline, "port", &port) || port > 0xffff) {
		puts("portout: FAIL: no port=N (0 to 0xffff) on the command line");
		return 9;
	}
	cmdline_get_u64(cmdline, "value", &value);
	cmdline_get_u64(cmdline, "width", &width);
	printf("portout: writing 0x%lx to port 0x%lx (%lu bytes)\n", value, port, width);
	if (width == 4)
		outl((uint16_t)port, (uint32_t)value);
	else if (width == 2)
		outw((uint16_t)port, (uint16_t)value);
	else
		outb((uint16_t)port, (uint8_t)value);
	puts("portout: nothing stopped the VM");
	return 0;
}
