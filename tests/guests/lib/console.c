#include "console.h"

#include "atomic.h"
#include "io.h"
#include "kstring.h"

#define PRINTF_BUF 512

static struct spinlock console_lock;
static bool crlf;
static unsigned tx_room; /* bytes we may write before looking at LSR again */

void console_init(void)
{
	outb(COM1_BASE + UART_IER, 0x00);
	outb(COM1_BASE + UART_LCR, 0x80); /* DLAB: divisor 1 = 115200 baud */
	outb(COM1_BASE + 0, 0x01);
	outb(COM1_BASE + 1, 0x00);
	outb(COM1_BASE + UART_LCR, 0x03); /* 8N1 */
	outb(COM1_BASE + UART_FCR, 0x07); /* enable and clear the FIFOs */
	outb(COM1_BASE + UART_MCR, 0x0b); /* DTR, RTS, OUT2 */
	tx_room = 0;
}

void console_set_crlf(bool on)
{
	crlf = on;
}

/* Each port access is a VM exit, so LSR is read once per 16 bytes: when it says the
 * transmitter is empty, the 16-byte FIFO has room for 16. */
static void uart_putc(char c)
{
	if (tx_room == 0) {
		unsigned spins = 0;
		while (!(inb(COM1_BASE + UART_LSR) & UART_LSR_THRE)) {
			if (++spins > 100000)
				break; /* a UART that never drains: write anyway */
			cpu_relax();
		}
		tx_room = 16;
	}
	outb(COM1_BASE + UART_THR, (uint8_t)c);
	tx_room--;
}

void console_write_unlocked(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n' && crlf)
			uart_putc('\r');
		uart_putc(s[i]);
	}
}

void console_write(const char *s, size_t n)
{
	uint64_t flags = spin_lock_irqsave(&console_lock);
	console_write_unlocked(s, n);
	spin_unlock_irqrestore(&console_lock, flags);
}

int puts(const char *s)
{
	uint64_t flags = spin_lock_irqsave(&console_lock);
	console_write_unlocked(s, strlen(s));
	console_write_unlocked("\n", 1);
	spin_unlock_irqrestore(&console_lock, flags);
	return 0;
}

struct outbuf {
	char *buf;
	size_t len; /* capacity including the NUL */
	size_t pos; /* characters produced so far (may exceed len) */
};

static void out_char(struct outbuf *o, char c)
{
	if (o->pos + 1 < o->len)
		o->buf[o->pos] = c;
	o->pos++;
}

static void out_number(struct outbuf *o, uint64_t v, unsigned base, bool upper, bool negative,
		       int width, bool zero, bool left)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char tmp[24];
	int n = 0;
	do {
		tmp[n++] = digits[v % base];
		v /= base;
	} while (v);
	int len = n + (negative ? 1 : 0);
	if (!left && !zero)
		for (; width > len; width--)
			out_char(o, ' ');
	if (negative)
		out_char(o, '-');
	if (!left && zero)
		for (; width > len; width--)
			out_char(o, '0');
	while (n)
		out_char(o, tmp[--n]);
	if (left)
		for (; width > len; width--)
			out_char(o, ' ');
}

int vsnprintf(char *buf, size_t len, const char *fmt, va_list ap)
{
	struct outbuf o = {.buf = buf, .len = len, .pos = 0};

	for (const char *p = fmt; *p; p++) {
		if (*p != '%') {
			out_char(&o, *p);
			continue;
		}
		p++;
		bool left = false, zero = false;
		for (;; p++) {
			if (*p == '-')
				left = true;
			else if (*p == '0')
				zero = true;
			else
				break;
		}
		int width = 0;
		while (*p >= '0' && *p <= '9')
			width = width * 10 + (*p++ - '0');
		int prec = -1;
		if (*p == '.') {
			p++;
			prec = 0;
			while (*p >= '0' && *p <= '9')
				prec = prec * 10 + (*p++ - '0');
		}
		int lng = 0;
		while (*p == 'l' || *p == 'z') {
			lng++;
			p++;
		}
		switch (*p) {
		case 'd':
		case 'i': {
			int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
			uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
			out_number(&o, u, 10, false, v < 0, width, zero, left);
			break;
		}
		case 'u':
		case 'x':
		case 'X': {
			uint64_t v = lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
			out_number(&o, v, *p == 'u' ? 10 : 16, *p == 'X', false, width, zero, left);
			break;
		}
		case 'p':
			out_char(&o, '0');
			out_char(&o, 'x');
			out_number(&o, (uint64_t)(uintptr_t)va_arg(ap, void *), 16, false, false,
				   16, true, false);
			break;
		case 'c':
			out_char(&o, (char)va_arg(ap, int));
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			int n = 0;
			while (s[n] && (prec < 0 || n < prec))
				n++;
			if (!left)
				for (int w = width; w > n; w--)
					out_char(&o, ' ');
			for (int i = 0; i < n; i++)
				out_char(&o, s[i]);
			if (left)
				for (int w = width; w > n; w--)
					out_char(&o, ' ');
			break;
		}
		case '%':
			out_char(&o, '%');
			break;
		case '\0':
			p--; /* a lone '%' at the end */
			break;
		default:
			out_char(&o, '%');
			out_char(&o, *p);
			break;
		}
	}
	if (len)
		buf[o.pos < len ? o.pos : len - 1] = '\0';
	return (int)o.pos;
}

int snprintf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return n;
}

int vprintf(const char *fmt, va_list ap)
{
	char buf[PRINTF_BUF];
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	size_t len = (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
	console_write(buf, len);
	return n;
}

int printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vprintf(fmt, ap);
	va_end(ap);
	return n;
}

void printf_unlocked(const char *fmt, ...)
{
	char buf[PRINTF_BUF];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	size_t len = (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
	console_write_unlocked(buf, len);
}
