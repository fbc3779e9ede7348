#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Larger than this is not a kernel or initrd anyone reads whole; read_whole_file refuses it.
 * The loader itself maps kernels and streams initrds, so only guest RAM bounds those. */
#define MAX_READ_SIZE (2ull << 30)

static const char *file_kind(mode_t m)
{
	if (S_ISDIR(m))
		return "a directory";
	if (S_ISFIFO(m))
		return "a FIFO";
	if (S_ISSOCK(m))
		return "a socket";
	if (S_ISCHR(m))
		return "a character device";
	if (S_ISBLK(m))
		return "a block device";
	return "a special file";
}

int file_open_input(const char *path, const char *what, int *fdp, uint64_t *size, struct errbuf *e)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return errf(e, -errno, "cannot open %s '%s': %s", what, path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		int err = errno;
		close(fd);
		return errf(e, -err, "cannot stat %s '%s': %s", what, path, strerror(err));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return errf(e, -EINVAL, "%s '%s' is not a regular file (it is %s)", what, path,
			    file_kind(st.st_mode));
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	*fdp = fd;
	*size = (uint64_t)st.st_size;
	return 0;
}

int file_map_input(const char *path, const char *what, struct file_map *m, struct errbuf *e)
{
	static const uint8_t empty[1];
	int fd;
	uint64_t size;
	int ret = file_open_input(path, what, &fd, &size, e);
	if (ret < 0)
		return ret;
	if (size > SIZE_MAX) {
		close(fd);
		return errf(e, -EFBIG, "%s '%s' is too large to map (%llu bytes)", what, path,
			    (unsigned long long)size);
	}
	m->data = empty;
	m->size = 0;
	if (size) {
		void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (p == MAP_FAILED) {
			int err = errno;
			close(fd);
			return errf(e, -err, "cannot map %s '%s': %s", what, path, strerror(err));
		}
		m->data = p;
		m->size = (size_t)size;
	}
	close(fd);
	return 0;
}

void file_unmap(struct file_map *m)
{
	if (m->data && m->size)
		munmap((void *)m->data, m->size);
	m->data = NULL;
	m->size = 0;
}

void file_map_release(const struct file_map *m)
{
	if (m->data && m->size)
		madvise((void *)m->data, m->size, MADV_DONTNEED);
}

int file_pread_all(int fd, uint64_t off, void *dst, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (uint8_t *)dst + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

int read_whole_file(const char *path, const char *what, uint8_t **buf, size_t *len,
		    struct errbuf *e)
{
	int fd;
	uint64_t size;
	int ret = file_open_input(path, what, &fd, &size, e);
	if (ret < 0)
		return ret;
	if (size > MAX_READ_SIZE) {
		close(fd);
		return errf(e, -EFBIG, "%s '%s' is too large (%llu bytes)", what, path,
			    (unsigned long long)size);
	}
	uint8_t *p = malloc((size_t)size + 1);
	if (!p) {
		close(fd);
		return errf(e, -ENOMEM, "out of memory reading %s '%s'", what, path);
	}
	ret = file_pread_all(fd, 0, p, (size_t)size);
	close(fd);
	if (ret < 0) {
		free(p);
		return errf(e, ret, "cannot read %s '%s': %s", what, path,
			    ret == -EIO ? "file shrank while reading" : strerror(-ret));
	}
	p[size] = 0;
	*buf = p;
	*len = (size_t)size;
	return 0;
}
