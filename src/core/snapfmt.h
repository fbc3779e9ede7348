/* The snapshot file format, without knowledge of KVM or devices: a 32-byte header, then
 * sections, each a 24-byte header and a payload, written front to back as a stream.
 *
 *   header:  "KVMINISN", u32 format version, u32 flags (0), char kvmini_version[12],
 *            u32 CRC32 of the 28 bytes before it
 *   section: u32 type, u32 instance, u64 payload length, u32 CRC32 of the payload,
 *            u32 CRC32 of the 20 header bytes before it; then the payload
 *
 * Integers are little-endian. The memory section's payload is u64 size, u64 pad, pad
 * bytes, then guest RAM starting at a page-aligned file offset (so restore can mmap it);
 * its CRC covers the 16 leading bytes only, not the RAM, which restore never reads up
 * front. Zero pages of RAM are holes in the file. The end section (no payload) is last.
 * The reader checks all of it (header, every CRC, lengths against the file size, the end
 * marker) and reports the first problem in one sentence. */
#ifndef KVMINI_CORE_SNAPFMT_H
#define KVMINI_CORE_SNAPFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define SNAP_MAGIC	    "KVMINISN"
#define SNAP_FORMAT_VERSION 1u
#define SNAP_HEADER_SIZE    32u
#define SNAP_SECTION_HDR    24u
#define SNAP_MAX_SECTION    (64u << 20) /* any section but memory */
#define SNAP_MAX_SECTIONS   4096u
#define SNAP_PAGE_SIZE	    4096u

enum snap_section_type {
	SNAP_SEC_CONFIG = 1, /* what must match: memory, vCPUs, serial ports, devices */
	SNAP_SEC_VM = 2,     /* PIC, IOAPIC, PIT, clock */
	SNAP_SEC_VCPU = 3,   /* instance = vCPU index */
	SNAP_SEC_DEVICE = 4, /* payload: u8 name length, name, then the device's blob */
	SNAP_SEC_MEMORY = 5,
	SNAP_SEC_END = 6,
};

uint32_t snap_crc32(uint32_t crc, const void *p, size_t n);
const char *snap_section_name(uint32_t type);

struct snap_writer {
	int fd;
	uint64_t off;
};

/* Each returns 0 or -errno with e set. */
int snap_write_header(struct snap_writer *w, const char *kvmini_version, struct errbuf *e);
int snap_write_section(struct snap_writer *w, uint32_t type, uint32_t instance, const void *p,
		       size_t n, struct errbuf *e);
/* Guest RAM as a sparse run: zero pages stay holes. With absent_is_zero (RAM that is
 * private anonymous memory, where a page the process never touched reads as zero), pages
 * /proc/self/pagemap shows neither present nor swapped are taken as zero without reading
 * them, which would fault each one in. */
int snap_write_memory(struct snap_writer *w, const uint8_t *ram, uint64_t size, bool absent_is_zero,
		      struct errbuf *e);
int snap_write_end(struct snap_writer *w, struct errbuf *e);

struct snap_section {
	uint32_t type, instance;
	uint64_t offset; /* of the payload in the file */
	uint64_t len;
	uint8_t *data; /* the payload (NULL for the memory section) */
};

struct snap_file {
	char version[13]; /* the kvmini that wrote it */
	struct snap_section *sec;
	unsigned nsec;
	bool has_memory;
	uint64_t mem_offset, mem_size; /* RAM's file offset (page-aligned) and size */
};

/* Reads and checks the whole file except RAM's bytes. 0, or -EINVAL (bad file) / -errno
 * (I/O) with e set to one sentence; f needs snap_file_free() only after success. */
int snap_file_read(struct snap_file *f, int fd, struct errbuf *e);
void snap_file_free(struct snap_file *f);
const struct snap_section *snap_file_find(const struct snap_file *f, uint32_t type,
					  uint32_t instance);

#endif
