#ifndef KVMINI_UTIL_FILE_H
#define KVMINI_UTIL_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* Opens a kernel or initrd for reading. The open never blocks (O_NONBLOCK: a FIFO path would
 * otherwise wait for a writer), and anything but a regular file (FIFO, socket, character or
 * block device, directory) is refused: their size is not st_size and a disk given as an
 * initrd is a mistake. Returns 0 with *fd (close-on-exec, blocking again) and *size, or
 * -errno with e filled ("cannot open kernel 'x': No such file or directory"). `what` names
 * the file's role. */
int file_open_input(const char *path, const char *what, int *fd, uint64_t *size, struct errbuf *e);

/* A regular file mapped read-only and private: only the pages the loader touches are read.
 * data is never NULL (an empty file maps to a static empty buffer). The mapping follows the
 * file: a file rewritten in place (cp over it) while mapped shows its new bytes, and one cut
 * shorter raises SIGBUS when the cut pages are read (a reset reloads the kernel); replacing
 * it by rename, as install(1) and package managers do, leaves the mapping alone. */
struct file_map {
	const uint8_t *data;
	size_t size;
};
int file_map_input(const char *path, const char *what, struct file_map *m, struct errbuf *e);
void file_unmap(struct file_map *m);
/* Drops the mapping's pages from the process (they stay in the page cache and come back on
 * the next read), so a kernel that has been loaded costs no resident memory until a reset
 * reads it again. */
void file_map_release(const struct file_map *m);

/* Reads exactly len bytes at offset off. Returns 0, -errno, or -EIO if the file is shorter. */
int file_pread_all(int fd, uint64_t off, void *dst, size_t len);

/* Reads a whole regular file into a malloc'ed buffer (tests use it), with the checks of
 * file_open_input; a NUL byte follows the len bytes, so text can be searched as a string.
 * Returns 0 or -errno with e filled. */
int read_whole_file(const char *path, const char *what, uint8_t **buf, size_t *len,
		    struct errbuf *e);

#endif
