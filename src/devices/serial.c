#include "devices/serial.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

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
#define IER_ELSI  0x04 /* receiver line status (break) */
#define IER_MASK  0x0f

#define IIR_NO_INT  0x01
#define IIR_THRE    0x02
#define IIR_RDA	    0x04
#define IIR_RLS	    0x06
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
#define LSR_BI	 0x10
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI	0x40
#define MSR_DCD 0x80

static const uint16_t port_bases[4] = {0x3f8, 0x2f8, 0x3e8, 0x2e8};
static const uint8_t port_irqs[4] = {4, 3, 4, 3};

uint16_t serial_port_base(unsigned index)
{
	return index < 4 ? port_bases[index] : 0;
}

unsigned serial_port_irq(unsigned index)
{
	return index < 4 ? port_irqs[index] : 0;
}

static bool serial_break_at_head(const struct serial *s)
{
	return s->brk_queued && s->brk_offset == 0;
}

static uint8_t serial_iir(const struct serial *s)
{
	uint8_t iir;

	if ((s->ier & IER_ELSI) && serial_break_at_head(s))
		iir = IIR_RLS;
	else if ((s->ier & IER_ERBFI) && s->rx_count > 0)
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
	uint8_t lsr = s->tx_count == 0 ? LSR_THRE | LSR_TEMT : 0;
	if (s->rx_count > 0)
		lsr |= LSR_DR;
	if (serial_break_at_head(s))
		lsr |= LSR_BI;
	return lsr;
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

/* Called with s->lock held; tells the caller to wake the input side when guest reads make
 * room in a queue that had turned input away. */
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

/* Called with s->lock held: hands the FIFO to the backend without waiting. Whatever it
 * does not take stays, and THRE stays 0 until serial_tx_resume(). */
static void serial_tx_flush(struct serial *s)
{
	if (s->tx_count == 0)
		return;
	size_t n = s->chr ? chardev_write(s->chr, s->tx, s->tx_count) : s->tx_count;
	if (n > s->tx_count)
		n = s->tx_count;
	memmove(s->tx, s->tx + n, s->tx_count - n);
	s->tx_count -= n;
	if (s->tx_count == 0)
		s->thr_empty_irq = true;
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
			if (s->brk_queued) {
				if (s->brk_offset == 0)
					s->brk_queued = false;
				else
					s->brk_offset--;
			}
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

static void serial_write_reg(struct serial *s, unsigned reg, uint8_t v)
{
	switch (reg) {
	case UART_RBR:
		if (s->lcr & LCR_DLAB) {
			s->dll = v;
			break;
		}
		if (s->mcr & MCR_LOOP) {
			serial_rx_push(s, v); /* a full queue is an overrun: the byte is lost */
			s->thr_empty_irq = true;
			break;
		}
		s->thr_empty_irq = false;
		if (s->tx_count < SERIAL_TX_FIFO) {
			s->tx[s->tx_count++] = v;
		} else if (!s->tx_overrun_logged) {
			/* A guest that ignores THRE loses bytes, as on a real UART. */
			s->tx_overrun_logged = true;
			log_debug("serial: guest wrote THR with a full FIFO; byte dropped");
		}
		serial_tx_flush(s);
		break;
	case UART_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
			break;
		}
		/* A 16550 raises THRE when ETBEI is enabled with an empty holding register;
		 * Linux's start_tx relies on it to get its first transmit interrupt. */
		if (!(s->ier & IER_ETBEI) && (v & IER_ETBEI) && s->tx_count == 0)
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

static void serial_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct serial *s = opaque;
	bool notify = false;
	void (*fn)(void *) = NULL;
	void *fn_opaque = NULL;

	if (offset >= UART_NREGS || len > UART_NREGS - offset) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&s->lock);
	/* An 8-bit device sees a wider access as consecutive byte accesses. */
	for (uint32_t i = 0; i < len; i++) {
		unsigned reg = (unsigned)offset + i;
		if (is_write)
			serial_write_reg(s, reg, data[i]);
		else
			data[i] = serial_read_reg(s, reg, &notify);
	}
	serial_update_irq(s);
	if (notify) {
		fn = s->rx_space_fn;
		fn_opaque = s->rx_space_opaque;
	}
	pthread_mutex_unlock(&s->lock);
	if (fn)
		fn(fn_opaque);
}

/* Power-on register values (what a PC BIOS leaves behind: 9600 baud). */
static void serial_reset_regs(struct serial *s)
{
	s->ier = s->lcr = s->mcr = s->scr = s->dlm = s->fcr = 0;
	s->dll = 0x0c;
	s->thr_empty_irq = false;
	s->lsr = LSR_THRE | LSR_TEMT;
	s->msr = MSR_DCD | MSR_DSR | MSR_CTS;
}

int serial_init(struct serial *s, struct irq_line *irq, struct chardev *chr)
{
	int ret;

	memset(s, 0, sizeof(*s));
	s->irq = irq;
	s->chr = chr;
	serial_reset_regs(s);
	s->tx_count = s->rx_head = s->rx_count = 0;
	/* A page of its own, touched only when input arrives. */
	void *rx =
	    mmap(NULL, SERIAL_RX_BUF, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (rx == MAP_FAILED)
		return -ENOMEM;
	s->rx = rx;
	ret = pthread_mutex_init(&s->lock, NULL);
	if (ret) {
		munmap(s->rx, SERIAL_RX_BUF);
		return -ret;
	}
	if (chr)
		chardev_set_writable(chr, serial_tx_resume, s);
	return 0;
}

/* The backend may already be closed (the VM's run ends before its devices go). */
void serial_destroy(struct serial *s)
{
	pthread_mutex_destroy(&s->lock);
	munmap(s->rx, SERIAL_RX_BUF);
	s->rx = NULL;
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

bool serial_send_break(struct serial *s)
{
	bool ok = false;
	pthread_mutex_lock(&s->lock);
	/* One break at a time is what a line can carry; a second while one is queued adds
	 * nothing a guest could tell apart. */
	if (!s->brk_queued && s->rx_count < SERIAL_RX_BUF) {
		s->brk_offset = s->rx_count;
		s->brk_queued = true;
		serial_rx_push(s, 0);
		ok = true;
	} else if (s->brk_queued) {
		ok = true;
	} else {
		s->rx_was_full = true;
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return ok;
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

void serial_tx_resume(void *opaque)
{
	struct serial *s = opaque;
	pthread_mutex_lock(&s->lock);
	serial_tx_flush(s);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

/* ---- device-list operations ---- */

/* A reset puts the registers back; the bytes queued in either direction stay: input is
 * still on the wire (typed before the reboot, read after it), and output the backend has
 * not taken yet goes out once it has room. */
void serial_reset(void *opaque)
{
	struct serial *s = opaque;
	pthread_mutex_lock(&s->lock);
	serial_reset_regs(s);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

/* Version 1: ier lcr mcr scr dll dlm fcr, flags (bit 0 THRE interrupt pending, bit 1 the
 * receive queue turned input away, bit 2 a break is queued), u32 break offset, u8 TX FIFO
 * count + bytes, u32 receive count + bytes oldest first. */
int serial_save(void *opaque, struct state_writer *w)
{
	struct serial *s = opaque;
	pthread_mutex_lock(&s->lock);
	uint8_t regs[7] = {s->ier, s->lcr, s->mcr, s->scr, s->dll, s->dlm, s->fcr};
	state_put_bytes(w, regs, sizeof(regs));
	state_put_u8(w, (uint8_t)((s->thr_empty_irq ? 1 : 0) | (s->rx_was_full ? 2 : 0) |
				  (s->brk_queued ? 4 : 0)));
	state_put_u32(w, (uint32_t)s->brk_offset);
	state_put_u8(w, (uint8_t)s->tx_count);
	state_put_bytes(w, s->tx, s->tx_count);
	state_put_u32(w, (uint32_t)s->rx_count);
	size_t first = SERIAL_RX_BUF - s->rx_head;
	if (first > s->rx_count)
		first = s->rx_count;
	state_put_bytes(w, s->rx + s->rx_head, first);
	state_put_bytes(w, s->rx, s->rx_count - first);
	pthread_mutex_unlock(&s->lock);
	return w->err;
}

int serial_load(void *opaque, struct state_reader *r)
{
	struct serial *s = opaque;
	uint8_t regs[7], tx[SERIAL_TX_FIFO];
	uint8_t rx[SERIAL_RX_BUF];

	state_get_bytes(r, regs, sizeof(regs));
	uint8_t flags = state_get_u8(r);
	uint32_t brk_offset = state_get_u32(r);
	uint8_t ntx = state_get_u8(r);
	if (r->err || ntx > SERIAL_TX_FIFO || (flags & ~7u))
		return -EINVAL;
	state_get_bytes(r, tx, ntx);
	uint32_t nrx = state_get_u32(r);
	if (r->err || nrx > SERIAL_RX_BUF)
		return -EINVAL;
	state_get_bytes(r, rx, nrx);
	if (state_reader_finish(r) < 0)
		return -EINVAL;
	if ((flags & 4) && brk_offset >= nrx)
		return -EINVAL;
	if ((regs[0] & ~IER_MASK) || (regs[2] & ~MCR_MASK) || (regs[6] & ~FCR_KEEP))
		return -EINVAL;

	pthread_mutex_lock(&s->lock);
	s->ier = regs[0];
	s->lcr = regs[1];
	s->mcr = regs[2];
	s->scr = regs[3];
	s->dll = regs[4];
	s->dlm = regs[5];
	s->fcr = regs[6];
	s->thr_empty_irq = flags & 1;
	s->rx_was_full = flags & 2;
	s->brk_queued = flags & 4;
	s->brk_offset = s->brk_queued ? brk_offset : 0;
	memcpy(s->tx, tx, ntx);
	s->tx_count = ntx;
	memcpy(s->rx, rx, nrx);
	s->rx_head = 0;
	s->rx_count = nrx;
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* The UART's line at the level its registers give (set by the last update). */
static void serial_sync_irq(void *opaque)
{
	struct serial *s = opaque;
	pthread_mutex_lock(&s->lock);
	if (s->irq) {
		int ret = irq_line_resync(s->irq);
		if (ret < 0)
			log_debug("serial: setting IRQ %u again failed: %s", s->irq->gsi,
				  strerror(-ret));
	}
	pthread_mutex_unlock(&s->lock);
}

static void serial_destroy_op(void *opaque)
{
	serial_destroy(opaque);
}

const struct device_ops serial_device_ops = {
    .name = "serial",
    .version = SERIAL_STATE_VERSION,
    .reset = serial_reset,
    .save = serial_save,
    .load = serial_load,
    .sync_irq = serial_sync_irq,
    .destroy = serial_destroy_op,
};
