/* The host side of one serial port: its character backend (core/chardev) and, on stdio,
 * the Ctrl-A escapes QEMU users know (h help, x quit, b break, c monitor, Ctrl-A Ctrl-A
 * sends Ctrl-A). With mux (mon:stdio, -chardev ...,mux=on) Ctrl-A c switches the input
 * between the guest's console and a small monitor ("(kvmini) ") that calls the VM only
 * through struct vm_control. */
#ifndef KVMINI_VMM_CONSOLE_H
#define KVMINI_VMM_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "core/chardev.h"
#include "core/control.h"
#include "core/loop.h"
#include "core/power.h"
#include "devices/serial.h"
#include "vmm/vcpu.h"
#include "util/err.h"

#define CONSOLE_LINE_MAX 256

struct console {
	struct chardev chr;
	bool opened;
	bool escapes;	 /* Ctrl-A commands (the stdio backend) */
	bool mux;	 /* Ctrl-A c reaches the monitor */
	bool escape;	 /* the previous byte was Ctrl-A */
	bool in_monitor; /* input goes to the monitor, not the guest */
	char line[CONSOLE_LINE_MAX];
	size_t line_len;
	struct serial *serial;
	struct vm_power *power;
	const struct vm_control *control;
	struct vcpu *vcpus; /* for info cpus / info registers (set by the VM) */
	unsigned nvcpus;
};

/* Opens the backend cfg describes, labelled label ("serial0"), so the UART can be created
 * with &c->chr. */
int console_open(struct console *c, const struct chardev_cfg *cfg, const char *label,
		 struct errbuf *e);
/* Wires input to the UART through the loop (a terminal goes into raw mode). control may be
 * NULL (no monitor operations). */
int console_start(struct console *c, struct serial *serial, struct event_loop *loop,
		  struct vm_power *power, const struct vm_control *control, struct errbuf *e);
/* Writes what output is still buffered (bounded wait), restores the terminal, closes. */
void console_close(struct console *c);

/* Feeds input bytes through the escape handling and the monitor; returns how many of buf
 * were consumed (all, unless the UART is full). The chardev's receive function; exposed
 * for tests. */
size_t console_feed(struct console *c, const uint8_t *buf, size_t len);
/* Runs one monitor command line; its reply goes to the console's output. */
void console_monitor_command(struct console *c, const char *line);

#endif
