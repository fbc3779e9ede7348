/* Named snapshots in a directory (HMP savevm/loadvm/delvm/info snapshots): the snapshot
 * tagged TAG is the file DIR/TAG.kvmini. No KVM here: tags, paths, the listing, and the
 * table's formatting, so unit tests cover them. */
#ifndef KVMINI_VMM_SNAPDIR_H
#define KVMINI_VMM_SNAPDIR_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "util/err.h"

#define SNAPDIR_SUFFIX	".kvmini"
#define SNAPDIR_TAG_MAX 128

/* A tag names a file in the directory and nothing else: 1 to SNAPDIR_TAG_MAX printable,
 * non-space characters, no '/', no "..", not starting with '.'. 0 or -EINVAL with e set. */
int snapdir_check_tag(const char *tag, struct errbuf *e);
/* DIR/TAG.kvmini into buf; checks the tag. 0 or -errno with e set. */
int snapdir_path(const char *dir, const char *tag, char *buf, size_t len, struct errbuf *e);

struct snapdir_entry {
	char tag[SNAPDIR_TAG_MAX + 1];
	uint64_t bytes; /* allocated on disk (the file is sparse) */
	time_t mtime;	/* when it was written */
};
/* Every DIR/TAG.kvmini whose TAG is valid, oldest first (then by tag). *out is malloc'd
 * (NULL when none). 0 or -errno with e set. */
int snapdir_list(const char *dir, struct snapdir_entry **out, size_t *n, struct errbuf *e);

/* QEMU's sizes: three significant digits and a binary unit ("0 B", "512 B", "1.5 KiB",
 * "12.3 MiB", "1 GiB"). */
void snapdir_format_size(uint64_t bytes, char out[16]);
/* A VM clock as QEMU's info snapshots shows it: HH:MM:SS.mmm (hours past 99 widen). */
void snapdir_format_clock(uint64_t ns, char out[32]);

#endif
