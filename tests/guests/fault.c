/* fault: triple-faults on purpose.
 *
 * Loads an IDT with limit 0 and executes ud2: #UD cannot be delivered (#GP), nor can the
 * #GP (#DF), nor the #DF: a triple fault, which KVM reports as a shutdown. kvmini must say
 * so and exit non-zero.
 *
 * Expected output:
 *   fault: about to triple fault
 * Exit: whatever kvmini does on a triple fault (non-zero). Should the CPU somehow survive,
 * "fault: FAIL still running after the triple fault" and debug-exit 7 (kvmini exits 15). */
#include "kit.h"

int guest_main(const struct boot_params *bp)
{
	puts("fault: about to triple fault");
	idt_load_empty();
	__asm__ volatile("ud2");
	puts("fault: FAIL still running after the triple fault");
	return 7;
}
