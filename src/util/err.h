/* One error convention: functions return 0 or -errno, and fill a struct errbuf with one
 * human sentence (what failed and why: file, offset, value). Only the top level prints it. */
#ifndef KVMINI_UTIL_ERR_H
#define KVMINI_UTIL_ERR_H

#include <stddef.h>

struct errbuf {
	char msg[512];
};

/* Formats the message into e (if e is non-NULL) and returns code, so callers can write
 * `return errf(e, -EINVAL, "bad thing %d", x);`. */
int errf(struct errbuf *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
