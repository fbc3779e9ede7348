/* Guest-memory accessors with intent, and the dirty bitmaps they keep, on fake memory. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/guest_mem.h"

#define GM_LO_SIZE (64u << 10) /* [0, 64K) and [64K, 128K): two regions that touch */
#define GM_FAR	   0x100000u   /* [1M, 1M + 64K): one across a hole */

struct gm_fake {
	struct guest_mem mem;
	uint8_t *a, *b, *c;
};

static void gm_setup(struct gm_fake *f)
{
	memset(f, 0, sizeof(*f));
	f->a = calloc(1, GM_LO_SIZE);
	f->b = calloc(1, GM_LO_SIZE);
	f->c = calloc(1, GM_LO_SIZE);
	cr_assert_eq(guest_mem_add_region(&f->mem, 0, GM_LO_SIZE, f->a), 0);
	cr_assert_eq(guest_mem_add_region(&f->mem, GM_LO_SIZE, GM_LO_SIZE, f->b), 0);
	cr_assert_eq(guest_mem_add_region(&f->mem, GM_FAR, GM_LO_SIZE, f->c), 0);
}

static void gm_teardown(struct gm_fake *f)
{
	guest_mem_destroy(&f->mem);
	free(f->a);
	free(f->b);
	free(f->c);
}

/* The dirty pages of region i, as a 64-bit mask (the fake regions have 16 pages). */
static uint64_t gm_fetch(struct gm_fake *f, unsigned i)
{
	uint64_t bm[4] = {0};
	struct errbuf e;
	cr_assert_eq(guest_mem_dirty_words(&f->mem, i), 1);
	cr_assert_eq(guest_mem_fetch_dirty(&f->mem, -1, i, bm, 4, &e), 0, "%s", e.msg);
	return bm[0];
}

Test(guest_mem, writes_mark_pages_dirty_and_reads_do_not)
{
	struct gm_fake f;
	gm_setup(&f);
	struct errbuf e;
	uint8_t buf[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	/* Before tracking starts nothing is recorded. */
	cr_assert_eq(guest_mem_write(&f.mem, 0x3000, buf, 1), 0);
	cr_assert_eq(guest_mem_dirty_log_start(&f.mem, -1, &e), 0, "%s", e.msg);
	cr_assert_eq(gm_fetch(&f, 0), 0);

	cr_assert_eq(guest_mem_write(&f.mem, 0x1ffe, buf, 4), 0); /* crosses pages 1 and 2 */
	cr_assert_eq(memcmp(f.a + 0x1ffe, buf, 4), 0);
	uint8_t *p = guest_mem_write_ptr(&f.mem, 0x5010, 8);
	cr_assert_eq(p, f.a + 0x5010);
	uint8_t out[8];
	cr_assert_eq(guest_mem_read(&f.mem, 0x9000, out, 8), 0);
	cr_assert_not_null(guest_mem_read_ptr(&f.mem, 0xa000, 8));
	cr_assert_not_null(gpa_to_hva(&f.mem, 0xb000, 8));
	cr_assert_eq(gm_fetch(&f, 0), (1u << 1) | (1u << 2) | (1u << 5),
		     "reads and raw translation mark nothing");
	cr_assert_eq(gm_fetch(&f, 0), 0, "a fetch clears what it returned");
	cr_assert_eq(gm_fetch(&f, 1), 0);

	cr_assert_eq(guest_mem_dirty_log_stop(&f.mem, -1, &e), 0);
	cr_assert_eq(guest_mem_write(&f.mem, 0x7000, buf, 1), 0);
	cr_assert_not_null(guest_mem_write_ptr(&f.mem, 0x8000, 1));
	cr_assert_eq(gm_fetch(&f, 0), 0, "nothing is recorded once tracking stops");
	gm_teardown(&f);
}

Test(guest_mem, copies_span_regions_that_touch_and_mark_both)
{
	struct gm_fake f;
	gm_setup(&f);
	struct errbuf e;
	cr_assert_eq(guest_mem_dirty_log_start(&f.mem, -1, &e), 0);
	uint8_t in[8] = {0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 0x10, 0x11}, out[8] = {0};
	cr_assert_eq(guest_mem_write(&f.mem, GM_LO_SIZE - 3, in, 8), 0);
	cr_assert_eq(memcmp(f.a + GM_LO_SIZE - 3, in, 3), 0);
	cr_assert_eq(memcmp(f.b, in + 3, 5), 0);
	cr_assert_eq(guest_mem_read(&f.mem, GM_LO_SIZE - 3, out, 8), 0);
	cr_assert_eq(memcmp(out, in, 8), 0);
	cr_assert_eq(gm_fetch(&f, 0), 1u << 15);
	cr_assert_eq(gm_fetch(&f, 1), 1u << 0);
	/* A pointer is into one region only: it cannot span the boundary. */
	cr_assert_null(guest_mem_write_ptr(&f.mem, GM_LO_SIZE - 3, 8));
	cr_assert_eq(gm_fetch(&f, 0) | gm_fetch(&f, 1), 0);
	/* A whole region, every page. */
	static uint8_t big[GM_LO_SIZE];
	cr_assert_eq(guest_mem_write(&f.mem, GM_FAR, big, sizeof(big)), 0);
	cr_assert_eq(gm_fetch(&f, 2), 0xffff);
	gm_teardown(&f);
}

Test(guest_mem, out_of_range_and_overflow_are_refused_without_side_effects)
{
	struct gm_fake f;
	gm_setup(&f);
	struct errbuf e;
	cr_assert_eq(guest_mem_dirty_log_start(&f.mem, -1, &e), 0);
	uint8_t in[0x200];
	memset(in, 0x77, sizeof(in));
	/* Runs from the second region into the hole after it. */
	cr_assert_eq(guest_mem_write(&f.mem, 2 * GM_LO_SIZE - 0x100, in, 0x200), -EFAULT);
	cr_assert_eq(f.b[GM_LO_SIZE - 0x100], 0, "nothing is copied when part of it is not RAM");
	cr_assert_eq(guest_mem_read(&f.mem, 2 * GM_LO_SIZE - 0x100, in, 0x200), -EFAULT);
	cr_assert_eq(guest_mem_write(&f.mem, UINT64_MAX - 1, in, 4), -EFAULT);
	cr_assert_eq(guest_mem_read(&f.mem, UINT64_MAX, in, 2), -EFAULT);
	cr_assert_eq(guest_mem_write(&f.mem, 0x80000, in, 1), -EFAULT, "the hole");
	cr_assert_null(guest_mem_write_ptr(&f.mem, UINT64_MAX - 1, 4));
	cr_assert_null(guest_mem_write_ptr(&f.mem, GM_FAR + GM_LO_SIZE, 1));
	guest_mem_mark_dirty(&f.mem, UINT64_MAX - 1, 4);
	cr_assert_eq(guest_mem_write(&f.mem, 0x10, in, 0), 0, "an empty copy is a no-op");
	cr_assert_eq(gm_fetch(&f, 0) | gm_fetch(&f, 1) | gm_fetch(&f, 2), 0);
	/* A fetch into a bitmap too small, or of a slot that does not exist, is refused. */
	uint64_t bm[1];
	cr_assert_eq(guest_mem_fetch_dirty(&f.mem, -1, 0, bm, 0, &e), -EINVAL);
	cr_assert_eq(guest_mem_fetch_dirty(&f.mem, -1, 3, bm, 1, &e), -EINVAL);
	cr_assert(strstr(e.msg, "slot 3"), "%s", e.msg);
	gm_teardown(&f);
}

Test(guest_mem, marks_span_bitmap_words)
{
	/* 4 MiB: 1024 pages, 16 words; a range over pages 60..129 crosses two word edges. */
	struct guest_mem mem = {0};
	uint8_t *ram = calloc(1, 4u << 20);
	struct errbuf e;
	cr_assert_eq(guest_mem_add_region(&mem, 0, 4u << 20, ram), 0);
	cr_assert_eq(guest_mem_dirty_log_start(&mem, -1, &e), 0);
	cr_assert_eq(guest_mem_dirty_words(&mem, 0), 16);
	guest_mem_mark_dirty(&mem, 60 * 4096 + 5, 70 * 4096 - 10);
	uint64_t bm[16];
	cr_assert_eq(guest_mem_fetch_dirty(&mem, -1, 0, bm, 16, &e), 0);
	for (unsigned page = 0; page < 1024; page++) {
		bool want = page >= 60 && page <= 129;
		cr_assert_eq((bm[page / 64] >> (page % 64)) & 1, want, "page %u", page);
	}
	guest_mem_destroy(&mem);
	free(ram);
}

struct gm_writer {
	struct guest_mem *mem;
	unsigned first;
};

static void *gm_write_pages(void *arg)
{
	struct gm_writer *w = arg;
	uint8_t b = 1;
	for (int round = 0; round < 200; round++)
		for (unsigned page = w->first; page < 1024; page += 2)
			guest_mem_write(w->mem, page * 4096ull, &b, 1);
	return NULL;
}

Test(guest_mem, concurrent_writers_lose_no_bits)
{
	/* Two threads write interleaved pages: neighbouring bits of the same word. */
	struct guest_mem mem = {0};
	uint8_t *ram = calloc(1, 4u << 20);
	struct errbuf e;
	cr_assert_eq(guest_mem_add_region(&mem, 0, 4u << 20, ram), 0);
	cr_assert_eq(guest_mem_dirty_log_start(&mem, -1, &e), 0);
	struct gm_writer w[2] = {{&mem, 0}, {&mem, 1}};
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, gm_write_pages, &w[i]), 0);
	uint64_t acc[16] = {0}, bm[16];
	for (int i = 0; i < 50; i++) { /* fetches race with the writers, too */
		cr_assert_eq(guest_mem_fetch_dirty(&mem, -1, 0, bm, 16, &e), 0);
		for (int k = 0; k < 16; k++)
			acc[k] |= bm[k];
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	cr_assert_eq(guest_mem_fetch_dirty(&mem, -1, 0, bm, 16, &e), 0);
	for (int k = 0; k < 16; k++)
		cr_assert_eq(acc[k] | bm[k], ~0ull, "word %d", k);
	guest_mem_destroy(&mem);
	free(ram);
}
