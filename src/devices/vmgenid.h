/* VM Generation ID (Microsoft's "Virtual Machine Generation ID" spec, Linux's
 * drivers/virt/vmgenid.c): a 16-byte GUID at VMGENID_ADDR in guest memory (inside the
 * e820-reserved BIOS area), published by the DSDT device \_SB.VGEN (its ADDR method returns
 * the address as two DWORDs). Every restore of a snapshot is a new generation: the load op
 * draws a fresh GUID with getrandom(2), writes it and raises GPE0 bit VMGENID_GPE, whose
 * \_GPE._E00 method does Notify (\_SB.VGEN, 0x80). The GUID is stored as the guest reads it
 * (the first three fields little-endian, Microsoft's layout); vmgenid_format prints the
 * UUID string QMP's query-vm-generation-id gives. */
#ifndef KVMINI_DEVICES_VMGENID_H
#define KVMINI_DEVICES_VMGENID_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/device.h"
#include "core/guest_mem.h"
#include "devices/legacy.h"

#define VMGENID_ADDR 0xef000ull /* the last page of the ACPI table window */
#define VMGENID_SIZE 16
#define VMGENID_GPE  0

struct vmgenid {
	pthread_mutex_t lock;
	uint8_t guid[VMGENID_SIZE]; /* in guest (Microsoft GUID) byte order */
	const struct guest_mem *mem;
	struct pm *pm;
	unsigned generations; /* new GUIDs drawn by restores */
};

/* uuid (RFC 4122 text, 36 characters) to guest byte order; 0 or -EINVAL. */
int vmgenid_parse(const char *uuid, uint8_t out[VMGENID_SIZE]);
/* The GUID as RFC 4122 text (37 bytes with the NUL). */
void vmgenid_format(const uint8_t guid[VMGENID_SIZE], char out[37]);
/* guid NULL: a random one (version 4). Writes it into guest memory. */
int vmgenid_create(struct device_list *l, const struct guest_mem *mem, struct pm *pm,
		   const uint8_t *guid, struct vmgenid **out);
void vmgenid_get(struct vmgenid *v, uint8_t out[VMGENID_SIZE]);
extern const struct device_ops vmgenid_device_ops;

#endif
