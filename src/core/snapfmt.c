#include "core/snapfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* CRC-32 (IEEE 802.3, zlib's), a nibble at a time: small table, fast enough for state. */
uint32_t snap_crc32(uint32_t crc, const void *p, size_t n)
{
	static const uint32_t t[16] = {0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac,
				       0x76dc4190, 0x6b6b51f4, 0x4db26158, 0x5005713c,
				       0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c,
				       0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c};
	const uint8_t *b = p;
	crc = ~crc;
	for (size_t i = 0; i < n; i++) {
		crc ^= b[i];
		crc = (crc >> 4) ^ t[crc & 15];
		crc = (crc >> 4) ^ t[crc & 15];
	}
	return ~crc;
}

const char *snap_section_name(uint32_t type)
{
	switch (type) {
	case SNAP_SEC_CONFIG:
		return "config";
	case SNAP_SEC_VM:
		return "vm";
	case SNAP_SEC_VCPU:
		return "vcpu";
	case SNAP_SEC_DEVICE:
		return "device";
	case SNAP_SEC_MEMORY:
		return "memory";
	case SNAP_SEC_END:
		return "end";
	}
	return "unknown";
}

static void put32(uint8_t *b, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *b, uint64_t v)
{
	put32(b, (uint32_t)v);
	put32(b + 4, (uint32_t)(v >> 32));
}

static uint32_t get32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t get64(const uint8_t *b)
{
	return get32(b) | (uint64_t)get32(b + 4) << 32;
}

static int write_at(struct snap_writer *w, const void *p, size_t n, struct errbuf *e)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t r = pwrite(w->fd, b, n, (off_t)w->off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return errf(e, r < 0 ? -errno : -EIO, "cannot write the snapshot: %s",
				    r < 0 ? strerror(errno) : "short write");
		b += r;
		n -= (size_t)r;
		w->off += (uint64_t)r;
	}
	return 0;
}

int snap_write_header(struct snap_writer *w, const char *version, struct errbuf *e)
{
	uint8_t h[SNAP_HEADER_SIZE] = {0};
	memcpy(h, SNAP_MAGIC, 8);
	put32(h + 8, SNAP_FORMAT_VERSION);
	strncpy((char *)h + 16, version, 12);
	put32(h + 28, snap_crc32(0, h, 28));
	return write_at(w, h, sizeof(h), e);
}

static void section_header(uint8_t *h, uint32_t type, uint32_t instance, uint64_t len, uint32_t crc)
{
	put32(h, type);
	put32(h + 4, instance);
	put64(h + 8, len);
	put32(h + 16, crc);
	put32(h + 20, snap_crc32(0, h, 20));
}

int snap_write_section(struct snap_writer *w, uint32_t type, uint32_t instance, const void *p,
		       size_t n, struct errbuf *e)
{
	uint8_t h[SNAP_SECTION_HDR];
	section_header(h, type, instance, n, snap_crc32(0, p, n));
	int ret = write_at(w, h, sizeof(h), e);
	return ret < 0 ? ret : write_at(w, p, n, e);
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)p;
	for (unsigned i = 0; i < SNAP_PAGE_SIZE / 8; i += 4)
		if (q[i] | q[i + 1] | q[i + 2] | q[i + 3])
			return false;
	return true;
}

/* Which of the pages at ram are in memory or swap: one pagemap entry (u64) per 4 KiB page,
 * bit 63 present, bit 62 swapped. */
#define PAGEMAP_PRESENT (1ull << 63)
#define PAGEMAP_SWAPPED (1ull << 62)
#define PAGEMAP_BATCH	512u

struct page_map {
	int fd; /* /proc/self/pagemap, or -1: every page is read */
	uint64_t first, n;
	uint64_t ent[PAGEMAP_BATCH];
};

/* Whether page i (of ram) may hold data: true unless the pagemap says it was never
 * touched. A failed read keeps the answer true from then on. */
static bool page_maybe_used(struct page_map *m, const uint8_t *ram, uint64_t page)
{
	if (m->fd < 0)
		return true;
	if (page < m->first || page >= m->first + m->n) {
		uint64_t vpage = (uintptr_t)ram / SNAP_PAGE_SIZE + page;
		ssize_t r = pread(m->fd, m->ent, sizeof(m->ent), (off_t)(vpage * 8));
		if (r < 8) {
			close(m->fd);
			m->fd = -1;
			return true;
		}
		m->first = page;
		m->n = (uint64_t)r / 8;
	}
	return (m->ent[page - m->first] & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED)) != 0;
}

static bool page_has_data(struct page_map *m, const uint8_t *ram, uint64_t off)
{
	return page_maybe_used(m, ram, off / SNAP_PAGE_SIZE) && !page_is_zero(ram + off);
}

int snap_write_memory(struct snap_writer *w, const uint8_t *ram, uint64_t size, bool absent_is_zero,
		      struct errbuf *e)
{
	uint64_t data = w->off + SNAP_SECTION_HDR + 16;
	uint64_t pad = (SNAP_PAGE_SIZE - data % SNAP_PAGE_SIZE) % SNAP_PAGE_SIZE;
	uint8_t lead[16];
	put64(lead, size);
	put64(lead + 8, pad);
	uint8_t h[SNAP_SECTION_HDR];
	section_header(h, SNAP_SEC_MEMORY, 0, 16 + pad + size, snap_crc32(0, lead, 16));
	int ret;
	if ((ret = write_at(w, h, sizeof(h), e)) < 0 || (ret = write_at(w, lead, 16, e)) < 0)
		return ret;
	w->off += pad;
	struct page_map none = {.fd = -1}, *m = &none;
	if (absent_is_zero && (uintptr_t)ram % SNAP_PAGE_SIZE == 0) {
		struct page_map *pm = malloc(sizeof(*pm)); /* 4 KiB of entries */
		if (pm) {
			*pm = (struct page_map){
			    .fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)};
			m = pm;
		}
	}
	/* Runs of non-zero pages in one write each; zero pages stay holes. */
	ret = 0;
	for (uint64_t i = 0; i < size && ret == 0;) {
		if (!page_has_data(m, ram, i)) {
			i += SNAP_PAGE_SIZE;
			w->off += SNAP_PAGE_SIZE;
			continue;
		}
		uint64_t j = i + SNAP_PAGE_SIZE;
		while (j < size && j - i < (64u << 20) && page_has_data(m, ram, j))
			j += SNAP_PAGE_SIZE;
		ret = write_at(w, ram + i, j - i, e);
		i = j;
	}
	if (m->fd >= 0)
		close(m->fd);
	if (m != &none)
		free(m);
	return ret;
}

int snap_write_end(struct snap_writer *w, struct errbuf *e)
{
	int ret = snap_write_section(w, SNAP_SEC_END, 0, NULL, 0, e);
	if (ret == 0 && ftruncate(w->fd, (off_t)w->off) < 0)
		return errf(e, -errno, "cannot write the snapshot: %s", strerror(errno));
	return ret;
}

static int read_at(int fd, void *p, size_t n, uint64_t off, struct errbuf *e)
{
	uint8_t *b = p;
	while (n) {
		ssize_t r = pread(fd, b, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errf(e, -errno, "cannot read the snapshot: %s", strerror(errno));
		if (r == 0)
			return errf(e, -EINVAL, "truncated at offset %llu",
				    (unsigned long long)off);
		b += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int snap_file_read(struct snap_file *f, int fd, struct errbuf *e)
{
	memset(f, 0, sizeof(*f));
	struct stat st;
	if (fstat(fd, &st) < 0)
		return errf(e, -errno, "cannot read the snapshot: %s", strerror(errno));
	if (!S_ISREG(st.st_mode))
		return errf(e, -EINVAL, "not a regular file");
	uint64_t fsize = (uint64_t)st.st_size;
	uint8_t h[SNAP_HEADER_SIZE];
	if (fsize < SNAP_HEADER_SIZE)
		return errf(e, -EINVAL, "not a kvmini snapshot (%llu bytes, shorter than a header)",
			    (unsigned long long)fsize);
	int ret = read_at(fd, h, sizeof(h), 0, e);
	if (ret < 0)
		return ret;
	if (memcmp(h, SNAP_MAGIC, 8))
		return errf(e, -EINVAL, "not a kvmini snapshot (no KVMINISN magic)");
	if (snap_crc32(0, h, 28) != get32(h + 28))
		return errf(e, -EINVAL, "the header is corrupted (CRC mismatch)");
	if (get32(h + 8) != SNAP_FORMAT_VERSION)
		return errf(e, -EINVAL, "format version %u; this kvmini reads version %u",
			    get32(h + 8), SNAP_FORMAT_VERSION);
	memcpy(f->version, h + 16, 12);

	uint64_t off = SNAP_HEADER_SIZE;
	for (;;) {
		uint8_t sh[SNAP_SECTION_HDR];
		if (fsize - off < SNAP_SECTION_HDR) {
			ret = errf(e, -EINVAL,
				   "truncated: the file ends at %llu, in or before a "
				   "section header (no end section)",
				   (unsigned long long)fsize);
			goto fail;
		}
		if ((ret = read_at(fd, sh, sizeof(sh), off, e)) < 0)
			goto fail;
		if (snap_crc32(0, sh, 20) != get32(sh + 20)) {
			ret = errf(e, -EINVAL,
				   "the section header at offset %llu is corrupted "
				   "(CRC mismatch)",
				   (unsigned long long)off);
			goto fail;
		}
		struct snap_section s = {.type = get32(sh),
					 .instance = get32(sh + 4),
					 .offset = off + SNAP_SECTION_HDR,
					 .len = get64(sh + 8)};
		const char *name = snap_section_name(s.type);
		if (!strcmp(name, "unknown")) {
			ret = errf(e, -EINVAL, "unknown section type %u at offset %llu", s.type,
				   (unsigned long long)off);
			goto fail;
		}
		if (s.len > fsize - s.offset) {
			ret = errf(e, -EINVAL,
				   "truncated: the %s section at offset %llu needs "
				   "%llu bytes, the file ends at %llu",
				   name, (unsigned long long)off, (unsigned long long)s.len,
				   (unsigned long long)fsize);
			goto fail;
		}
		if (f->nsec >= SNAP_MAX_SECTIONS) {
			ret = errf(e, -EINVAL, "more than %u sections", SNAP_MAX_SECTIONS);
			goto fail;
		}
		uint32_t crc = get32(sh + 16);
		if (s.type == SNAP_SEC_MEMORY) {
			uint8_t lead[16];
			if (s.len < 16 || f->has_memory) {
				ret = errf(e, -EINVAL, "bad memory section at offset %llu",
					   (unsigned long long)off);
				goto fail;
			}
			if ((ret = read_at(fd, lead, 16, s.offset, e)) < 0)
				goto fail;
			if (snap_crc32(0, lead, 16) != crc) {
				ret = errf(e, -EINVAL,
					   "the memory section at offset %llu is "
					   "corrupted (CRC mismatch)",
					   (unsigned long long)off);
				goto fail;
			}
			uint64_t size = get64(lead), pad = get64(lead + 8);
			if (pad >= SNAP_PAGE_SIZE || size % SNAP_PAGE_SIZE ||
			    size != s.len - 16 - pad || (s.offset + 16 + pad) % SNAP_PAGE_SIZE) {
				ret = errf(e, -EINVAL, "bad memory section at offset %llu",
					   (unsigned long long)off);
				goto fail;
			}
			f->has_memory = true;
			f->mem_offset = s.offset + 16 + pad;
			f->mem_size = size;
		} else {
			if (s.len > SNAP_MAX_SECTION) {
				ret =
				    errf(e, -EINVAL,
					 "the %s section at offset %llu claims %llu "
					 "bytes",
					 name, (unsigned long long)off, (unsigned long long)s.len);
				goto fail;
			}
			s.data = malloc(s.len ? s.len : 1);
			if (!s.data) {
				ret = errf(e, -ENOMEM, "out of memory");
				goto fail;
			}
			if ((ret = read_at(fd, s.data, s.len, s.offset, e)) < 0) {
				free(s.data);
				goto fail;
			}
			if (snap_crc32(0, s.data, s.len) != crc) {
				free(s.data);
				ret = errf(e, -EINVAL,
					   "the %s section at offset %llu is corrupted "
					   "(CRC mismatch)",
					   name, (unsigned long long)off);
				goto fail;
			}
		}
		struct snap_section *n = realloc(f->sec, (f->nsec + 1) * sizeof(*n));
		if (!n) {
			free(s.data);
			ret = errf(e, -ENOMEM, "out of memory");
			goto fail;
		}
		f->sec = n;
		f->sec[f->nsec++] = s;
		off = s.offset + s.len;
		if (s.type == SNAP_SEC_END)
			break;
	}
	if (off != fsize) {
		ret = errf(e, -EINVAL, "%llu bytes after the end section",
			   (unsigned long long)(fsize - off));
		goto fail;
	}
	if (!f->has_memory) {
		ret = errf(e, -EINVAL, "no memory section");
		goto fail;
	}
	return 0;
fail:
	snap_file_free(f);
	return ret;
}

void snap_file_free(struct snap_file *f)
{
	for (unsigned i = 0; i < f->nsec; i++)
		free(f->sec[i].data);
	free(f->sec);
	memset(f, 0, sizeof(*f));
}

const struct snap_section *snap_file_find(const struct snap_file *f, uint32_t type,
					  uint32_t instance)
{
	for (unsigned i = 0; i < f->nsec; i++)
		if (f->sec[i].type == type && f->sec[i].instance == instance)
			return &f->sec[i];
	return NULL;
}
