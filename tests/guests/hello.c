/* hello: the smallest guest.
 *
 * Expected output:
 *   Hello from the kvmini test guest
 * Exit: power-off (kvmini exits 0). */
#include "kit.h"

int guest_main(const struct boot_params *bp)
{
	puts("Hello from the kvmini test guest");
	return 0;
}
