#include "core/chardev.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/log.h"

/* How often a pty nobody has open is looked at again (QEMU polls once a second). */
#define PTY_POLL_NS (200ull * 1000 * 1000)

static void chardev_on_input(void *opaque, int fd, uint32_t events);
static void chardev_on_output(void *opaque, int fd, uint32_t events);
static void chardev_on_accept(void *opaque, int fd, uint32_t events);

static void chardev_kick(struct chardev *c)
{
	uint64_t one = 1;
	if (c->kick_fd >= 0) {
		ssize_t r = write(c->kick_fd, &one, sizeof(one));
		(void)r;
	}
}

/* kvmini's own file description for output, so O_NONBLOCK does not leak to whoever else
 * shares the terminal or pipe (the shell would see EAGAIN after kvmini exits). A pipe or a
 * terminal is opened again through /proc; a socket is written with MSG_DONTWAIT; a regular
 * file never makes a writer wait on a reader, so a plain duplicate is fine. */
static int open_own_output(struct chardev *c, int fd, struct errbuf *e)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return errf(e, -errno, "%s: standard output is not usable: %s", c->label,
			    strerror(errno));
	if (S_ISSOCK(st.st_mode)) {
		c->out_is_socket = true;
		c->out_nonblock = true;
	} else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		int own = open(path, O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
		if (own >= 0) {
			c->out_fd = own;
			c->out_nonblock = true;
			return 0;
		}
		log_debug("%s: cannot reopen standard output (%s): the loop writes it", c->label,
			  strerror(errno));
	}
	c->out_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (c->out_fd < 0)
		return errf(e, -errno, "%s: dup: %s", c->label, strerror(errno));
	/* A regular file: direct writes are fine. Anything else we could not reopen: only the
	 * loop thread writes it (out_nonblock false). */
	if (S_ISREG(st.st_mode))
		c->out_nonblock = true;
	return 0;
}

static int open_pty(struct chardev *c, struct errbuf *e)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0)
		return errf(e, -errno, "%s: cannot create a pty: %s", c->label, strerror(errno));
	if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, c->path, sizeof(c->path)) != 0) {
		int err = errno;
		close(m);
		return errf(e, -err, "%s: cannot set up the pty: %s", c->label, strerror(err));
	}
	/* The far side sees the bytes as they are, as QEMU's pty does (no echo, no CR/LF
	 * translation). Opening the slave once also makes the master report a hang-up until a
	 * reader opens it. */
	int s = open(c->path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (s >= 0) {
		struct termios t;
		if (tcgetattr(s, &t) == 0) {
			cfmakeraw(&t);
			tcsetattr(s, TCSANOW, &t);
		}
		close(s);
	}
	int fl = fcntl(m, F_GETFL);
	fcntl(m, F_SETFL, fl | O_NONBLOCK);
	c->in_fd = m;
	c->owns_in_fd = true;
	c->out_fd = fcntl(m, F_DUPFD_CLOEXEC, 3);
	if (c->out_fd < 0)
		return errf(e, -errno, "%s: dup: %s", c->label, strerror(errno));
	c->out_nonblock = true;
	c->connected = false;
	/* The one line a pty user needs, whatever the verbosity (QEMU prints it too). */
	fprintf(stderr, "kvmini: char device redirected to %s (label %s)\r\n", c->path, c->label);
	return 0;
}

static int unix_addr(struct chardev *c, const char *path, struct sockaddr_un *sa, struct errbuf *e)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return errf(e, -ENAMETOOLONG,
			    "%s: socket path '%s' is too long (at most %zu bytes)", c->label, path,
			    sizeof(sa->sun_path) - 1);
	strcpy(sa->sun_path, path);
	snprintf(c->path, sizeof(c->path), "%s", path);
	return 0;
}

/* A connected socket becomes both ends; the output end is a duplicate so epoll can watch
 * it for EPOLLOUT separately from input. */
static int chardev_set_conn(struct chardev *c, int fd)
{
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	int out = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (out < 0) {
		int err = errno;
		close(fd);
		return -err;
	}
	pthread_mutex_lock(&c->lock);
	c->in_fd = fd;
	c->owns_in_fd = true;
	c->out_fd = out;
	c->out_is_socket = true;
	c->out_nonblock = true;
	c->connected = true;
	c->in_eof = false;
	c->in_off = c->in_len = 0;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static int open_unix(struct chardev *c, const struct chardev_cfg *cfg, struct errbuf *e)
{
	struct sockaddr_un sa;
	/* path_buf first: it survives a copy of the config, a pointer into it would not. */
	const char *path = cfg->path_buf[0] ? cfg->path_buf : cfg->path;
	if (!path)
		return errf(e, -EINVAL, "%s: a unix socket needs a path", c->label);
	int ret = unix_addr(c, path, &sa, e);
	if (ret < 0)
		return ret;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errf(e, -errno, "%s: socket: %s", c->label, strerror(errno));
	if (!cfg->server) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			int err = errno;
			close(fd);
			return errf(e, -err, "%s: cannot connect to unix socket '%s': %s", c->label,
				    path, strerror(err));
		}
		ret = chardev_set_conn(c, fd);
		if (ret < 0)
			return errf(e, ret, "%s: dup: %s", c->label, strerror(-ret));
		return 0;
	}
	/* A stale socket from an earlier run would make bind fail; QEMU removes it too. */
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
		int err = errno;
		close(fd);
		return errf(e, -err, "%s: cannot listen on unix socket '%s': %s", c->label, path,
			    strerror(err));
	}
	c->unlink_path = true;
	c->listen_fd = fd;
	c->wait = cfg->wait;
	return 0;
}

static int chardev_init(struct chardev *c, enum chardev_backend backend, const char *label,
			struct errbuf *e)
{
	memset(c, 0, sizeof(*c));
	/* mmap, not malloc: no allocator header touches its first page, so a VM whose
	 * reader keeps up never pays for it (idle RSS is a benchmark figure). */
	void *out =
	    mmap(NULL, CHARDEV_OUT_BUF, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (out == MAP_FAILED)
		return errf(e, -ENOMEM, "%s: out of memory", label);
	c->out = out;
	snprintf(c->label, sizeof(c->label), "%s", label);
	c->backend = backend;
	c->in_fd = c->out_fd = c->listen_fd = c->kick_fd = c->pty_timer = -1;
	atomic_init(&c->resume_pending, false);
	pthread_mutex_init(&c->lock, NULL);
	c->initialized = true;
	return 0;
}

int chardev_open_fds(struct chardev *c, int in_fd, int out_fd, const char *label, struct errbuf *e)
{
	int ret = chardev_init(c, CHARDEV_STDIO, label, e);
	if (ret < 0)
		return ret;
	c->in_fd = in_fd;
	c->connected = true;
	return out_fd >= 0 ? open_own_output(c, out_fd, e) : 0;
}

int chardev_open(struct chardev *c, const struct chardev_cfg *cfg, const char *label,
		 struct errbuf *e)
{
	int ret = chardev_init(c, cfg->backend, label, e);
	if (ret < 0)
		return ret;
	switch (cfg->backend) {
	case CHARDEV_NONE:
	case CHARDEV_NULL:
		return 0;
	case CHARDEV_STDIO:
		c->in_fd = STDIN_FILENO;
		c->connected = true;
		return open_own_output(c, STDOUT_FILENO, e);
	case CHARDEV_FILE:
		c->out_fd = open(cfg->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (c->out_fd < 0)
			return errf(e, -errno, "cannot open console file '%s': %s", cfg->path,
				    strerror(errno));
		c->out_nonblock = true;
		c->connected = true;
		return 0;
	case CHARDEV_PTY:
		return open_pty(c, e);
	case CHARDEV_UNIX:
		return open_unix(c, cfg, e);
	}
	return errf(e, -EINVAL, "%s: unknown character backend", c->label);
}

void chardev_set_receive(struct chardev *c, chardev_receive_fn fn, void *opaque)
{
	c->receive_fn = fn;
	c->receive_opaque = opaque;
}

void chardev_set_writable(struct chardev *c, chardev_notify_fn fn, void *opaque)
{
	pthread_mutex_lock(&c->lock);
	c->writable_fn = fn;
	c->writable_opaque = opaque;
	pthread_mutex_unlock(&c->lock);
}

/* ---- output ---- */

static ssize_t out_write(struct chardev *c, const uint8_t *buf, size_t n)
{
	if (c->out_is_socket)
		return send(c->out_fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
	return write(c->out_fd, buf, n);
}

/* Called with c->lock held. The reader went away: output is dropped from now on (a socket
 * server goes back to listening once the loop sees the hang-up). */
static void out_lost(struct chardev *c, int err)
{
	if (c->connected)
		log_debug("%s: output stops: %s", c->label, strerror(err));
	c->connected = false;
	c->out_len = 0;
	c->out_head = 0;
}

/* Called with c->lock held: writes from the buffer until it is empty or the fd is full.
 * `blocking_ok` is for the loop thread and the final flush, where a descriptor we could
 * not make non-blocking may be written. */
static void out_drain(struct chardev *c, bool blocking_ok)
{
	while (c->out_len > 0 && c->connected) {
		if (!c->out_nonblock && !blocking_ok)
			return;
		size_t chunk = CHARDEV_OUT_BUF - c->out_head;
		if (chunk > c->out_len)
			chunk = c->out_len;
		if (!c->out_nonblock && chunk > PIPE_BUF)
			chunk = PIPE_BUF;
		ssize_t w = out_write(c, c->out + c->out_head, chunk);
		if (w > 0) {
			c->out_head = (c->out_head + (size_t)w) % CHARDEV_OUT_BUF;
			c->out_len -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		/* EIO from a pty whose reader closed it is a disconnect, not an error. */
		out_lost(c, w < 0 ? errno : EIO);
		return;
	}
	if (c->out_len == 0)
		c->out_head = 0;
}

size_t chardev_write(struct chardev *c, const uint8_t *buf, size_t len)
{
	size_t taken = 0;
	bool kick = false;

	pthread_mutex_lock(&c->lock);
	if (c->out_fd < 0 || !c->connected) {
		pthread_mutex_unlock(&c->lock);
		return len; /* nobody to write to: dropped, as a disconnected QEMU chardev does */
	}
	/* Straight to the fd while nothing is queued ahead (the usual case): one syscall, no
	 * hop through the loop. */
	if (c->out_len == 0 && c->out_nonblock) {
		while (taken < len) {
			ssize_t w = out_write(c, buf + taken, len - taken);
			if (w > 0) {
				taken += (size_t)w;
				continue;
			}
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			out_lost(c, w < 0 ? errno : EIO);
			pthread_mutex_unlock(&c->lock);
			return len;
		}
	}
	while (taken < len && c->out_len < CHARDEV_OUT_BUF) {
		size_t tail = (c->out_head + c->out_len) % CHARDEV_OUT_BUF;
		size_t room = CHARDEV_OUT_BUF - c->out_len;
		size_t chunk = CHARDEV_OUT_BUF - tail;
		if (chunk > room)
			chunk = room;
		if (chunk > len - taken)
			chunk = len - taken;
		memcpy(c->out + tail, buf + taken, chunk);
		c->out_len += chunk;
		taken += chunk;
	}
	if (taken < len)
		c->out_refused = true;
	if (c->out_len > 0 && !c->out_watched)
		kick = true;
	pthread_mutex_unlock(&c->lock);
	if (kick)
		chardev_kick(c);
	return taken;
}

/* Loop thread: arms or disarms EPOLLOUT on out_fd to match the buffer. Under c->lock, so a
 * writer that queues bytes either sees the watch armed or kicks the loop to arm it. */
static void out_update_watch(struct chardev *c)
{
	pthread_mutex_lock(&c->lock);
	bool want = c->out_len > 0 && c->connected && c->out_fd >= 0 && c->loop;
	if (want != c->out_watched) {
		int ret = want ? loop_add_fd(c->loop, c->out_fd, EPOLLOUT, chardev_on_output, c)
			       : loop_del_fd(c->loop, c->out_fd);
		if (ret == 0 || !want)
			c->out_watched = want;
	}
	pthread_mutex_unlock(&c->lock);
}

static void out_service(struct chardev *c)
{
	chardev_notify_fn fn = NULL;
	void *opaque = NULL;

	pthread_mutex_lock(&c->lock);
	out_drain(c, true);
	if (c->out_refused && (c->out_len < CHARDEV_OUT_BUF || !c->connected)) {
		c->out_refused = false;
		fn = c->writable_fn;
		opaque = c->writable_opaque;
	}
	pthread_mutex_unlock(&c->lock);
	out_update_watch(c);
	if (fn)
		fn(opaque);
}

static void chardev_on_output(void *opaque, int fd, uint32_t events)
{
	out_service(opaque);
}

/* ---- input ---- */

static void in_set_watch(struct chardev *c, bool want)
{
	if (c->in_fd < 0 || c->in_unpollable || want == c->in_watched)
		return;
	int ret = want ? loop_add_fd(c->loop, c->in_fd, EPOLLIN, chardev_on_input, c)
		       : loop_del_fd(c->loop, c->in_fd);
	if (ret == 0 || !want)
		c->in_watched = want;
}

/* Offers pending input to the frontend; true if all of it was taken. */
static bool in_deliver(struct chardev *c)
{
	while (c->in_off < c->in_len) {
		size_t n = c->receive_fn ? c->receive_fn(c->receive_opaque, c->in + c->in_off,
							 c->in_len - c->in_off)
					 : c->in_len - c->in_off;
		if (n == 0)
			return false;
		c->in_off += n;
	}
	c->in_off = c->in_len = 0;
	return true;
}

static void conn_closed(struct chardev *c);

/* Reads one chunk and offers it; returns false when reading must pause (the frontend is
 * full, EOF, or nothing to read now). */
static bool in_read_once(struct chardev *c)
{
	ssize_t n = read(c->in_fd, c->in, sizeof(c->in));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return false;
	if (n <= 0) {
		if (c->backend == CHARDEV_UNIX || c->backend == CHARDEV_PTY) {
			conn_closed(c);
			return false;
		}
		/* EOF or an error on stdin: no more input; the VM keeps running. */
		in_set_watch(c, false);
		c->in_eof = true;
		return false;
	}
	c->in_off = 0;
	c->in_len = (size_t)n;
	if (!in_deliver(c)) {
		in_set_watch(c, false);
		return false;
	}
	return true;
}

static void chardev_on_input(void *opaque, int fd, uint32_t events)
{
	struct chardev *c = opaque;
	if (c->in_len > c->in_off) {
		/* Still holding bytes the frontend refused: wait for its resume. */
		in_set_watch(c, false);
		return;
	}
	in_read_once(c);
}

/* A regular file (or /dev/null) cannot be polled, yet is always readable: it is read one
 * chunk per kick while the frontend takes everything, so the loop stays responsive. */
static void in_pump_unpollable(struct chardev *c)
{
	if (!c->in_unpollable || c->in_eof || c->in_len > c->in_off)
		return;
	if (in_read_once(c))
		chardev_kick(c);
}

static void chardev_on_kick(void *opaque, int fd, uint32_t events)
{
	struct chardev *c = opaque;
	uint64_t v;
	ssize_t r = read(fd, &v, sizeof(v));
	(void)r;
	if (atomic_exchange(&c->resume_pending, false) && c->in_len > c->in_off) {
		if (in_deliver(c) && !c->in_eof)
			in_set_watch(c, true);
	}
	in_pump_unpollable(c);
	out_service(c);
}

void chardev_input_resume(struct chardev *c)
{
	atomic_store(&c->resume_pending, true);
	chardev_kick(c);
}

/* ---- connections (unix socket, pty) ---- */

static void pty_check(void *opaque, int fd, uint32_t events);

static void conn_closed(struct chardev *c)
{
	in_set_watch(c, false);
	pthread_mutex_lock(&c->lock);
	if (c->out_watched) {
		loop_del_fd(c->loop, c->out_fd);
		c->out_watched = false;
	}
	out_lost(c, ECONNRESET);
	bool refused = c->out_refused;
	c->out_refused = false;
	chardev_notify_fn fn = c->writable_fn;
	void *opaque = c->writable_opaque;
	if (c->backend == CHARDEV_UNIX) {
		close(c->in_fd);
		close(c->out_fd);
		c->in_fd = c->out_fd = -1;
	}
	pthread_mutex_unlock(&c->lock);
	c->in_off = c->in_len = 0;
	if (c->backend == CHARDEV_UNIX && c->listen_fd >= 0) {
		log_debug("%s: client disconnected; listening on %s again", c->label, c->path);
		loop_add_fd(c->loop, c->listen_fd, EPOLLIN, chardev_on_accept, c);
	} else if (c->backend == CHARDEV_PTY && c->pty_timer < 0) {
		c->pty_timer = loop_add_timer(c->loop, PTY_POLL_NS, PTY_POLL_NS, pty_check, c);
	}
	if (refused && fn)
		fn(opaque); /* a stalled transmitter goes on: its bytes are dropped now */
}

/* A pty is connected while someone has its slave open: the master then stops reporting a
 * hang-up. */
static void pty_check(void *opaque, int fd, uint32_t events)
{
	struct chardev *c = opaque;
	uint64_t v;
	ssize_t r = read(fd, &v, sizeof(v));
	(void)r;
	struct pollfd p = {.fd = c->in_fd, .events = POLLIN};
	if (poll(&p, 1, 0) < 0 || (p.revents & POLLHUP))
		return;
	loop_del_fd(c->loop, c->pty_timer);
	close(c->pty_timer);
	c->pty_timer = -1;
	pthread_mutex_lock(&c->lock);
	c->connected = true;
	pthread_mutex_unlock(&c->lock);
	log_debug("%s: %s opened", c->label, c->path);
	in_set_watch(c, true);
}

static int chardev_accept(struct chardev *c)
{
	int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return -errno;
	int ret = chardev_set_conn(c, fd);
	if (ret == 0)
		log_debug("%s: client connected to %s", c->label, c->path);
	return ret;
}

static void chardev_on_accept(void *opaque, int fd, uint32_t events)
{
	struct chardev *c = opaque;
	if (chardev_accept(c) < 0)
		return;
	loop_del_fd(c->loop, c->listen_fd);
	in_set_watch(c, true);
}

int chardev_start(struct chardev *c, struct event_loop *loop, struct errbuf *e)
{
	int ret;

	c->loop = loop;
	if (c->backend == CHARDEV_NONE || c->backend == CHARDEV_NULL)
		return 0;
	c->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->kick_fd < 0)
		return errf(e, -errno, "eventfd: %s", strerror(errno));
	if ((ret = loop_add_fd(loop, c->kick_fd, EPOLLIN, chardev_on_kick, c)) < 0)
		return errf(e, ret, "%s: cannot watch the backend: %s", c->label, strerror(-ret));

	if (c->listen_fd >= 0) {
		if (c->wait) {
			/* QEMU's server=on,wait=on: the guest starts once a client is there. */
			fprintf(stderr, "kvmini: %s: waiting for a connection on %s\r\n", c->label,
				c->path);
			if ((ret = chardev_accept(c)) < 0)
				return errf(e, ret, "%s: accept on %s: %s", c->label, c->path,
					    strerror(-ret));
		} else {
			int fl = fcntl(c->listen_fd, F_GETFL);
			fcntl(c->listen_fd, F_SETFL, fl | O_NONBLOCK);
			if ((ret = loop_add_fd(loop, c->listen_fd, EPOLLIN, chardev_on_accept, c)) <
			    0)
				return errf(e, ret, "%s: cannot watch %s: %s", c->label, c->path,
					    strerror(-ret));
			return 0;
		}
	}
	if (c->backend == CHARDEV_PTY) {
		struct pollfd p = {.fd = c->in_fd, .events = POLLIN};
		if (poll(&p, 1, 0) >= 0 && !(p.revents & POLLHUP)) {
			c->connected = true;
		} else {
			c->pty_timer = loop_add_timer(loop, PTY_POLL_NS, PTY_POLL_NS, pty_check, c);
			if (c->pty_timer < 0)
				return errf(e, c->pty_timer, "%s: timerfd: %s", c->label,
					    strerror(-c->pty_timer));
			return 0;
		}
	}
	if (c->in_fd < 0)
		return 0;
	ret = loop_add_fd(loop, c->in_fd, EPOLLIN, chardev_on_input, c);
	if (ret == -EPERM) {
		/* A regular file or /dev/null: epoll refuses it, but it can always be read. */
		c->in_unpollable = true;
		chardev_kick(c);
	} else if (ret < 0) {
		return errf(e, ret, "%s: cannot watch its input: %s", c->label, strerror(-ret));
	} else {
		c->in_watched = true;
	}

	if (c->backend == CHARDEV_STDIO && isatty(c->in_fd) &&
	    tcgetattr(c->in_fd, &c->saved) == 0) {
		struct termios raw = c->saved;
		/* Raw input so keys (and Ctrl-C) reach the guest; output processing stays on
		 * so kvmini's own messages keep their line breaks. */
		raw.c_iflag &=
		    ~(unsigned)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
		raw.c_lflag &= ~(unsigned)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
		raw.c_cflag &= ~(unsigned)(CSIZE | PARENB);
		raw.c_cflag |= CS8;
		raw.c_cc[VMIN] = 1;
		raw.c_cc[VTIME] = 0;
		if (tcsetattr(c->in_fd, TCSANOW, &raw) == 0)
			c->tty_raw = true;
	}
	return 0;
}

/* A pty's reader loses what it has not read yet when the master closes (the hang-up
 * flushes it), so the guest's last lines would vanish: wait, bounded, until the slave's
 * input queue is empty. */
static void pty_wait_read(struct chardev *c, int timeout_ms)
{
	int s = open(c->path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (s < 0)
		return;
	/* Bytes written to the master reach the slave's queue from a kernel worker, a moment
	 * later: empty twice in a row, 10 ms apart, means read. */
	int empty = 0;
	for (int waited = 0; waited < timeout_ms && empty < 2; waited += 10) {
		usleep(10000);
		int n = 0;
		if (ioctl(s, FIONREAD, &n) < 0)
			break;
		empty = n == 0 ? empty + 1 : 0;
	}
	close(s);
}

void chardev_flush(struct chardev *c, int timeout_ms)
{
	pthread_mutex_lock(&c->lock);
	for (;;) {
		out_drain(c, false);
		if (c->out_len == 0 || !c->connected || c->out_fd < 0)
			break;
		struct pollfd p = {.fd = c->out_fd, .events = POLLOUT};
		pthread_mutex_unlock(&c->lock);
		int n = poll(&p, 1, timeout_ms);
		pthread_mutex_lock(&c->lock);
		if (n <= 0 || (p.revents & (POLLERR | POLLHUP)))
			break; /* a reader that makes no progress does not keep kvmini alive */
		if (!c->out_nonblock) {
			out_drain(c, true);
			if (c->out_len == 0)
				break;
		}
	}
	bool pty = c->backend == CHARDEV_PTY && c->connected;
	pthread_mutex_unlock(&c->lock);
	if (pty)
		pty_wait_read(c, timeout_ms);
}

size_t chardev_out_pending(struct chardev *c)
{
	pthread_mutex_lock(&c->lock);
	size_t n = c->out_len;
	pthread_mutex_unlock(&c->lock);
	return n;
}

void chardev_close(struct chardev *c)
{
	if (!c->initialized)
		return;
	if (c->tty_raw)
		tcsetattr(c->in_fd, TCSANOW, &c->saved);
	c->tty_raw = false;
	if (c->loop) {
		if (c->in_watched)
			loop_del_fd(c->loop, c->in_fd);
		if (c->out_watched)
			loop_del_fd(c->loop, c->out_fd);
		if (c->kick_fd >= 0)
			loop_del_fd(c->loop, c->kick_fd);
		if (c->pty_timer >= 0)
			loop_del_fd(c->loop, c->pty_timer);
		if (c->listen_fd >= 0)
			loop_del_fd(c->loop, c->listen_fd); /* -ENOENT when not watched */
	}
	c->in_watched = c->out_watched = false;
	if (c->in_fd >= 0 && c->owns_in_fd)
		close(c->in_fd);
	if (c->out_fd >= 0)
		close(c->out_fd);
	if (c->kick_fd >= 0)
		close(c->kick_fd);
	if (c->pty_timer >= 0)
		close(c->pty_timer);
	if (c->listen_fd >= 0)
		close(c->listen_fd);
	if (c->unlink_path)
		unlink(c->path);
	c->in_fd = c->out_fd = c->kick_fd = c->pty_timer = c->listen_fd = -1;
	c->unlink_path = false;
	c->loop = NULL;
	pthread_mutex_destroy(&c->lock);
	munmap(c->out, CHARDEV_OUT_BUF);
	c->out = NULL;
	c->backend = CHARDEV_NONE;
	c->initialized = false;
}
