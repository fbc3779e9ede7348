/* COM1 (8250/16550A at 0x3f8) output and a small printf.
 *
 * printf formats into a buffer and writes the whole text under one lock, so lines from
 * several CPUs never interleave. Conversions: %d %i %u %x %X %p %s %c %%, length modifiers
 * l, ll, z, flags '-' and '0', a field width and, for %s, a precision (%.Ns); %p prints
 * 0x and 16 hex digits. "\n" is sent as is, or as "\r\n" after console_set_crlf(true). */
#ifndef KIT_CONSOLE_H
#define KIT_CONSOLE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COM1_BASE 0x3f8
#define COM1_IRQ  4
/* UART registers (offsets from the base) */
#define UART_RBR      0 /* receive buffer (read, DLAB 0) */
#define UART_THR      0 /* transmit holding (write, DLAB 0) */
#define UART_IER      1 /* interrupt enable: bit 0 received data, bit 1 THR empty */
#define UART_IIR      2 /* interrupt identification (read) */
#define UART_FCR      2 /* FIFO control (write) */
#define UART_LCR      3
#define UART_MCR      4
#define UART_LSR      5 /* line status: bit 0 data ready, bit 5 THR empty */
#define UART_LSR_DR   0x01
#define UART_LSR_BI   0x10 /* break: the byte read with it is a NUL, not data */
#define UART_LSR_THRE 0x20

/* 8N1, FIFOs on, interrupts off, DTR|RTS|OUT2 (OUT2 gates the IRQ on a PC). */
void console_init(void);
void console_set_crlf(bool on);
void console_write(const char *s, size_t n);
/* Writes without taking the console lock: for the exception reporter. */
void console_write_unlocked(const char *s, size_t n);
int puts(const char *s); /* s and a newline */
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char *fmt, va_list ap);
int snprintf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int vsnprintf(char *buf, size_t len, const char *fmt, va_list ap);
/* printf without the console lock (for use where the lock may be held: exceptions). */
void printf_unlocked(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
