/* The Linux x86 bzImage format (Documentation/arch/x86/boot.rst): the real-mode setup
 * header, the protected-mode kernel, and its compressed payload. Pure parsing on a buffer:
 * no guest memory, no /dev/kvm. */
#ifndef KVMINI_ARCH_X86_BZIMAGE_H
#define KVMINI_ARCH_X86_BZIMAGE_H

#include <stddef.h>
#include <stdint.h>

#include <asm/bootparam.h>

#include "util/err.h"

#define BZIMAGE_MIN_PROTOCOL 0x0206

enum payload_format {
	PAYLOAD_UNKNOWN = 0,
	PAYLOAD_GZIP,
	PAYLOAD_BZIP2,
	PAYLOAD_LZMA,
	PAYLOAD_XZ,
	PAYLOAD_LZO,
	PAYLOAD_LZ4,
	PAYLOAD_ZSTD,
	PAYLOAD_NONE, /* uncompressed ELF */
};

struct bzimage_info {
	struct setup_header hdr; /* copy of the image's setup header (host byte order) */
	uint16_t protocol;	 /* hdr.version */
	size_t setup_size;     /* bytes of real-mode code incl. boot sector: (setup_sects+1)*512 */
	const uint8_t *kernel; /* protected-mode kernel (points into the image buffer) */
	size_t kernel_size;
	const uint8_t *payload; /* compressed vmlinux inside the kernel, or NULL if unknown */
	size_t payload_size;
	enum payload_format payload_format;
	uint64_t pref_address; /* hdr.pref_address (XLF_KERNEL_64 implies protocol >= 2.12) */
	uint32_t init_size;    /* memory the kernel needs from its load address */
};

/* Validates the setup header: boot-sector and "HdrS" magics, protocol >= 2.06, 64-bit entry
 * (XLF_KERNEL_64), sizes inside the buffer. Returns 0 or -ENOEXEC/-EINVAL with e filled
 * (naming the field, its offset and value). */
int bzimage_parse(const uint8_t *img, size_t len, struct bzimage_info *out, struct errbuf *e);

/* Detects the compression of a payload from its magic bytes. */
enum payload_format payload_detect(const uint8_t *p, size_t len);
const char *payload_format_name(enum payload_format f);

/* Decompresses a bzImage payload (gzip, xz, zstd, lz4 legacy frame, lzma, bzip2) with
 * Debian's libraries into a malloc'ed buffer. max_out bounds the output (a hostile image
 * cannot make us allocate more). Returns 0 or -errno with e filled. */
int payload_decompress(const uint8_t *p, size_t len, enum payload_format f, size_t max_out,
		       uint8_t **out, size_t *out_len, struct errbuf *e);

#endif
