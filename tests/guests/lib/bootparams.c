#include "bootparams.h"

#include "io.h"
#include "kstring.h"

static uint8_t rd8(const struct boot_params *bp, unsigned off)
{
	return ((const uint8_t *)bp)[off];
}

static uint32_t rd32(const struct boot_params *bp, unsigned off)
{
	uint32_t v;
	memcpy(&v, (const uint8_t *)bp + off, sizeof(v));
	return v;
}

static uint64_t rd64(const struct boot_params *bp, unsigned off)
{
	uint64_t v;
	memcpy(&v, (const uint8_t *)bp + off, sizeof(v));
	return v;
}

unsigned bp_e820_count(const struct boot_params *bp)
{
	unsigned n = rd8(bp, BP_E820_ENTRIES);
	return n > BP_E820_MAX ? BP_E820_MAX : n;
}

struct e820_entry bp_e820_entry(const struct boot_params *bp, unsigned i)
{
	unsigned off = BP_E820_TABLE + 20 * i;
	struct e820_entry e = {
	    .addr = rd64(bp, off),
	    .size = rd64(bp, off + 8),
	    .type = rd32(bp, off + 16),
	};
	return e;
}

uint64_t bp_ram_bytes(const struct boot_params *bp)
{
	uint64_t total = 0;
	for (unsigned i = 0; i < bp_e820_count(bp); i++) {
		struct e820_entry e = bp_e820_entry(bp, i);
		if (e.type == E820_RAM)
			total += e.size;
	}
	return total;
}

const char *e820_type_name(uint32_t type)
{
	switch (type) {
	case E820_RAM:
		return "RAM";
	case E820_RESERVED:
		return "reserved";
	case E820_ACPI:
		return "ACPI";
	case E820_NVS:
		return "NVS";
	case E820_UNUSABLE:
		return "unusable";
	default:
		return "type?";
	}
}

const char *bp_cmdline(const struct boot_params *bp)
{
	uint64_t p = rd32(bp, BP_CMD_LINE_PTR) | (uint64_t)rd32(bp, BP_EXT_CMD_LINE_PTR) << 32;
	return p ? (const char *)phys(p) : "";
}

uint64_t bp_initrd_addr(const struct boot_params *bp)
{
	return rd32(bp, BP_RAMDISK_IMAGE) | (uint64_t)rd32(bp, BP_EXT_RAMDISK_IMAGE) << 32;
}

uint64_t bp_initrd_size(const struct boot_params *bp)
{
	return rd32(bp, BP_RAMDISK_SIZE) | (uint64_t)rd32(bp, BP_EXT_RAMDISK_SIZE) << 32;
}
