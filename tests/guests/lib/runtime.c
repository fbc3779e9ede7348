#include "kit.h"
#include "acpi.h"

void kit_start(const struct boot_params *bp);
void kit_start(const struct boot_params *bp)
{
	cpu_init_bsp();
	console_init();
	int rc = guest_main(bp);
	if (rc == 0)
		poweroff();
	debug_exit((uint32_t)rc);
}

void halt_forever(void)
{
	if (cpl() == 0) {
		for (;;) {
			cli();
			hlt();
		}
	}
	for (;;)
		cpu_relax();
}

void debug_exit(uint32_t v)
{
	outl(DEBUG_EXIT_PORT, v);
	halt_forever();
}

void poweroff(void)
{
	/* the FADT's port (a BIOS may move it: SeaBIOS uses 0xb004), else kvmini's 0x604 */
	uint16_t port = acpi_pm1a_cnt_port();
	outw(port ? port : PM1A_CNT_PORT, PM1A_CNT_SLP_EN);
	/* kvmini stops the VM on that write; a VMM that did not would get a clear code. The
	 * first stop request wins in kvmini, so this one cannot override a power-off. */
	debug_exit(KIT_EXIT_POWEROFF_BAD);
}

void tsc_delay(uint64_t cycles)
{
	uint64_t t0 = rdtsc();
	while (rdtsc() - t0 < cycles)
		cpu_relax();
}
