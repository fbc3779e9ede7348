#include "arch/x86/bzimage.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#define SETUP_HEADER_OFFSET 0x1f1
#define BOOT_FLAG_MAGIC	    0xAA55
#define HDRS_MAGIC	    0x53726448 /* "HdrS" little-endian */
#define SECTOR_SIZE	    512
/* xloadflags, and with it any way to advertise a 64-bit entry point, appeared in 2.12. */
#define XLOADFLAGS_PROTOCOL 0x020c

#define HDR_OFF(field) (SETUP_HEADER_OFFSET + offsetof(struct setup_header, field))

static int is_pow2_u32(uint32_t v)
{
	return v && !(v & (v - 1));
}

int bzimage_parse(const uint8_t *img, size_t len, struct bzimage_info *out, struct errbuf *e)
{
	const size_t hdr_end = SETUP_HEADER_OFFSET + sizeof(struct setup_header);
	struct setup_header h;

	memset(out, 0, sizeof(*out));
	if (!img || len < hdr_end)
		return errf(e, -ENOEXEC,
			    "not a bzImage: the file is %zu bytes, shorter than the setup header "
			    "which ends at offset 0x%zx",
			    len, hdr_end);
	memcpy(&h, img + SETUP_HEADER_OFFSET, sizeof(h));

	if (h.boot_flag != BOOT_FLAG_MAGIC)
		return errf(e, -ENOEXEC,
			    "not a bzImage: boot_flag at offset 0x%zx is 0x%04x, expected 0xaa55",
			    HDR_OFF(boot_flag), h.boot_flag);
	if (h.header != HDRS_MAGIC)
		return errf(e, -ENOEXEC,
			    "not a bzImage: header magic at offset 0x%zx is 0x%08x, expected "
			    "\"HdrS\" (0x53726448)",
			    HDR_OFF(header), h.header);
	if (h.version < BZIMAGE_MIN_PROTOCOL)
		return errf(
		    e, -ENOEXEC,
		    "not a bzImage: boot protocol %u.%02u at offset 0x%zx is older than %u.%02u",
		    h.version >> 8, h.version & 0xff, HDR_OFF(version), BZIMAGE_MIN_PROTOCOL >> 8,
		    BZIMAGE_MIN_PROTOCOL & 0xff);
	if (h.version < XLOADFLAGS_PROTOCOL)
		return errf(
		    e, -ENOEXEC,
		    "kernel has no 64-bit entry point: boot protocol %u.%02u at offset 0x%zx "
		    "predates xloadflags (2.12), so XLF_KERNEL_64 cannot be declared",
		    h.version >> 8, h.version & 0xff, HDR_OFF(version));
	if (!(h.xloadflags & XLF_KERNEL_64))
		return errf(
		    e, -ENOEXEC,
		    "kernel has no 64-bit entry point: xloadflags at offset 0x%zx is 0x%04x "
		    "(XLF_KERNEL_64 clear)",
		    HDR_OFF(xloadflags), h.xloadflags);
	if (!(h.loadflags & LOADED_HIGH))
		return errf(e, -ENOEXEC,
			    "not a bzImage: loadflags at offset 0x%zx is 0x%02x, LOADED_HIGH clear "
			    "(a zImage that loads at 0x10000)",
			    HDR_OFF(loadflags), h.loadflags);

	/* Protocol >= 2.12 guarantees every field used below (payload 2.08, pref_address and
	 * init_size 2.10) is defined, so no per-version fallbacks are needed. */
	unsigned int sects = h.setup_sects ? h.setup_sects : 4;
	size_t setup_size = ((size_t)sects + 1) * SECTOR_SIZE;
	if (setup_size >= len)
		return errf(e, -EINVAL,
			    "bzImage is truncated: setup_sects at offset 0x%zx is %u, so the setup "
			    "code is %zu bytes, but the file is only %zu bytes",
			    HDR_OFF(setup_sects), h.setup_sects, setup_size, len);
	size_t kernel_size = len - setup_size;

	/* syssize counts the protected-mode code the build produced; anything after it (Debian
	 * appends an Authenticode signature) is harmless, but less than it means the file was
	 * cut short. */
	uint64_t sys_bytes = (uint64_t)h.syssize * 16;
	if (sys_bytes > kernel_size)
		return errf(e, -EINVAL,
			    "bzImage is truncated: syssize at offset 0x%zx says the protected-mode "
			    "kernel is %llu bytes, but only %zu bytes follow the %zu-byte setup",
			    HDR_OFF(syssize), (unsigned long long)sys_bytes, kernel_size,
			    setup_size);

	uint32_t payload_end;
	if (__builtin_add_overflow(h.payload_offset, h.payload_length, &payload_end) ||
	    payload_end > kernel_size)
		return errf(e, -EINVAL,
			    "bzImage payload is outside the kernel: payload_offset 0x%x (offset "
			    "0x%zx) + payload_length 0x%x (offset 0x%zx) exceeds the %zu-byte "
			    "protected-mode kernel",
			    h.payload_offset, HDR_OFF(payload_offset), h.payload_length,
			    HDR_OFF(payload_length), kernel_size);
	if (h.payload_length == 0)
		return errf(e, -EINVAL,
			    "bzImage has no payload: payload_length at offset 0x%zx is 0",
			    HDR_OFF(payload_length));

	if (h.relocatable_kernel && !is_pow2_u32(h.kernel_alignment))
		return errf(
		    e, -EINVAL,
		    "bzImage is inconsistent: kernel_alignment at offset 0x%zx is 0x%x, not "
		    "a power of two",
		    HDR_OFF(kernel_alignment), h.kernel_alignment);
	if (h.init_size == 0)
		return errf(e, -EINVAL, "bzImage is inconsistent: init_size at offset 0x%zx is 0",
			    HDR_OFF(init_size));
	uint64_t init_end;
	if (__builtin_add_overflow(h.pref_address, (uint64_t)h.init_size, &init_end))
		return errf(
		    e, -EINVAL,
		    "bzImage is inconsistent: pref_address 0x%llx (offset 0x%zx) + init_size "
		    "0x%x overflows 64 bits",
		    (unsigned long long)h.pref_address, HDR_OFF(pref_address), h.init_size);

	out->hdr = h;
	out->protocol = h.version;
	out->setup_size = setup_size;
	out->kernel = img + setup_size;
	out->kernel_size = kernel_size;
	out->payload = out->kernel + h.payload_offset;
	out->payload_size = h.payload_length;
	out->payload_format = payload_detect(out->payload, out->payload_size);
	out->pref_address = h.pref_address;
	out->init_size = h.init_size;
	return 0;
}
