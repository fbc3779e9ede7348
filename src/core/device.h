/* The VM's devices as one list of operations. A device registers itself with
 * device_list_add() when it is created; the VM then resets, saves, loads and destroys
 * devices by walking the list, never by naming them. Save and load use a versioned state
 * blob built with the state_* helpers below, so snapshot and migration can carry every
 * device without knowing any. */
#ifndef KVMINI_CORE_DEVICE_H
#define KVMINI_CORE_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer a device writes its state into (little-endian fields). */
struct state_writer {
	uint8_t *buf;
	size_t len, cap;
	int err; /* first error (-ENOMEM); later puts do nothing */
};

/* A bounded reader over a saved blob: every get checks the remaining length. */
struct state_reader {
	const uint8_t *buf;
	size_t len, pos;
	int err; /* -EINVAL once a get ran past the end; later gets return zeros */
};

void state_put_u8(struct state_writer *w, uint8_t v);
void state_put_u16(struct state_writer *w, uint16_t v);
void state_put_u32(struct state_writer *w, uint32_t v);
void state_put_u64(struct state_writer *w, uint64_t v);
void state_put_bytes(struct state_writer *w, const void *p, size_t n);
void state_writer_free(struct state_writer *w);

uint8_t state_get_u8(struct state_reader *r);
uint16_t state_get_u16(struct state_reader *r);
uint32_t state_get_u32(struct state_reader *r);
uint64_t state_get_u64(struct state_reader *r);
void state_get_bytes(struct state_reader *r, void *p, size_t n);
/* 0 if the whole blob was consumed without error, else -EINVAL. */
int state_reader_finish(const struct state_reader *r);

struct device_ops {
	const char *name; /* "serial", "rtc", ...: names the state section */
	uint32_t version; /* of the state blob; load refuses others */
	/* Back to power-on state, as a PC reset does (a device may keep what survives one,
	 * such as CMOS NVRAM). Called with every vCPU parked. */
	void (*reset)(void *dev);
	/* Appends the device's state (without the version, which the list adds). */
	int (*save)(void *dev, struct state_writer *w);
	/* Restores state written by save of the same version; returns 0 or -EINVAL without
	 * changing the device when the blob is malformed. */
	int (*load)(void *dev, struct state_reader *r);
	/* The VM is pausing and every vCPU is parked: stop touching guest memory, and finish
	 * or put back what is in flight (a disk completes its requests, a network device
	 * returns the chains of a half-placed frame), so that what a snapshot then reads, guest
	 * memory and save()'s blob, is the whole state. Returns when the device is still.
	 * Called on the loop thread. Optional. */
	void (*pause)(void *dev);
	/* The VM runs again: serve what arrived while paused. Optional; harmless when the
	 * device was not paused. */
	void (*resume)(void *dev);
	/* Drives every interrupt line the device asserts again, at the level its state says
	 * (a line it does not assert is driven low). Called after the in-kernel irqchip's
	 * state was replaced (a restore puts the snapshot's PIC/IOAPIC/LAPIC state after the
	 * devices are loaded, which knows nothing of a level raised since). NULL: the device
	 * has no level-triggered line. */
	void (*sync_irq)(void *dev);
	void (*destroy)(void *dev);
};

struct device {
	const struct device_ops *ops;
	void *dev;
	unsigned instance; /* several of one kind (ttyS0, ttyS1): part of the section name */
	struct device *next;
};

struct device_list {
	struct device *head, *tail; /* in registration order; destroyed in reverse */
	unsigned count;
};

void device_list_init(struct device_list *l);
/* Returns 0 or -ENOMEM. The device is destroyed by device_list_destroy(). */
int device_list_add(struct device_list *l, const struct device_ops *ops, void *dev,
		    unsigned instance);
void device_list_reset(struct device_list *l);
/* Every device's pause (registration order) or resume (reverse order). */
void device_list_pause(struct device_list *l);
void device_list_resume(struct device_list *l);
/* Every device's sync_irq, in list order. */
void device_list_sync_irqs(struct device_list *l);
/* Destroys every device, last registered first, and empties the list. */
void device_list_destroy(struct device_list *l);

/* One device's versioned blob: u32 version, then what ops->save wrote. */
int device_save(const struct device *d, struct state_writer *w);
int device_load(const struct device *d, const void *blob, size_t len);
struct device *device_list_find(struct device_list *l, const char *name, unsigned instance);

#endif
