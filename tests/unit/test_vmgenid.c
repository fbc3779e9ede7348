/* The VM generation ID device: UUID text <-> the guest's (Microsoft) byte order, the GUID
 * written at VMGENID_ADDR, kept by a reset, and replaced (with GPE0 bit 0 raised) by every
 * load, which is what a restored snapshot does. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/bus.h"
#include "core/device.h"
#include "core/guest_mem.h"
#include "core/power.h"
#include "devices/vmgenid.h"

static struct guest_mem g_mem;
static uint8_t *g_ram;
static struct device_list g_list;
static struct bus g_bus;
static struct vm_power g_power;
static struct pm *g_pm;

static void setup(void)
{
	memset(&g_mem, 0, sizeof(g_mem));
	g_ram = calloc(1, 1 << 20);
	cr_assert_not_null(g_ram);
	cr_assert_eq(guest_mem_add_region(&g_mem, 0, 1 << 20, g_ram), 0);
	device_list_init(&g_list);
	cr_assert_eq(bus_init(&g_bus, "pio"), 0);
	cr_assert_eq(power_init(&g_power), 0);
	cr_assert_eq(pm_create(&g_list, &g_bus, &g_power, -1, &g_pm), 0);
}

static void teardown(void)
{
	device_list_destroy(&g_list);
	power_destroy(&g_power);
	bus_destroy(&g_bus);
	guest_mem_destroy(&g_mem);
	free(g_ram);
}

TestSuite(vmgenid, .init = setup, .fini = teardown);

Test(vmgenid, uuid_text_and_guest_byte_order)
{
	uint8_t g[VMGENID_SIZE];
	cr_assert_eq(vmgenid_parse("00112233-4455-6677-8899-aabbccddeeff", g), 0);
	static const uint8_t want[VMGENID_SIZE] = {0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66,
						   0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
	cr_assert_arr_eq(g, want, VMGENID_SIZE, "first three fields little-endian");
	char text[37];
	vmgenid_format(g, text);
	cr_assert_str_eq(text, "00112233-4455-6677-8899-aabbccddeeff");
	cr_assert_eq(vmgenid_parse("00112233-4455-6677-8899-AABBCCDDEEFF", g), 0);
	const char *bad[] = {"",
			     "00112233-4455-6677-8899-aabbccddeef",
			     "00112233-4455-6677-8899-aabbccddeeff0",
			     "0011223344556677-8899-aabbccddeeff",
			     "00112233-4455-6677-8899-aabbccddeefg",
			     "00112233+4455-6677-8899-aabbccddeeff"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(vmgenid_parse(bad[i], g), -EINVAL, "accepted \"%s\"", bad[i]);
}

static struct device *find(void)
{
	struct device *d = device_list_find(&g_list, "vmgenid", 0);
	cr_assert_not_null(d);
	return d;
}

Test(vmgenid, given_guid_in_memory_kept_by_reset_replaced_by_each_load)
{
	uint8_t given[VMGENID_SIZE], got[VMGENID_SIZE];
	cr_assert_eq(vmgenid_parse("12345678-9abc-4def-8123-456789abcdef", given), 0);
	struct vmgenid *v;
	cr_assert_eq(vmgenid_create(&g_list, &g_mem, g_pm, given, &v), 0);
	cr_assert_arr_eq(g_ram + VMGENID_ADDR, given, VMGENID_SIZE);
	/* A reset writes it back over whatever the guest put there. */
	memset(g_ram + VMGENID_ADDR, 0, VMGENID_SIZE);
	device_list_reset(&g_list);
	cr_assert_arr_eq(g_ram + VMGENID_ADDR, given, VMGENID_SIZE);

	struct state_writer w = {0};
	cr_assert_eq(device_save(find(), &w), 0);
	/* The guest enabled GPE0 bit 0; a load (restore) brings a new GUID and raises it. */
	uint8_t en[2] = {1, 0};
	cr_assert(bus_dispatch(&g_bus, PM_GPE0_PORT + 2, en, 2, true));
	cr_assert_not(pm_sci_level(g_pm));
	cr_assert_eq(device_load(find(), w.buf, w.len), 0);
	vmgenid_get(v, got);
	cr_assert(memcmp(got, given, VMGENID_SIZE), "a restore kept the snapshot's GUID");
	cr_assert_arr_eq(g_ram + VMGENID_ADDR, got, VMGENID_SIZE);
	cr_assert_eq(got[7] >> 4, 4, "version 4");
	cr_assert_eq(got[8] >> 6, 2, "RFC 4122 variant");
	uint8_t sts[2] = {0, 0};
	cr_assert(bus_dispatch(&g_bus, PM_GPE0_PORT, sts, 2, false));
	cr_assert_eq(sts[0], 1 << VMGENID_GPE);
	cr_assert(pm_sci_level(g_pm), "no SCI for the new generation");
	/* A second load of the same blob is another generation again. */
	uint8_t first[VMGENID_SIZE];
	memcpy(first, got, VMGENID_SIZE);
	cr_assert_eq(device_load(find(), w.buf, w.len), 0);
	vmgenid_get(v, got);
	cr_assert(memcmp(got, first, VMGENID_SIZE) && memcmp(got, given, VMGENID_SIZE));
	/* A truncated blob is refused and changes nothing. */
	memcpy(first, got, VMGENID_SIZE);
	cr_assert_eq(device_load(find(), w.buf, w.len - 1), -EINVAL);
	vmgenid_get(v, got);
	cr_assert_arr_eq(got, first, VMGENID_SIZE);
	state_writer_free(&w);
}

Test(vmgenid, random_guids_differ)
{
	struct vmgenid *a, *b;
	uint8_t ga[VMGENID_SIZE], gb[VMGENID_SIZE];
	cr_assert_eq(vmgenid_create(&g_list, &g_mem, g_pm, NULL, &a), 0);
	vmgenid_get(a, ga);
	struct device_list other;
	device_list_init(&other);
	cr_assert_eq(vmgenid_create(&other, &g_mem, NULL, NULL, &b), 0);
	vmgenid_get(b, gb);
	cr_assert(memcmp(ga, gb, VMGENID_SIZE), "two random GUIDs are equal");
	device_list_destroy(&other);
}
