#ifndef KVMINI_UTIL_FILE_H
#define KVMINI_UTIL_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* Reads a whole regular file into a malloc'ed buffer. Returns 0 or -errno with e filled
 * ("cannot open kernel 'x': No such file or directory"). `what` names the file's role. */
int read_whole_file(const char *path, const char *what, uint8_t **buf, size_t *len,
		    struct errbuf *e);

#endif
