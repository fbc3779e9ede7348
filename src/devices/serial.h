/* An 8250/16550A UART (the PC's ttyS0..3 at 0x3f8/0x2f8/0x3e8/0x2e8, IRQ 4/3/4/3): transmit
 * through a 16-byte FIFO into a character backend, receive from a queue the backend fills,
 * THR-empty, received-data and line-status (break) interrupts, loopback mode (Linux probes
 * with it), 16-byte-FIFO identification. The transmitter never blocks the vCPU: when the
 * backend's buffer is full the FIFO keeps the bytes and LSR.THRE/TEMT read 0 until the
 * backend has room, then THRE rises (with its interrupt) as on a real UART. */
#ifndef KVMINI_DEVICES_SERIAL_H
#define KVMINI_DEVICES_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/bus.h"
#include "core/chardev.h"
#include "core/device.h"
#include "core/irq.h"

#define SERIAL_COM1_BASE     0x3f8
#define SERIAL_COM1_IRQ	     4
#define SERIAL_RX_BUF	     4096
#define SERIAL_TX_FIFO	     16
#define SERIAL_STATE_VERSION 1

/* The interrupt reaches the PIC only while MCR.OUT2 is set and loopback is off, as on a PC
 * (OUT2 gates the IRQ driver). Linux sets OUT2 when it opens the port; a bare-metal guest
 * that wants interrupts must write MCR with bit 3 set (e.g. 0x0b). */
struct serial {
	pthread_mutex_t lock; /* taken before the backend's lock */
	struct irq_line *irq;
	struct chardev *chr; /* NULL: transmitted bytes are discarded */
	/* registers */
	uint8_t ier, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
	bool thr_empty_irq;	    /* THRE interrupt pending (cleared by IIR read / THR write) */
	uint8_t tx[SERIAL_TX_FIFO]; /* written by the guest, not yet taken by the backend */
	size_t tx_count;
	bool tx_overrun_logged;
	/* receive queue: filled by serial_receive(), drained by guest RBR reads */
	uint8_t *rx; /* SERIAL_RX_BUF bytes, allocated apart: untouched until input comes */
	size_t rx_head, rx_count;
	bool rx_was_full;
	/* A break is a NUL byte in the queue that LSR.BI marks when it reaches the head. */
	bool brk_queued;
	size_t brk_offset;		   /* bytes ahead of it */
	void (*rx_space_fn)(void *opaque); /* called when a full queue gains space */
	void *rx_space_opaque;
};

extern const struct device_ops serial_device_ops;

/* The port base and IRQ of ttyS<index> on a PC (index 0..3). */
uint16_t serial_port_base(unsigned index);
unsigned serial_port_irq(unsigned index);

int serial_init(struct serial *s, struct irq_line *irq, struct chardev *chr);
void serial_destroy(struct serial *s);
/* Registers the 8 ports at base on the port-I/O bus. */
int serial_attach(struct serial *s, struct bus *pio, uint16_t base);
/* Queues bytes for the guest; returns how many fit (never blocks, never drops silently:
 * what did not fit is the caller's to retry once rx_space_fn is called). */
size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len);
/* A break condition on the line (Linux's SysRq): a NUL with LSR.BI and a receiver-line-
 * status / data interrupt. Returns false if the receive queue is full. */
bool serial_send_break(struct serial *s);
size_t serial_rx_space(struct serial *s);
void serial_set_rx_space_notify(struct serial *s, void (*fn)(void *opaque), void *opaque);
/* The backend has room again (its writable notification): the FIFO moves on. */
void serial_tx_resume(void *serial);

/* Device-list operations (also reachable through serial_device_ops). A reset keeps the
 * queued input (it is still on the wire). */
void serial_reset(void *serial);
int serial_save(void *serial, struct state_writer *w);
int serial_load(void *serial, struct state_reader *r);

#endif
