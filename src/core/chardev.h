/* Character backends below the devices: where a UART's bytes go and where its input comes
 * from (stdio, file:PATH, pty, a unix socket, null). Output is a bounded buffer: a writer
 * (a vCPU thread) never blocks; what the backend cannot take at once waits in the buffer
 * and the event loop drains it with non-blocking writes. When the buffer is full,
 * chardev_write() takes less than it was offered and calls the writer's `writable`
 * function (on the loop thread) once there is room again: the device stalls its
 * transmitter rather than dropping bytes. Input is read by the loop and offered to the
 * frontend's `receive`; what the frontend refuses stays here, and the backend is not read
 * again until the frontend calls chardev_input_resume(). */
#ifndef KVMINI_CORE_CHARDEV_H
#define KVMINI_CORE_CHARDEV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <termios.h>

#include "config.h"
#include "core/loop.h"
#include "util/err.h"

#define CHARDEV_OUT_BUF 16384
#define CHARDEV_IN_BUF	256

/* Takes bytes from the backend; returns how many (the rest is offered again later). */
typedef size_t (*chardev_receive_fn)(void *opaque, const uint8_t *buf, size_t len);
typedef void (*chardev_notify_fn)(void *opaque);

struct chardev {
	char label[32]; /* "serial0", or the -chardev id */
	enum chardev_backend backend;
	int in_fd;     /* -1: no input (yet) */
	int out_fd;    /* -1: output is discarded */
	int listen_fd; /* unix server: the listening socket */
	int kick_fd;   /* eventfd: wakes the loop to arm output or resume input */
	int pty_timer; /* pty: timerfd polling for a reader while none has the pty open */
	bool initialized;
	bool owns_in_fd;
	bool out_is_socket, out_nonblock;
	bool connected; /* a socket has a peer / a pty has a reader: else output is dropped */
	bool wait;	/* unix server: chardev_start waits for the first client */
	char path[108]; /* unix socket path (unlinked on close when we listened), pty path */
	bool unlink_path;
	bool tty_raw;
	struct termios saved;
	struct event_loop *loop;

	pthread_mutex_t lock; /* output buffer and connection state */
	/* Allocated apart and never cleared: its pages cost memory only once a slow reader
	 * makes output queue up. */
	uint8_t *out;
	size_t out_head, out_len;
	bool out_refused; /* a write took less than offered: notify when room comes */
	bool out_watched; /* out_fd armed for EPOLLOUT (changed on the loop thread only) */
	chardev_notify_fn writable_fn;
	void *writable_opaque;

	/* input, touched on the loop thread only (resume_pending excepted) */
	chardev_receive_fn receive_fn;
	void *receive_opaque;
	uint8_t in[CHARDEV_IN_BUF];
	size_t in_off, in_len; /* read from the backend, not yet taken by the frontend */
	bool in_watched;
	bool in_unpollable; /* a regular file or /dev/null: read whenever there is room */
	bool in_eof;
	atomic_bool resume_pending;
};

/* Opens the backend cfg describes (a pty is created and its path printed on stderr as
 * QEMU does: "char device redirected to /dev/pts/N (label serial0)"; a unix server
 * listens). Nothing is watched until chardev_start(). */
int chardev_open(struct chardev *c, const struct chardev_cfg *cfg, const char *label,
		 struct errbuf *e);
/* A backend over descriptors the caller opened and keeps (tests; later, descriptors a
 * management tool passes in): input from in_fd (-1: none), output to kvmini's own
 * non-blocking reopening of out_fd (-1: discarded). */
int chardev_open_fds(struct chardev *c, int in_fd, int out_fd, const char *label, struct errbuf *e);
void chardev_set_receive(struct chardev *c, chardev_receive_fn fn, void *opaque);
void chardev_set_writable(struct chardev *c, chardev_notify_fn fn, void *opaque);
/* Registers with the loop; a unix server with wait waits here for its first client, and a
 * terminal on stdin is put into raw mode. */
int chardev_start(struct chardev *c, struct event_loop *loop, struct errbuf *e);
/* Any thread, never blocks: returns how many bytes were taken (written, buffered, or
 * dropped because nobody is connected). Less than len means the buffer is full. */
size_t chardev_write(struct chardev *c, const uint8_t *buf, size_t len);
/* Any thread: the frontend has room again; the loop offers it what is pending. */
void chardev_input_resume(struct chardev *c);
/* Writes what is still buffered, waiting at most timeout_ms for a reader that makes no
 * progress. Call once the loop and the vCPUs have stopped. */
void chardev_flush(struct chardev *c, int timeout_ms);
/* Restores the terminal, unregisters, closes what was opened. */
void chardev_close(struct chardev *c);
/* Bytes waiting in the output buffer (for tests and statistics). */
size_t chardev_out_pending(struct chardev *c);

#endif
