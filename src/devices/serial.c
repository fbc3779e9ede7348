#include "devices/serial.h"

#include <errno.h>
#include <stdatomic.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

enum {
	UART_RBR = 0, /* THR on write, DLL with DLAB */
	UART_IER = 1, /* DLM with DLAB */
	UART_IIR = 2, /* FCR on write */
	UART_LCR = 3,
	UART_MCR = 4,
	UART_LSR = 5,
	UART_MSR = 6,
	UART_SCR = 7,
	UART_NREGS = 8,
};

#define IER_ERBFI 0x01 /* received data available */
#define IER_ETBEI 0x02 /* transmitter holding register empty */
#define IER_MASK  0x0f

#define IIR_NO_INT  0x01
#define IIR_THRE    0x02
#define IIR_RDA	    0x04
#define IIR_ID_MASK 0x0f
#define IIR_FIFO_ID 0xc0

#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02
/* Bits that stick: enable, DMA mode, trigger level; the clear bits are self-clearing. */
#define FCR_KEEP 0xc9

#define LCR_DLAB 0x80

#define MCR_DTR	 0x01
#define MCR_RTS	 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR	 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI	0x40
#define MSR_DCD 0x80

/* How long a transmit waits on an out_fd that reports EAGAIN before dropping the byte. */
#define TX_STALL_TRIES 5
#define TX_STALL_MS    200

static uint8_t serial_iir(const struct serial *s)
{
	uint8_t iir;

	if ((s->ier & IER_ERBFI) && s->rx_count > 0)
		iir = IIR_RDA;
	else if ((s->ier & IER_ETBEI) && s->thr_empty_irq)
		iir = IIR_THRE;
	else
		iir = IIR_NO_INT;
	if (s->fcr & FCR_ENABLE)
		iir |= IIR_FIFO_ID;
	return iir;
}

static uint8_t serial_lsr(const struct serial *s)
{
	return LSR_THRE | LSR_TEMT | (s->rx_count > 0 ? LSR_DR : 0);
}

static uint8_t serial_msr(const struct serial *s)
{
	if (!(s->mcr & MCR_LOOP))
		return MSR_DCD | MSR_DSR | MSR_CTS;
	uint8_t msr = 0;
	if (s->mcr & MCR_DTR)
		msr |= MSR_DSR;
	if (s->mcr & MCR_RTS)
		msr |= MSR_CTS;
	if (s->mcr & MCR_OUT1)
		msr |= MSR_RI;
	if (s->mcr & MCR_OUT2)
		msr |= MSR_DCD;
	return msr;
}

/* Called with s->lock held. On a PC the UART's interrupt output reaches the PIC through a
 * buffer enabled by OUT2, and loopback disconnects OUT2 from its pin; Linux sets OUT2 in
 * serial8250_do_startup() whenever the port has an IRQ. */
static void serial_update_irq(struct serial *s)
{
	s->lsr = serial_lsr(s);
	s->msr = serial_msr(s);
	if (!s->irq)
		return;
	bool pending = !(serial_iir(s) & IIR_NO_INT);
	bool level = pending && (s->mcr & MCR_OUT2) && !(s->mcr & MCR_LOOP);
	if (level == s->irq->level)
		return;
	int ret = irq_line_set(s->irq, level);
	if (ret < 0)
		log_debug("serial: setting IRQ %u to %d failed: %s", s->irq->gsi, level,
			  strerror(-ret));
}

/* Called with s->lock held; tells the caller to wake the event loop when guest reads make
 * room in a buffer that had turned input away. */
static void serial_rx_freed(struct serial *s, bool *notify)
{
	if (s->rx_was_full && s->rx_count < SERIAL_RX_BUF) {
		s->rx_was_full = false;
		*notify = true;
	}
}

static bool serial_rx_push(struct serial *s, uint8_t byte)
{
	if (s->rx_count >= SERIAL_RX_BUF)
		return false;
	s->rx[(s->rx_head + s->rx_count) % SERIAL_RX_BUF] = byte;
	s->rx_count++;
	return true;
}

static uint8_t serial_read_reg(struct serial *s, unsigned reg, bool *notify)
{
	uint8_t v = 0;

	switch (reg) {
	case UART_RBR:
		if (s->lcr & LCR_DLAB) {
			v = s->dll;
		} else if (s->rx_count > 0) {
			v = s->rx[s->rx_head];
			s->rx_head = (s->rx_head + 1) % SERIAL_RX_BUF;
			s->rx_count--;
			serial_rx_freed(s, notify);
		}
		break;
	case UART_IER:
		v = (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
		break;
	case UART_IIR:
		v = serial_iir(s);
		/* Reading IIR is how the guest acknowledges a THR-empty interrupt. */
		if ((v & IIR_ID_MASK) == IIR_THRE)
			s->thr_empty_irq = false;
		break;
	case UART_LCR:
		v = s->lcr;
		break;
	case UART_MCR:
		v = s->mcr;
		break;
	case UART_LSR:
		v = serial_lsr(s);
		break;
	case UART_MSR:
		v = serial_msr(s);
		break;
	case UART_SCR:
		v = s->scr;
		break;
	}
	return v;
}

/* tx/ntx collect bytes for out_fd, written by the caller once s->lock is dropped. */
static void serial_write_reg(struct serial *s, unsigned reg, uint8_t v, uint8_t *tx, size_t *ntx,
			     bool *notify)
{
	switch (reg) {
	case UART_RBR:
		if (s->lcr & LCR_DLAB) {
			s->dll = v;
			break;
		}
		if (s->mcr & MCR_LOOP)
			serial_rx_push(s, v); /* a full buffer is an overrun: the byte is lost */
		else
			tx[(*ntx)++] = v;
		/* Transmission is instant, so the holding register is empty again at once. */
		s->thr_empty_irq = true;
		break;
	case UART_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
			break;
		}
		/* A 16550 raises THRE when ETBEI is enabled with an empty holding register;
		 * Linux's start_tx relies on it to get its first transmit interrupt. */
		if (!(s->ier & IER_ETBEI) && (v & IER_ETBEI))
			s->thr_empty_irq = true;
		s->ier = v & IER_MASK;
		break;
	case UART_IIR: /* FCR */
		/* A FIFO reset (FCR bit 1, or toggling FIFO mode) does not discard the receive
		 * queue: it holds what the user typed that has not reached the guest, bytes
		 * still "on the wire", and guests reset the FIFO during their own start-up
		 * (Linux does), which would silently eat type-ahead input. */
		s->fcr = v & FCR_KEEP;
		break;
	case UART_LCR:
		s->lcr = v;
		break;
	case UART_MCR:
		s->mcr = v & MCR_MASK;
		break;
	case UART_SCR:
		s->scr = v;
		break;
	default: /* LSR and MSR writes are factory-test features; ignore them */
		break;
	}
}

/* Called with s->tx_lock held (not s->lock). */
static void serial_transmit(struct serial *s, const uint8_t *buf, size_t n)
{
	unsigned stalls = 0;

	if (s->out_fd < 0)
		return;
	while (n > 0) {
		/* Once the VM stops, a reader that stopped reading must not keep a vCPU (and
		 * so kvmini) from exiting: the kick's EINTR brings us back here. */
		if (atomic_load_explicit(&s->discard_output, memory_order_acquire))
			return;
		ssize_t w = write(s->out_fd, buf, n);
		if (w > 0) {
			buf += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		/* The fd may be non-blocking without kvmini asking (a terminal's stdout shares
		 * its open file description with whatever else uses that terminal). */
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
		    stalls++ < TX_STALL_TRIES) {
			struct pollfd pfd = {.fd = s->out_fd, .events = POLLOUT};
			(void)poll(&pfd, 1, TX_STALL_MS);
			continue;
		}
		if (!s->tx_error_logged) {
			s->tx_error_logged = true;
			log_debug("serial: dropping guest output: %s",
				  w < 0 ? strerror(errno) : "write returned 0");
		}
		return;
	}
}

static void serial_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct serial *s = opaque;
	uint8_t tx[UART_NREGS];
	size_t ntx = 0;
	bool notify = false;
	void (*fn)(void *) = NULL;
	void *fn_opaque = NULL;

	if (offset >= UART_NREGS || len > UART_NREGS - offset) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	/* Only a write covering offset 0 can reach THR; tx_lock keeps bytes from several
	 * vCPUs in order without holding s->lock across a write(2) that may block. */
	bool transmitting = is_write && offset == UART_RBR;
	if (transmitting)
		pthread_mutex_lock(&s->tx_lock);
	pthread_mutex_lock(&s->lock);
	/* An 8-bit device sees a wider access as consecutive byte accesses. */
	for (uint32_t i = 0; i < len; i++) {
		unsigned reg = (unsigned)offset + i;
		if (is_write)
			serial_write_reg(s, reg, data[i], tx, &ntx, &notify);
		else
			data[i] = serial_read_reg(s, reg, &notify);
	}
	serial_update_irq(s);
	if (notify) {
		fn = s->rx_space_fn;
		fn_opaque = s->rx_space_opaque;
	}
	pthread_mutex_unlock(&s->lock);
	if (ntx > 0)
		serial_transmit(s, tx, ntx);
	if (transmitting)
		pthread_mutex_unlock(&s->tx_lock);
	if (fn)
		fn(fn_opaque);
}

int serial_init(struct serial *s, struct irq_line *irq, int out_fd)
{
	int ret;

	memset(s, 0, sizeof(*s));
	s->irq = irq;
	s->out_fd = out_fd;
	atomic_init(&s->discard_output, false);
	s->dll = 0x0c; /* 9600 baud, what a PC BIOS leaves behind */
	s->lsr = LSR_THRE | LSR_TEMT;
	s->msr = MSR_DCD | MSR_DSR | MSR_CTS;
	ret = pthread_mutex_init(&s->lock, NULL);
	if (ret)
		return -ret;
	ret = pthread_mutex_init(&s->tx_lock, NULL);
	if (ret) {
		pthread_mutex_destroy(&s->lock);
		return -ret;
	}
	return 0;
}

void serial_destroy(struct serial *s)
{
	pthread_mutex_destroy(&s->tx_lock);
	pthread_mutex_destroy(&s->lock);
}

void serial_reset(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	s->ier = s->lcr = s->mcr = s->scr = s->fcr = 0;
	s->dll = 0x0c;
	s->dlm = 0;
	s->thr_empty_irq = false;
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

void serial_stop_output(struct serial *s)
{
	atomic_store_explicit(&s->discard_output, true, memory_order_release);
}

int serial_attach(struct serial *s, struct bus *pio, uint16_t base)
{
	return bus_register(pio, base, UART_NREGS, serial_io, s, "serial");
}

size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len)
{
	pthread_mutex_lock(&s->lock);
	size_t space = SERIAL_RX_BUF - s->rx_count;
	size_t n = len < space ? len : space;
	for (size_t i = 0; i < n; i++)
		serial_rx_push(s, buf[i]);
	if (n < len)
		s->rx_was_full = true;
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

size_t serial_rx_space(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	size_t space = SERIAL_RX_BUF - s->rx_count;
	pthread_mutex_unlock(&s->lock);
	return space;
}

void serial_set_rx_space_notify(struct serial *s, void (*fn)(void *opaque), void *opaque)
{
	pthread_mutex_lock(&s->lock);
	s->rx_space_fn = fn;
	s->rx_space_opaque = opaque;
	pthread_mutex_unlock(&s->lock);
}
