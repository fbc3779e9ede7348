/* libFuzzer target for the snapshot reader (core/snapfmt.c): arbitrary bytes as a
 * snapshot file (in a memfd, as restore reads a file). The reader must refuse or accept
 * without a memory error, and what it accepts must hold the format's invariants: sections
 * inside the file, in order, RAM page-aligned and inside the file, an end section last.
 * Build and run: see fuzz/snapshot.mk. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/snapfmt.h"

#define check(c)                 \
	do {                     \
		if (!(c))        \
			abort(); \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("snapshot", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	struct snap_file f;
	struct errbuf e = {{0}};
	int ret = snap_file_read(&f, fd, &e);
	if (ret < 0) {
		check(e.msg[0] != 0 && !strchr(e.msg, '\n'));
	} else {
		check(f.nsec > 0 && f.sec[f.nsec - 1].type == SNAP_SEC_END);
		check(f.has_memory && f.mem_offset % SNAP_PAGE_SIZE == 0);
		check(f.mem_offset <= size && f.mem_size <= size - f.mem_offset);
		uint64_t end = SNAP_HEADER_SIZE;
		for (unsigned i = 0; i < f.nsec; i++) {
			check(f.sec[i].offset == end + SNAP_SECTION_HDR);
			check(f.sec[i].len <= size - f.sec[i].offset);
			if (f.sec[i].data && f.sec[i].len)
				check(!memcmp(f.sec[i].data, data + f.sec[i].offset, f.sec[i].len));
			end = f.sec[i].offset + f.sec[i].len;
		}
		check(end == size);
		snap_file_free(&f);
	}
	close(fd);
	return 0;
}
