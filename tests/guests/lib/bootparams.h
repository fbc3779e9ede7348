/* Reading the Linux zero page (struct boot_params) kvmini passes in RSI. Only the fields the
 * guests use, by their offsets in the uapi <asm/bootparam.h> layout. */
#ifndef KIT_BOOTPARAMS_H
#define KIT_BOOTPARAMS_H

#include <stdbool.h>
#include <stdint.h>

struct boot_params; /* opaque: read it with the functions below */

#define BP_EXT_RAMDISK_IMAGE 0x0c0 /* u32 */
#define BP_EXT_RAMDISK_SIZE  0x0c4 /* u32 */
#define BP_EXT_CMD_LINE_PTR  0x0c8 /* u32 */
#define BP_E820_ENTRIES	     0x1e8 /* u8 */
#define BP_RAMDISK_IMAGE     0x218 /* u32, hdr.ramdisk_image */
#define BP_RAMDISK_SIZE	     0x21c /* u32, hdr.ramdisk_size */
#define BP_CMD_LINE_PTR	     0x228 /* u32, hdr.cmd_line_ptr */
#define BP_E820_TABLE	     0x2d0 /* struct boot_e820_entry[128], 20 bytes each */
#define BP_E820_MAX	     128

#define E820_RAM      1
#define E820_RESERVED 2
#define E820_ACPI     3
#define E820_NVS      4
#define E820_UNUSABLE 5

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};

/* Number of e820 entries (capped at BP_E820_MAX). */
unsigned bp_e820_count(const struct boot_params *bp);
/* Entry i (i < bp_e820_count). */
struct e820_entry bp_e820_entry(const struct boot_params *bp, unsigned i);
/* Total bytes of type-1 (RAM) entries. */
uint64_t bp_ram_bytes(const struct boot_params *bp);
/* "RAM", "reserved", "ACPI", "NVS", "unusable" or "type?". */
const char *e820_type_name(uint32_t type);
/* The command line ("" if kvmini passed none). */
const char *bp_cmdline(const struct boot_params *bp);
/* Initrd address and size (0 and 0 if none). */
uint64_t bp_initrd_addr(const struct boot_params *bp);
uint64_t bp_initrd_size(const struct boot_params *bp);

#endif
