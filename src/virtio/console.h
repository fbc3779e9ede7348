/* virtio-console (virtio 1.2, section 5.3) with one port, hvc0 in the guest, on a character
 * backend (core/chardev): receiveq 0 carries the backend's input to the guest, transmitq 1
 * the guest's output to the backend. No MULTIPORT (one port needs no control queues);
 * EMERG_WRITE is offered (a byte written to the config's emerg_wr goes out at once); SIZE
 * is not (there is no terminal size to report).
 *
 * Output never blocks a vCPU or the loop: what the backend cannot take waits in the
 * chardev's output buffer, and when that is full the transmit request stays half-written
 * until the chardev calls back with room. Input is taken only while the guest has receive
 * buffers; otherwise the chardev stops reading the backend until the guest adds some
 * (backpressure, nothing dropped). */
#ifndef KVMINI_VIRTIO_CONSOLE_H
#define KVMINI_VIRTIO_CONSOLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "core/chardev.h"
#include "core/power.h"
#include "virtio/virtio.h"

#define VIRTIO_CONSOLE_QUEUE_SIZE 128u
#define VIRTIO_CONSOLE_RX	  0u
#define VIRTIO_CONSOLE_TX	  1u

struct virtio_console {
	struct virtio_dev dev; /* first: the device list frees it as a struct virtio_dev */
	struct chardev chr;
	bool chr_open;
	pthread_mutex_t lock; /* both queues' owner: taken on the vCPU and loop threads */
	bool running;	      /* between start and reset */
	struct vq_request *rx_req, *tx_req;
	bool tx_pending; /* tx_req popped and written up to tx_off */
	uint64_t tx_off;
	/* Counters for the monitor (atomic: emerg_wr adds outside lock). */
	atomic_uint_fast64_t rx_bytes, tx_bytes;
	/* On stdio: Ctrl-A x asks power to stop the VM (NULL: no escapes). */
	struct vm_power *power;
	bool escape; /* the previous input byte was Ctrl-A (loop thread) */
};

/* The registry's type: "virtconsole" (-device virtconsole,chardev=ID after a
 * -device virtio-serial-pci|-device, and --console virtio, both translated by config.c into
 * virtio-console[-pci|-device],chardev=ID). */
extern const struct virtio_dev_type virtio_console_type;

/* A console on the backend cc describes, or (cc NULL) on descriptors the caller keeps
 * (chardev_open_fds: tests); started on loop when loop is not NULL. The device owns the
 * chardev (flushed and closed at destroy). Returns 0 or -errno with e filled. */
int virtio_console_new(const struct guest_mem *mem, struct event_loop *loop,
		       const struct chardev_cfg *cc, const char *label, int in_fd, int out_fd,
		       struct virtio_console **out, struct errbuf *e);

#endif
