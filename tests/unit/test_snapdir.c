/* Named snapshots' directory (vmm/snapdir.c): which tags are files in it and nothing else,
 * the listing info snapshots prints, and QEMU's size and clock formats. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include "vmm/snapdir.h"

Test(snapdir, tags)
{
	struct errbuf e;
	const char *good[] = {"t1", "before-upgrade", "vm-20261203061621", "a.b", "x_y", "A~1"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_assert_eq(snapdir_check_tag(good[i], &e), 0, "%s: %s", good[i], e.msg);
	char longest[SNAPDIR_TAG_MAX + 2];
	memset(longest, 'x', sizeof(longest));
	longest[SNAPDIR_TAG_MAX] = '\0';
	cr_assert_eq(snapdir_check_tag(longest, &e), 0, "%s", e.msg);
	longest[SNAPDIR_TAG_MAX] = 'x';
	longest[SNAPDIR_TAG_MAX + 1] = '\0';
	cr_assert_eq(snapdir_check_tag(longest, &e), -EINVAL);
	const char *bad[] = {"",     "/",	"a/b", "/etc/passwd", "..",   "../x",
			     "a..b", ".hidden", "a b", "tab\there",   "nl\n", "\x7f"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		e.msg[0] = '\0';
		cr_assert_eq(snapdir_check_tag(bad[i], &e), -EINVAL, "'%s' accepted", bad[i]);
		cr_assert(e.msg[0] && !strchr(e.msg, '\n'), "'%s': %s", bad[i], e.msg);
	}
}

Test(snapdir, paths)
{
	struct errbuf e;
	char buf[64];
	cr_assert_eq(snapdir_path("/var/snaps", "t1", buf, sizeof(buf), &e), 0, "%s", e.msg);
	cr_assert_str_eq(buf, "/var/snaps/t1.kvmini");
	cr_assert_eq(snapdir_path("/var/snaps/", "t1", buf, sizeof(buf), &e), 0);
	cr_assert_str_eq(buf, "/var/snaps/t1.kvmini");
	cr_assert_eq(snapdir_path("/var", "../etc/x", buf, sizeof(buf), &e), -EINVAL);
	char small[16];
	cr_assert_eq(snapdir_path("/var/snaps", "a-long-tag", small, sizeof(small), &e),
		     -ENAMETOOLONG);
}

static void touch(const char *dir, const char *name, time_t mtime, size_t bytes)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	cr_assert_not_null(f, "%s", p);
	for (size_t i = 0; i < bytes; i++)
		fputc('x', f);
	fclose(f);
	struct utimbuf t = {mtime, mtime};
	cr_assert_eq(utime(p, &t), 0);
}

Test(snapdir, list_is_the_tagged_files_oldest_first)
{
	char dir[] = "/tmp/kvmini-snapdir-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	struct errbuf e;
	struct snapdir_entry *v;
	size_t n;
	cr_assert_eq(snapdir_list(dir, &v, &n, &e), 0, "%s", e.msg);
	cr_assert_eq(n, 0);
	free(v);
	touch(dir, "new.kvmini", 2000, 10);
	touch(dir, "old.kvmini", 1000, 8192);
	touch(dir, "also-old.kvmini", 1000, 1);
	touch(dir, "disk.img", 500, 1);	   /* not a snapshot's name */
	touch(dir, ".kvmini", 500, 1);	   /* empty tag */
	touch(dir, ".dot.kvmini", 500, 1); /* a tag savevm refuses */
	char sub[300];
	snprintf(sub, sizeof(sub), "%s/dir.kvmini", dir);
	cr_assert_eq(mkdir(sub, 0700), 0); /* not a regular file */
	cr_assert_eq(snapdir_list(dir, &v, &n, &e), 0, "%s", e.msg);
	cr_assert_eq(n, 3);
	cr_assert_str_eq(v[0].tag, "also-old");
	cr_assert_str_eq(v[1].tag, "old");
	cr_assert_str_eq(v[2].tag, "new");
	cr_assert_eq(v[1].mtime, 1000);
	cr_assert_geq(v[1].bytes, 8192, "allocated bytes: %llu", (unsigned long long)v[1].bytes);
	free(v);
	cr_assert_eq(snapdir_list("/nonexistent/dir", &v, &n, &e), -ENOENT);
	cr_assert(strstr(e.msg, "/nonexistent/dir"), "%s", e.msg);
	const char *names[] = {"new.kvmini", "old.kvmini", "also-old.kvmini",
			       "disk.img",   ".kvmini",	   ".dot.kvmini"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char p[300];
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		unlink(p);
	}
	rmdir(sub);
	cr_assert_eq(rmdir(dir), 0);
}

Test(snapdir, sizes_and_clocks_as_qemu_prints_them)
{
	char s[16], c[32];
	struct {
		uint64_t bytes;
		const char *want;
	} sizes[] = {{0, "0 B"},
		     {512, "512 B"},
		     {999, "999 B"},
		     {1000, "0.977 KiB"},
		     {1536, "1.5 KiB"},
		     {140 << 10, "140 KiB"},
		     {12900000, "12.3 MiB"},
		     {1ull << 30, "1 GiB"},
		     {3ull << 40, "3 TiB"}};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		snapdir_format_size(sizes[i].bytes, s);
		cr_assert_str_eq(s, sizes[i].want, "%llu", (unsigned long long)sizes[i].bytes);
	}
	snapdir_format_clock(0, c);
	cr_assert_str_eq(c, "00:00:00.000");
	snapdir_format_clock(11555000000ull, c);
	cr_assert_str_eq(c, "00:00:11.555");
	snapdir_format_clock((3600ull * 101 + 62) * 1000000000ull + 7000000, c);
	cr_assert_str_eq(c, "101:01:02.007");
}
