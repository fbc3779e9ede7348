/* The snapshot file format (core/snapfmt): a round trip, sparse page-aligned memory that
 * maps, and every kind of damage refused with one sentence: truncation at each section
 * boundary and inside every section, every flipped bit outside RAM, wrong magic, version. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/snapfmt.h"

#define RAM_SIZE (1u << 20)

static char path[64];
static uint8_t *ram;
static uint64_t boundaries[16];
static unsigned nboundaries;

static void write_sample(void)
{
	snprintf(path, sizeof(path), "/tmp/kvmini-snapfmt-%d", getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	ram = calloc(1, RAM_SIZE);
	memset(ram + 3 * 4096, 0xab, 4096);
	memcpy(ram + 200 * 4096 + 17, "hello", 5);
	struct snap_writer w = {.fd = fd};
	struct errbuf e;
	nboundaries = 0;
	cr_assert_eq(snap_write_header(&w, "9.9.9", &e), 0);
	boundaries[nboundaries++] = w.off;
	cr_assert_eq(snap_write_section(&w, SNAP_SEC_CONFIG, 0, "config!", 7, &e), 0);
	boundaries[nboundaries++] = w.off;
	cr_assert_eq(snap_write_section(&w, SNAP_SEC_VCPU, 1, "vcpu-one", 8, &e), 0);
	boundaries[nboundaries++] = w.off;
	cr_assert_eq(snap_write_section(&w, SNAP_SEC_DEVICE, 0, "", 0, &e), 0);
	boundaries[nboundaries++] = w.off;
	cr_assert_eq(snap_write_memory(&w, ram, RAM_SIZE, false, &e), 0);
	boundaries[nboundaries++] = w.off;
	cr_assert_eq(snap_write_end(&w, &e), 0);
	close(fd);
}

static void cleanup(void)
{
	unlink(path);
	free(ram);
}

static int read_file(struct snap_file *f, struct errbuf *e)
{
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	int ret = snap_file_read(f, fd, e);
	close(fd);
	return ret;
}

TestSuite(snapfmt, .init = write_sample, .fini = cleanup);

Test(snapfmt, crc32_is_zlibs)
{
	cr_assert_eq(snap_crc32(0, "123456789", 9), 0xcbf43926u);
	cr_assert_eq(snap_crc32(0, "", 0), 0);
}

Test(snapfmt, round_trip_keeps_sections_and_maps_sparse_memory)
{
	struct snap_file f;
	struct errbuf e = {{0}};
	cr_assert_eq(read_file(&f, &e), 0, "%s", e.msg);
	cr_assert_str_eq(f.version, "9.9.9");
	cr_assert_eq(f.nsec, 5);
	const struct snap_section *s = snap_file_find(&f, SNAP_SEC_VCPU, 1);
	cr_assert_not_null(s);
	cr_assert_eq(s->len, 8);
	cr_assert_eq(memcmp(s->data, "vcpu-one", 8), 0);
	cr_assert_null(snap_file_find(&f, SNAP_SEC_VCPU, 0));
	cr_assert_eq(f.mem_size, RAM_SIZE);
	cr_assert_eq(f.mem_offset % 4096, 0);

	int fd = open(path, O_RDONLY);
	void *m =
	    mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, (off_t)f.mem_offset);
	cr_assert_neq(m, MAP_FAILED);
	cr_assert_eq(memcmp(m, ram, RAM_SIZE), 0, "the mapped RAM is the saved RAM");
	((uint8_t *)m)[0] = 1; /* private: the file does not change */
	struct stat st;
	fstat(fd, &st);
	/* Two non-zero pages of 256: the rest are holes. */
	cr_assert_lt((uint64_t)st.st_blocks * 512, 64 * 1024, "%llu bytes on disk",
		     (unsigned long long)st.st_blocks * 512);
	munmap(m, RAM_SIZE);
	close(fd);
	snap_file_free(&f);
}

Test(snapfmt, every_truncation_is_refused)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	uint64_t size = (uint64_t)st.st_size;
	uint8_t *all = malloc(size);
	int fd = open(path, O_RDONLY);
	cr_assert_eq(pread(fd, all, size, 0), (ssize_t)size);
	close(fd);
	/* Every length through the state sections, each section boundary, and points inside
	 * the memory section and the end marker. */
	for (uint64_t len = 0; len < size; len++) {
		bool state = len <= boundaries[3] + 64;
		bool boundary = false;
		for (unsigned i = 0; i < nboundaries; i++)
			boundary |= len == boundaries[i];
		if (!state && !boundary && len % 65536 && len < size - 30)
			continue;
		fd = open(path, O_RDWR | O_TRUNC);
		cr_assert_eq(write(fd, all, len), (ssize_t)len);
		struct snap_file f;
		struct errbuf e = {{0}};
		int ret = snap_file_read(&f, fd, &e);
		close(fd);
		cr_assert_eq(ret, -EINVAL, "a file cut at %llu of %llu was accepted",
			     (unsigned long long)len, (unsigned long long)size);
		cr_assert_neq(e.msg[0], 0);
		cr_assert_null(strchr(e.msg, '\n'));
		if (len >= 32)
			cr_assert(strstr(e.msg, "truncated"), "cut at %llu: %s",
				  (unsigned long long)len, e.msg);
	}
	free(all);
}

static int read_flipped(uint64_t off, unsigned bit, struct errbuf *e)
{
	int fd = open(path, O_RDWR);
	uint8_t b;
	cr_assert_eq(pread(fd, &b, 1, (off_t)off), 1);
	b ^= (uint8_t)(1u << bit);
	cr_assert_eq(pwrite(fd, &b, 1, (off_t)off), 1);
	struct snap_file f;
	int ret = snap_file_read(&f, fd, e);
	if (ret == 0)
		snap_file_free(&f);
	b ^= (uint8_t)(1u << bit);
	cr_assert_eq(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
	return ret;
}

Test(snapfmt, every_flipped_bit_outside_ram_is_refused)
{
	struct snap_file f;
	struct errbuf e = {{0}};
	cr_assert_eq(read_file(&f, &e), 0, "%s", e.msg);
	uint64_t ram_off = f.mem_offset;
	snap_file_free(&f);
	struct stat st;
	stat(path, &st);
	/* The header, the state sections, the memory section's header and lead, the end. */
	for (uint64_t off = 0; off < (uint64_t)st.st_size; off++) {
		if (off >= boundaries[3] + 24 + 16 && off < (uint64_t)st.st_size - 24)
			continue; /* the pad and RAM: not checksummed (mapped lazily) */
		for (unsigned bit = 0; bit < 8; bit++) {
			int ret = read_flipped(off, bit, &e);
			cr_assert_eq(ret, -EINVAL, "bit %u of byte %llu flipped was accepted", bit,
				     (unsigned long long)off);
		}
	}
	(void)ram_off;
	/* A payload byte: named as a CRC mismatch of that section. */
	cr_assert_eq(read_flipped(boundaries[1] + 24 + 2, 0, &e), -EINVAL);
	cr_assert(strstr(e.msg, "vcpu section") && strstr(e.msg, "CRC mismatch"), "%s", e.msg);
}

static void rewrite_header(const char *magic, uint32_t version)
{
	uint8_t h[32];
	int fd = open(path, O_RDWR);
	cr_assert_eq(pread(fd, h, 32, 0), 32);
	memcpy(h, magic, 8);
	for (int i = 0; i < 4; i++)
		h[8 + i] = (uint8_t)(version >> (8 * i));
	uint32_t crc = snap_crc32(0, h, 28);
	for (int i = 0; i < 4; i++)
		h[28 + i] = (uint8_t)(crc >> (8 * i));
	cr_assert_eq(pwrite(fd, h, 32, 0), 32);
	close(fd);
}

Test(snapfmt, wrong_magic_and_version_are_named)
{
	struct snap_file f;
	struct errbuf e = {{0}};
	rewrite_header(SNAP_MAGIC, 2);
	cr_assert_eq(read_file(&f, &e), -EINVAL);
	cr_assert_str_eq(e.msg, "format version 2; this kvmini reads version 1");
	rewrite_header("QEVM\0\0\0\3", 1);
	cr_assert_eq(read_file(&f, &e), -EINVAL);
	cr_assert(strstr(e.msg, "not a kvmini snapshot"), "%s", e.msg);
	rewrite_header(SNAP_MAGIC, 1);
	cr_assert_eq(read_file(&f, &e), 0, "%s", e.msg);
	snap_file_free(&f);
}

Test(snapfmt, bytes_after_the_end_section_are_refused)
{
	int fd = open(path, O_WRONLY | O_APPEND);
	cr_assert_eq(write(fd, "x", 1), 1);
	close(fd);
	struct snap_file f;
	struct errbuf e = {{0}};
	cr_assert_eq(read_file(&f, &e), -EINVAL);
	cr_assert(strstr(e.msg, "after the end section"), "%s", e.msg);
}

/* Fresh anonymous RAM (absent_is_zero): pages never touched are holes without being read,
 * so they stay unmapped; touched pages, zero or not, are read and the non-zero ones saved. */
static unsigned char resident(const uint8_t *p)
{
	unsigned char v = 0;
	cr_assert_eq(mincore((void *)p, 4096, &v), 0);
	return v & 1;
}

static void save_anonymous(bool absent_is_zero, uint8_t **out_ram, struct snap_file *f)
{
	uint8_t *a = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	cr_assert_neq(a, MAP_FAILED);
	memset(a + 5 * 4096, 0x5a, 4096);
	a[100 * 4096 + 4095] = 7;
	a[150 * 4096] = 0; /* written, still zero */
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	struct snap_writer w = {.fd = fd};
	struct errbuf e;
	cr_assert_eq(snap_write_header(&w, "9.9.9", &e), 0);
	cr_assert_eq(snap_write_memory(&w, a, RAM_SIZE, absent_is_zero, &e), 0, "%s", e.msg);
	cr_assert_eq(snap_write_end(&w, &e), 0);
	close(fd);
	cr_assert_eq(read_file(f, &e), 0, "%s", e.msg);
	*out_ram = a;
}

Test(snapfmt, untouched_anonymous_pages_are_holes_without_being_read)
{
	for (int skip = 0; skip < 2; skip++) {
		uint8_t *a;
		struct snap_file f;
		save_anonymous(skip, &a, &f);
		/* Page 20 was never touched: read (and so mapped) only without the skip. */
		unsigned char r20 = resident(a + 20 * 4096);
		cr_assert_eq(r20, skip ? 0 : 1, "page 20 resident %d with absent_is_zero %d", r20,
			     skip);
		int fd = open(path, O_RDONLY);
		uint8_t *m = mmap(NULL, RAM_SIZE, PROT_READ, MAP_PRIVATE, fd, (off_t)f.mem_offset);
		cr_assert_neq(m, MAP_FAILED);
		cr_assert_eq(memcmp(m, a, RAM_SIZE), 0, "the saved RAM is the RAM (skip %d)", skip);
		struct stat st;
		fstat(fd, &st);
		cr_assert_lt((uint64_t)st.st_blocks * 512, 64 * 1024);
		munmap(m, RAM_SIZE);
		munmap(a, RAM_SIZE);
		close(fd);
		snap_file_free(&f);
	}
}
