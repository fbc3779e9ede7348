#include "devices/legacy.h"

#include <string.h>

#include "util/log.h"

#define PM1A_CNT_WIDTH 2

static void pm_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct vm_power *power = opaque;

	if (!is_write) {
		memset(data, 0, len); /* SCI_EN clear: the guest sees legacy (non-ACPI) mode */
		return;
	}
	/* A byte write to the high half (0x605) can set SLP_EN on its own. */
	uint32_t v = 0;
	for (uint32_t i = 0; i < len && offset + i < PM1A_CNT_WIDTH; i++)
		v |= (uint32_t)data[i] << (8 * (offset + i));
	if (v & PM1A_CNT_SLP_EN) {
		log_info("pm: guest set SLP_EN (PM1a_CNT 0x%04x): powering off", v);
		power_request_stop(power, STOP_POWEROFF, 0);
	}
}

int pm_attach(struct vm_power *power, struct bus *pio)
{
	return bus_register(pio, PM1A_CNT_PORT, PM1A_CNT_WIDTH, pm_io, power, "pm1a-cnt");
}
