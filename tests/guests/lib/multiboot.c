/* Multiboot (v1) entry support: QEMU's -kernel loads the guests through the multiboot
 * header in crt0.S (QEMU offers no Linux 64-bit entry for an ELF); crt0's 32-bit stub
 * enters long mode and calls multiboot_boot_params, which builds the zero page the kit
 * reads (command line, e820 from the multiboot memory map, the first module as initrd).
 * kvmini never takes this path: it enters at _start with its own zero page. */
#include "kit.h"

#define MBI_FLAG_MEM	 (1u << 0)
#define MBI_FLAG_CMDLINE (1u << 2)
#define MBI_FLAG_MODS	 (1u << 3)
#define MBI_FLAG_MMAP	 (1u << 6)

static uint8_t zero_page[4096] __attribute__((aligned(4096)));

static uint32_t rd32(uint64_t a)
{
	uint32_t v;
	memcpy(&v, phys(a), 4);
	return v;
}

static void wr32(unsigned off, uint32_t v)
{
	memcpy(zero_page + off, &v, 4);
}

const struct boot_params *multiboot_boot_params(uint32_t mbi);
const struct boot_params *multiboot_boot_params(uint32_t mbi)
{
	memset(zero_page, 0, sizeof(zero_page));
	uint32_t flags = rd32(mbi);
	static const char empty[1];
	wr32(BP_CMD_LINE_PTR, (uint32_t)(uintptr_t)empty);
	if (flags & MBI_FLAG_CMDLINE) {
		/* QEMU passes "<kernel path> <append>": drop the first word */
		const char *c = phys(rd32(mbi + 16));
		while (*c && *c != ' ')
			c++;
		while (*c == ' ')
			c++;
		wr32(BP_CMD_LINE_PTR, (uint32_t)(uintptr_t)c);
	}
	if ((flags & MBI_FLAG_MODS) && rd32(mbi + 20)) {
		uint32_t mod = rd32(mbi + 24);
		uint32_t start = rd32(mod), end = rd32(mod + 4);
		wr32(BP_RAMDISK_IMAGE, start);
		wr32(BP_RAMDISK_SIZE, end - start);
	}
	unsigned n = 0;
	if (flags & MBI_FLAG_MMAP) {
		uint64_t p = rd32(mbi + 48), end = p + rd32(mbi + 44);
		while (p + 24 <= end && n < BP_E820_MAX) {
			uint32_t size = rd32(p);
			uint8_t *e = zero_page + BP_E820_TABLE + 20 * n++;
			memcpy(e, phys(p + 4), 20); /* base, length, type: the e820 layout */
			p += size + 4;
		}
	} else if (flags & MBI_FLAG_MEM) {
		struct {
			uint64_t addr, size;
			uint32_t type;
		} __attribute__((packed)) r[2] = {
		    {0, (uint64_t)rd32(mbi + 4) << 10, E820_RAM},
		    {0x100000, (uint64_t)rd32(mbi + 8) << 10, E820_RAM},
		};
		memcpy(zero_page + BP_E820_TABLE, r, sizeof(r));
		n = 2;
	}
	zero_page[BP_E820_ENTRIES] = (uint8_t)n;
	return (const struct boot_params *)zero_page;
}
