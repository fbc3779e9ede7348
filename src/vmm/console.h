/* The host side of the serial console: the terminal (raw mode, restored on exit), the
 * Ctrl-A escapes QEMU users know (Ctrl-A x quits, Ctrl-A Ctrl-A sends Ctrl-A), and the flow
 * of stdin into the UART without losing a byte when the guest reads slowly. */
#ifndef KVMINI_VMM_CONSOLE_H
#define KVMINI_VMM_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <termios.h>

#include "config.h"
#include "devices/serial.h"
#include "util/err.h"
#include "core/loop.h"
#include "core/power.h"

struct console {
	enum console_mode mode;
	int in_fd;  /* -1 when there is no input */
	int out_fd; /* where the UART writes; -1 discards */
	bool owns_out_fd;
	bool tty_raw; /* termios changed: restore on close */
	struct termios saved;
	struct serial *serial;
	struct event_loop *loop;
	struct vm_power *power;
	bool escape;	      /* the previous byte was Ctrl-A */
	bool in_watched;      /* in_fd is armed in the loop */
	uint8_t pending[256]; /* read from stdin, not yet accepted by the UART */
	size_t pending_len;
	int space_fd; /* eventfd: the UART has room again (written from a vCPU thread) */
};

/* Opens the output (stdout or the file) so the UART can be created with it. */
int console_open(struct console *c, const struct vm_config *cfg, struct errbuf *e);
/* Wires input to the UART through the loop and puts a terminal into raw mode. */
int console_start(struct console *c, struct serial *serial, struct event_loop *loop,
		  struct vm_power *power, struct errbuf *e);
void console_close(struct console *c);

/* Feeds input bytes through the escape handling; returns how many of buf were consumed
 * (all, unless the UART is full). Exposed for tests. */
size_t console_feed(struct console *c, const uint8_t *buf, size_t len);

#endif
