/* isa-debug-exit where -device puts it: every port of iobase..iobase+iosize-1 ends the VM,
 * the ports around it do not answer. */
#include <criterion/criterion.h>

#include <errno.h>

#include "core/bus.h"
#include "core/power.h"
#include "devices/legacy.h"

static struct bus dx_bus;
static struct vm_power dx_power;

static void dx_setup(void)
{
	cr_assert_eq(bus_init(&dx_bus, "pio"), 0);
	cr_assert_eq(power_init(&dx_power), 0);
}

static void dx_teardown(void)
{
	power_destroy(&dx_power);
	bus_destroy(&dx_bus);
}

TestSuite(debug_exit, .init = dx_setup, .fini = dx_teardown);

static bool dx_out(uint16_t port, uint32_t v, uint32_t len)
{
	uint8_t b[4];

	for (uint32_t i = 0; i < len; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	return bus_dispatch(&dx_bus, port, b, len, true);
}

static enum stop_reason dx_stop(int *status)
{
	*status = -1;
	return power_stop_reason(&dx_power, status);
}

Test(debug_exit, qemu_default_ports_both_exit)
{
	int status;

	cr_assert_eq(debug_exit_attach_at(&dx_power, &dx_bus, 0x501, 2), 0);
	cr_assert(!dx_out(0x500, 1, 1), "0x500 is below the range");
	cr_assert(!dx_out(0x503, 1, 1), "0x503 is past iosize=2");
	cr_assert(!dx_out(0xf4, 1, 4), "kvmini's own port is gone once moved");
	cr_assert_eq(dx_stop(&status), STOP_NONE);
	cr_assert(dx_out(0x502, 0x10, 1), "the last port, iobase + iosize - 1");
	cr_assert_eq(dx_stop(&status), STOP_DEBUG_EXIT);
	cr_assert_eq(status, 0x21);
}

Test(debug_exit, first_port_word_write)
{
	int status;

	cr_assert_eq(debug_exit_attach_at(&dx_power, &dx_bus, 0x501, 2), 0);
	cr_assert(dx_out(0x501, 0x0003, 2));
	cr_assert_eq(dx_stop(&status), STOP_DEBUG_EXIT);
	cr_assert_eq(status, 7);
}

Test(debug_exit, tutorial_f4_dword)
{
	int status;

	cr_assert_eq(debug_exit_attach_at(&dx_power, &dx_bus, 0xf4, 4), 0);
	cr_assert(dx_out(0xf4, 0x10, 4));
	cr_assert_eq(dx_stop(&status), STOP_DEBUG_EXIT);
	cr_assert_eq(status, 0x21);
}

Test(debug_exit, inner_port_exits_as_qemu)
{
	int status;

	cr_assert_eq(debug_exit_attach(&dx_power, &dx_bus), 0);
	cr_assert(dx_out(0xf6, 2, 1), "kvmini's default range is 0xf4..0xf7");
	cr_assert_eq(dx_stop(&status), STOP_DEBUG_EXIT);
	cr_assert_eq(status, 5);
}

Test(debug_exit, one_port_range)
{
	int status;

	cr_assert_eq(debug_exit_attach_at(&dx_power, &dx_bus, 0x80, 1), 0);
	cr_assert(!dx_out(0x80, 1, 2), "a word write runs past a one-port range");
	cr_assert_eq(dx_stop(&status), STOP_NONE);
	cr_assert(dx_out(0x80, 1, 1));
	cr_assert_eq(dx_stop(&status), STOP_DEBUG_EXIT);
	cr_assert_eq(status, 3);
}

Test(debug_exit, overlap_is_refused)
{
	cr_assert_eq(debug_exit_attach_at(&dx_power, &dx_bus, 0xf4, 4), 0);
	cr_assert_eq(debug_exit_attach_at(&dx_power, &dx_bus, 0xf7, 2), -EEXIST);
}
