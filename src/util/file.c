#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Files larger than this are not kernels or initrds anyone boots; refusing them keeps a
 * mistaken path (a disk image, /dev/zero) from eating memory. */
#define MAX_FILE_SIZE (2ull << 30)

int read_whole_file(const char *path, const char *what, uint8_t **buf, size_t *len,
		    struct errbuf *e)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errf(e, -errno, "cannot open %s '%s': %s", what, path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		int err = errno;
		close(fd);
		return errf(e, -err, "cannot stat %s '%s': %s", what, path, strerror(err));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return errf(e, -EINVAL, "%s '%s' is not a regular file", what, path);
	}
	if ((uint64_t)st.st_size > MAX_FILE_SIZE) {
		close(fd);
		return errf(e, -EFBIG, "%s '%s' is too large (%lld bytes)", what, path,
			    (long long)st.st_size);
	}
	size_t size = (size_t)st.st_size;
	uint8_t *p = malloc(size ? size : 1);
	if (!p) {
		close(fd);
		return errf(e, -ENOMEM, "out of memory reading %s '%s'", what, path);
	}
	size_t done = 0;
	while (done < size) {
		ssize_t n = read(fd, p + done, size - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? errno : EIO;
			free(p);
			close(fd);
			return errf(e, -err, "cannot read %s '%s': %s", what, path,
				    n < 0 ? strerror(err) : "file shrank while reading");
		}
		done += (size_t)n;
	}
	close(fd);
	*buf = p;
	*len = size;
	return 0;
}
