#include "vmm/snapdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int snapdir_check_tag(const char *tag, struct errbuf *e)
{
	size_t n = strlen(tag);
	if (n == 0)
		return errf(e, -EINVAL, "a snapshot tag cannot be empty");
	if (n > SNAPDIR_TAG_MAX)
		return errf(e, -EINVAL, "snapshot tag '%.20s...' is longer than %u characters", tag,
			    SNAPDIR_TAG_MAX);
	if (strchr(tag, '/') || strstr(tag, ".."))
		return errf(e, -EINVAL, "invalid snapshot tag '%s': no '/' or '..' in a tag", tag);
	if (tag[0] == '.')
		return errf(e, -EINVAL, "invalid snapshot tag '%s': it cannot start with '.'", tag);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)tag[i];
		if (c <= ' ' || c == 0x7f)
			return errf(e, -EINVAL,
				    "invalid snapshot tag: no spaces or control characters");
	}
	return 0;
}

int snapdir_path(const char *dir, const char *tag, char *buf, size_t len, struct errbuf *e)
{
	int ret = snapdir_check_tag(tag, e);
	if (ret < 0)
		return ret;
	const char *sep = dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/";
	int n = snprintf(buf, len, "%s%s%s%s", dir, sep, tag, SNAPDIR_SUFFIX);
	if (n < 0 || (size_t)n >= len)
		return errf(e, -ENAMETOOLONG, "the snapshot path for '%s' is too long", tag);
	return 0;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct snapdir_entry *x = a, *y = b;
	if (x->mtime != y->mtime)
		return x->mtime < y->mtime ? -1 : 1;
	return strcmp(x->tag, y->tag);
}

int snapdir_list(const char *dir, struct snapdir_entry **out, size_t *n, struct errbuf *e)
{
	*out = NULL;
	*n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return errf(e, -errno, "cannot read the snapshot directory %s: %s", dir,
			    strerror(errno));
	struct snapdir_entry *v = NULL;
	size_t cap = 0, count = 0;
	const size_t sl = strlen(SNAPDIR_SUFFIX);
	struct dirent *de;
	int ret = 0;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len <= sl || strcmp(de->d_name + len - sl, SNAPDIR_SUFFIX) ||
		    len - sl > SNAPDIR_TAG_MAX)
			continue;
		char tag[SNAPDIR_TAG_MAX + 1];
		memcpy(tag, de->d_name, len - sl);
		tag[len - sl] = '\0';
		struct errbuf ignored = {{0}};
		struct stat st;
		if (snapdir_check_tag(tag, &ignored) < 0 ||
		    fstatat(dirfd(d), de->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (count == cap) {
			size_t nc = cap ? cap * 2 : 8;
			struct snapdir_entry *nv = realloc(v, nc * sizeof(*v));
			if (!nv) {
				ret = errf(e, -ENOMEM, "out of memory");
				break;
			}
			v = nv;
			cap = nc;
		}
		struct snapdir_entry *x = &v[count++];
		memcpy(x->tag, tag, len - sl + 1);
		x->bytes = (uint64_t)st.st_blocks * 512;
		x->mtime = st.st_mtime;
	}
	closedir(d);
	if (ret < 0) {
		free(v);
		return ret;
	}
	if (count)
		qsort(v, count, sizeof(*v), entry_cmp);
	*out = v;
	*n = count;
	return 0;
}

void snapdir_format_size(uint64_t bytes, char out[16])
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	double v = (double)bytes;
	unsigned u = 0;
	/* The next unit once the number would need four digits (1000 KiB reads 0.977 MiB). */
	while (v >= 1000.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024.0;
		u++;
	}
	snprintf(out, 16, "%.3g %s", v, units[u]);
}

void snapdir_format_clock(uint64_t ns, char out[32])
{
	uint64_t ms = ns / 1000000, s = ms / 1000;
	snprintf(out, 32, "%02llu:%02llu:%02llu.%03llu", (unsigned long long)(s / 3600),
		 (unsigned long long)(s / 60 % 60), (unsigned long long)(s % 60),
		 (unsigned long long)(ms % 1000));
}
