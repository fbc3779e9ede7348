#include "devices/legacy.h"

#include <string.h>

#include "util/log.h"

#define DEBUG_EXIT_WIDTH 4

static void debug_exit_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct vm_power *power = opaque;

	if (!is_write) {
		memset(data, 0, len);
		return;
	}
	/* As QEMU's isa-debug-exit: a write to any of its ports exits, with the value written
	 * (the bus only delivers writes that lie wholly inside the range). */
	(void)offset;
	uint32_t v = 0;
	for (uint32_t i = 0; i < len && i < DEBUG_EXIT_WIDTH; i++)
		v |= (uint32_t)data[i] << (8 * i);
	/* Unsigned arithmetic wraps for huge v; clearing bit 31 keeps the status non-negative
	 * without changing the low byte, which is all a process exit status keeps. */
	uint32_t status = ((v << 1) | 1) & 0x7fffffffu;
	log_info("debug-exit: guest wrote 0x%x, exit status %u", v, status);
	power_request_stop(power, STOP_DEBUG_EXIT, (int)status);
}

int debug_exit_attach_at(struct vm_power *power, struct bus *pio, uint16_t port, uint32_t size)
{
	return bus_register(pio, port, size, debug_exit_io, power, "debug-exit");
}

int debug_exit_attach(struct vm_power *power, struct bus *pio)
{
	return debug_exit_attach_at(power, pio, DEBUG_EXIT_PORT, DEBUG_EXIT_WIDTH);
}

static const struct device_ops debug_exit_device_ops = {
    .name = "debug-exit",
    .version = 1,
};

int debug_exit_create(struct device_list *l, struct bus *pio, struct vm_power *power, uint16_t port,
		      uint32_t size)
{
	int ret = device_list_add(l, &debug_exit_device_ops, power, 0);
	if (ret < 0)
		return ret;
	return debug_exit_attach_at(power, pio, port, size);
}
