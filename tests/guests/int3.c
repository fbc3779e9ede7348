/* int3: a breakpoint handled by the guest's own #BP handler.
 *
 * On PVM hosts the ring-0 emulator cannot run int3; kvmini recovers by injecting #BP
 * (vector 3) with RIP past the int3, as the hardware would (#BP is a trap). The handler
 * checks the saved RIP is the byte after the int3, records the hit, and returns there.
 *
 * Expected output:
 *   int3: breakpoint handled at 0x00000000001000f0   (the int3's own address)
 *   int3: resumed
 * Exit: power-off (kvmini exits 0). debug-exit 8 (kvmini exits 17) with a "int3: FAIL ..."
 * line if the handler did not run, ran more than once, or saw a RIP that is not just past
 * the int3 (or a register was not preserved across it). */
#include "kit.h"

extern const char int3_site[];

static volatile unsigned hits;
static volatile uint64_t hit_rip;

static void bp_handler(struct intr_frame *f)
{
	hits++;
	hit_rip = f->rip;
	if (f->rip != (uint64_t)(uintptr_t)int3_site + 1) {
		printf("int3: FAIL #BP reported rip 0x%lx, expected 0x%lx (just past the int3 at "
		       "0x%lx)\n",
		       f->rip, (uint64_t)(uintptr_t)int3_site + 1, (uint64_t)(uintptr_t)int3_site);
		debug_exit(8);
	}
	printf("int3: breakpoint handled at 0x%016lx\n", f->rip - 1);
}

int guest_main(const struct boot_params *bp)
{
	idt_set_handler(3, bp_handler);
	uint64_t magic = 0x1234567890abcdefull;
	__asm__ volatile(".globl int3_site\n"
			 "int3_site:\n\t"
			 "int3"
			 : "+r"(magic)
			 :
			 : "memory");
	if (hits != 1) {
		printf("int3: FAIL the #BP handler ran %u times, expected once\n", hits);
		return 8;
	}
	if (magic != 0x1234567890abcdefull) {
		printf("int3: FAIL a register changed across the int3 (0x%lx)\n", magic);
		return 8;
	}
	puts("int3: resumed");
	return 0;
}
