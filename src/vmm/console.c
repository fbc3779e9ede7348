#include "vmm/console.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/log.h"

#define CTRL_A 0x01

static void console_on_input(void *opaque, int fd, uint32_t events);

int console_open(struct console *c, const struct vm_config *cfg, struct errbuf *e)
{
	memset(c, 0, sizeof(*c));
	c->mode = cfg->console;
	c->in_fd = -1;
	c->out_fd = -1;
	c->space_fd = -1;
	switch (cfg->console) {
	case CONSOLE_STDIO:
		c->in_fd = STDIN_FILENO;
		c->out_fd = STDOUT_FILENO;
		break;
	case CONSOLE_NONE:
		break;
	case CONSOLE_FILE:
		c->out_fd = open(cfg->console_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (c->out_fd < 0)
			return errf(e, -errno, "cannot open console file '%s': %s",
				    cfg->console_path, strerror(errno));
		c->owns_out_fd = true;
		break;
	}
	return 0;
}

/* Watches stdin only while every byte read so far has reached the UART. A paused fd is
 * taken out of the loop entirely: epoll reports a hang-up even with no events asked for,
 * which would spin the loop and cut off input that is still waiting in the pipe. */
static void console_set_watch(struct console *c, bool want)
{
	if (c->in_fd < 0 || want == c->in_watched)
		return;
	int ret = want ? loop_add_fd(c->loop, c->in_fd, EPOLLIN, console_on_input, c)
		       : loop_del_fd(c->loop, c->in_fd);
	if (ret == 0)
		c->in_watched = want;
}

static void console_flush_pending(struct console *c)
{
	size_t n = serial_receive(c->serial, c->pending, c->pending_len);
	memmove(c->pending, c->pending + n, c->pending_len - n);
	c->pending_len -= n;
	console_set_watch(c, c->pending_len == 0);
}

size_t console_feed(struct console *c, const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		uint8_t b = buf[i];
		if (c->escape) {
			c->escape = false;
			if (b == 'x' || b == 'X') {
				log_warn("terminated by Ctrl-A x");
				power_request_stop(c->power, STOP_SIGNAL, 0);
				return len;
			}
			if (b != CTRL_A)
				continue; /* unknown escape: swallowed, as QEMU does */
		} else if (b == CTRL_A) {
			c->escape = true;
			continue;
		}
		if (c->pending_len == sizeof(c->pending))
			return i;
		c->pending[c->pending_len++] = b;
	}
	return len;
}

static void console_on_input(void *opaque, int fd, uint32_t events)
{
	struct console *c = opaque;
	uint8_t buf[sizeof(c->pending)];
	size_t room = sizeof(c->pending) - c->pending_len;
	if (room == 0) {
		console_set_watch(c, false);
		return;
	}
	ssize_t n = read(fd, buf, room);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		/* EOF or error: no more input, the VM keeps running. */
		loop_del_fd(c->loop, fd);
		c->in_fd = -1;
		c->in_watched = false;
		return;
	}
	console_feed(c, buf, (size_t)n);
	console_flush_pending(c);
}

static void console_on_space(void *opaque, int fd, uint32_t events)
{
	struct console *c = opaque;
	uint64_t v;
	ssize_t r = read(fd, &v, sizeof(v));
	(void)r;
	console_flush_pending(c);
}

/* Called by the UART on a vCPU thread: hop to the loop thread. */
static void console_uart_has_space(void *opaque)
{
	struct console *c = opaque;
	uint64_t one = 1;
	ssize_t r = write(c->space_fd, &one, sizeof(one));
	(void)r;
}

int console_start(struct console *c, struct serial *serial, struct event_loop *loop,
		  struct vm_power *power, struct errbuf *e)
{
	c->serial = serial;
	c->loop = loop;
	c->power = power;
	if (c->in_fd < 0)
		return 0;
	c->space_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->space_fd < 0)
		return errf(e, -errno, "eventfd: %s", strerror(errno));
	int ret = loop_add_fd(loop, c->space_fd, EPOLLIN, console_on_space, c);
	if (ret < 0)
		return errf(e, ret, "cannot watch the console: %s", strerror(-ret));
	serial_set_rx_space_notify(serial, console_uart_has_space, c);

	ret = loop_add_fd(loop, c->in_fd, EPOLLIN, console_on_input, c);
	if (ret == -EPERM) {
		/* A regular file or /dev/null on stdin cannot be polled: no input. */
		c->in_fd = -1;
		return 0;
	}
	if (ret < 0)
		return errf(e, ret, "cannot watch standard input: %s", strerror(-ret));
	c->in_watched = true;

	if (isatty(c->in_fd) && tcgetattr(c->in_fd, &c->saved) == 0) {
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

void console_close(struct console *c)
{
	if (c->tty_raw)
		tcsetattr(c->in_fd >= 0 ? c->in_fd : STDIN_FILENO, TCSANOW, &c->saved);
	c->tty_raw = false;
	if (c->space_fd >= 0)
		close(c->space_fd);
	c->space_fd = -1;
	if (c->owns_out_fd && c->out_fd >= 0)
		close(c->out_fd);
	c->out_fd = -1;
}
