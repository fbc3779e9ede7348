/* An 8250/16550A UART (the PC's ttyS0 at 0x3f8, IRQ 4): transmit to an fd, receive from a
 * buffer the event loop fills, THR-empty and received-data interrupts, loopback mode (Linux
 * probes with it), 16-byte-FIFO identification. */
#ifndef KVMINI_DEVICES_SERIAL_H
#define KVMINI_DEVICES_SERIAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/bus.h"
#include "core/irq.h"

#define SERIAL_COM1_BASE 0x3f8
#define SERIAL_COM1_IRQ	 4
#define SERIAL_RX_BUF	 4096

/* The interrupt reaches the PIC only while MCR.OUT2 is set and loopback is off, as on a PC
 * (OUT2 gates the IRQ driver). Linux sets OUT2 when it opens the port; a bare-metal guest
 * that wants interrupts must write MCR with bit 3 set (e.g. 0x0b). */
struct serial {
	pthread_mutex_t lock;
	/* Serialises transmission only, taken before `lock`, so a blocked out_fd stalls the
	 * writing vCPU but never the event loop in serial_receive() or other register reads. */
	pthread_mutex_t tx_lock;
	bool tx_error_logged; /* under tx_lock */
	struct irq_line *irq;
	int out_fd;		    /* transmitted bytes go here; -1 discards them */
	atomic_bool discard_output; /* set when the VM stops */
	/* registers */
	uint8_t ier, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
	bool thr_empty_irq; /* THRE interrupt pending (cleared by IIR read / THR write) */
	/* receive buffer: filled by serial_receive(), drained by guest RBR reads */
	uint8_t rx[SERIAL_RX_BUF];
	size_t rx_head, rx_count;
	bool rx_was_full;
	void (*rx_space_fn)(void *opaque); /* called when a full buffer gains space */
	void *rx_space_opaque;
};

int serial_init(struct serial *s, struct irq_line *irq, int out_fd);
void serial_destroy(struct serial *s);
/* From now on transmitted bytes are dropped, and a write blocked on a full pipe gives up
 * at its next EINTR: called when the VM stops, before the vCPUs are kicked. */
void serial_stop_output(struct serial *s);
/* Registers to their power-on values; queued input is kept (it is still on the wire). */
void serial_reset(struct serial *s);
/* Registers the 8 ports at base on the port-I/O bus. */
int serial_attach(struct serial *s, struct bus *pio, uint16_t base);
/* Queues bytes for the guest; returns how many fit (never blocks, never drops silently:
 * what did not fit is the caller's to retry once rx_space_fn is called). */
size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len);
size_t serial_rx_space(struct serial *s);
void serial_set_rx_space_notify(struct serial *s, void (*fn)(void *opaque), void *opaque);

#endif
