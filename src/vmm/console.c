#include "vmm/console.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/log.h"
#include "vmm/hmp.h"

#define CTRL_A 0x01

static void console_printf(struct console *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Monitor and escape replies go where the guest's output goes (as QEMU's mux does), best
 * effort: a reader that stopped reading loses them, the VM never waits for them. */
static void console_printf(struct console *c, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	chardev_write(&c->chr, (const uint8_t *)buf, (size_t)n);
}

static size_t console_to_serial(void *opaque, const uint8_t *buf, size_t len)
{
	struct console *c = opaque;
	return c->serial ? serial_receive(c->serial, buf, len) : len;
}

static size_t console_feed_cb(void *opaque, const uint8_t *buf, size_t len)
{
	return console_feed(opaque, buf, len);
}

static void console_serial_has_space(void *opaque)
{
	struct console *c = opaque;
	chardev_input_resume(&c->chr);
}

int console_open(struct console *c, const struct chardev_cfg *cfg, const char *label,
		 struct errbuf *e)
{
	memset(c, 0, sizeof(*c));
	int ret = chardev_open(&c->chr, cfg, label, e);
	if (ret < 0) {
		chardev_close(&c->chr);
		return ret;
	}
	c->opened = true;
	c->escapes = cfg->backend == CHARDEV_STDIO;
	c->mux = cfg->mux && c->escapes;
	chardev_set_receive(&c->chr, c->escapes ? console_feed_cb : console_to_serial, c);
	return 0;
}

int console_start(struct console *c, struct serial *serial, struct event_loop *loop,
		  struct vm_power *power, const struct vm_control *control, struct errbuf *e)
{
	c->serial = serial;
	c->power = power;
	c->control = control;
	if (serial)
		serial_set_rx_space_notify(serial, console_serial_has_space, c);
	return chardev_start(&c->chr, loop, e);
}

void console_close(struct console *c)
{
	if (!c->opened)
		return;
	chardev_flush(&c->chr, 1000);
	chardev_close(&c->chr);
	c->opened = false;
}

/* ---- the monitor ---- */

static void monitor_prompt(struct console *c)
{
	console_printf(c, "(kvmini) ");
}

/* The command table is vmm/hmp.c's, shared with QMP's human-monitor-command; its "\n" line
 * ends become "\r\n" on the raw terminal. */
void console_monitor_command(struct console *c, const char *line)
{
	struct hmp_env env = {c->control, c->power, c->vcpus, c->nvcpus};
	struct hmp_out out; /* 16 KiB on the loop thread's stack */
	out.len = 0;
	hmp_run(&env, line, &out);
	size_t start = 0;
	for (size_t i = 0; i < out.len; i++) {
		if (out.buf[i] != '\n')
			continue;
		chardev_write(&c->chr, (const uint8_t *)out.buf + start, i - start);
		chardev_write(&c->chr, (const uint8_t *)"\r\n", 2);
		start = i + 1;
	}
	if (start < out.len)
		chardev_write(&c->chr, (const uint8_t *)out.buf + start, out.len - start);
}

/* Line editing as a terminal user expects of a prompt: echo, backspace, Enter. */
static void monitor_input(struct console *c, uint8_t b)
{
	if (b == '\r' || b == '\n') {
		/* "\r\n" from a terminal or a file ends one line, not two. */
		console_printf(c, "\r\n");
		c->line[c->line_len] = '\0';
		size_t len = c->line_len;
		c->line_len = 0;
		if (len > 0)
			console_monitor_command(c, c->line);
		if (c->in_monitor && !(c->power && power_stop_requested(c->power)))
			monitor_prompt(c);
		return;
	}
	if (b == 0x7f || b == 0x08) {
		if (c->line_len > 0) {
			c->line_len--;
			console_printf(c, "\b \b");
		}
		return;
	}
	if (b < 0x20 || c->line_len + 1 >= sizeof(c->line))
		return;
	c->line[c->line_len++] = (char)b;
	chardev_write(&c->chr, &b, 1);
}

/* ---- escapes ---- */

static void console_help(struct console *c)
{
	console_printf(c,
		       "\r\n"
		       "C-a h    print this help\r\n"
		       "C-a x    quit kvmini\r\n"
		       "C-a b    send a break (Linux: magic SysRq)\r\n"
		       "%s"
		       "C-a C-a  send C-a to the guest\r\n",
		       c->mux ? "C-a c    switch between the console and the monitor\r\n" : "");
}

static void console_switch(struct console *c)
{
	c->in_monitor = !c->in_monitor;
	c->line_len = 0;
	if (c->in_monitor) {
		console_printf(c, "\r\nkvmini monitor - type 'help' for more information\r\n");
		monitor_prompt(c);
	} else {
		console_printf(c, "\r\n");
	}
}

/* Handles the key after Ctrl-A. Returns false if it must be offered again later (the
 * UART had no room for what it sends). */
static bool console_escape(struct console *c, uint8_t b)
{
	switch (b) {
	case 'x':
	case 'X':
		log_warn("terminated by Ctrl-A x");
		if (c->power)
			power_request_stop(c->power, STOP_SIGNAL, 0);
		return true;
	case 'h':
	case '?':
		console_help(c);
		return true;
	case 'b':
		return c->serial ? serial_send_break(c->serial) : true;
	case 'c':
		if (c->mux) {
			console_switch(c);
			return true;
		}
		log_warn("Ctrl-A c: this console has no monitor (use -serial mon:stdio)");
		return true;
	case CTRL_A:
		if (c->in_monitor)
			return true;
		return !c->serial || serial_receive(c->serial, &b, 1) == 1;
	default:
		/* QEMU swallows unknown escapes silently; saying so beats a lost key. */
		if (b >= 0x20 && b < 0x7f)
			log_warn("Ctrl-A %c is not a command (Ctrl-A h lists them); ignored", b);
		else
			log_warn("Ctrl-A 0x%02x is not a command (Ctrl-A h lists them); ignored",
				 b);
		return true;
	}
}

size_t console_feed(struct console *c, const uint8_t *buf, size_t len)
{
	size_t i = 0;
	while (i < len) {
		uint8_t b = buf[i];
		if (c->escape) {
			if (!console_escape(c, b))
				return i;
			c->escape = false;
			i++;
			if (b == 'x' || b == 'X')
				return len; /* quitting: the rest does not matter */
			continue;
		}
		if (b == CTRL_A) {
			c->escape = true;
			i++;
			continue;
		}
		if (c->in_monitor) {
			monitor_input(c, b);
			i++;
			continue;
		}
		/* A run of ordinary bytes goes to the UART in one piece. */
		const uint8_t *esc = memchr(buf + i, CTRL_A, len - i);
		size_t run = esc ? (size_t)(esc - (buf + i)) : len - i;
		size_t n = console_to_serial(c, buf + i, run);
		i += n;
		if (n < run)
			return i;
	}
	return len;
}
