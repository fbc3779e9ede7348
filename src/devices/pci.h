/* A PCI host bridge for bus 0 and the functions on it.
 *
 * Configuration space is reached two ways that see the same bytes: mechanism #1 (the
 * dword CONFIG_ADDRESS at 0xcf8, CONFIG_DATA at 0xcfc-0xcff, any width) and ECAM (a 4 KiB
 * page per function at X86_PCI_ECAM_BASE + (devfn << 12), announced in the ACPI MCFG
 * table). Real chipsets decode only dword accesses at 0xcf8 as CONFIG_ADDRESS; a byte at
 * 0xcf9 is the reset control register, which the host bridge hands to reset_control_io
 * (devices/legacy.h), so both live on one 8-port range.
 *
 * A function is 4 KiB of config space with a write mask (the bits the guest may change),
 * BAR descriptors and optional callbacks for the device's own registers. The host does the
 * generic part: read-only IDs, BAR sizing (an all-ones write reads back the size mask),
 * BARs placed on the MMIO bus while the command register's memory-decode bit is set and
 * moved with bus_move when the guest rewrites them, a capability list, interrupt line and
 * pin. kvmini pre-assigns BARs in [X86_PCI_MMIO32_START, X86_PCI_MMIO32_END) (Linux keeps
 * firmware assignments that fit).
 *
 * Threads: config accesses come from vCPU threads; one mutex per host serialises them
 * (and CONFIG_ADDRESS). BAR handlers run without it, from the MMIO bus. */
#ifndef KVMINI_DEVICES_PCI_H
#define KVMINI_DEVICES_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/bus.h"
#include "core/device.h"
#include "core/power.h"

#define PCI_CFG_SIZE		4096 /* PCIe extended config space; the legacy part is 256 bytes */
#define PCI_MAX_BARS		6
#define PCI_MAX_DEVICES		32 /* slots on bus 0, one function each */
#define PCI_CONFIG_ADDRESS_PORT 0xcf8
#define PCI_CONFIG_DATA_PORT	0xcfc

/* Register offsets and bits kvmini uses (PCI Local Bus 3.0, chapter 6). */
#define PCI_REG_VENDOR_ID      0x00
#define PCI_REG_DEVICE_ID      0x02
#define PCI_REG_COMMAND	       0x04
#define PCI_REG_STATUS	       0x06
#define PCI_REG_REVISION       0x08
#define PCI_REG_CLASS_PROG     0x09
#define PCI_REG_HEADER_TYPE    0x0e
#define PCI_REG_BAR0	       0x10
#define PCI_REG_SUBSYS_VENDOR  0x2c
#define PCI_REG_SUBSYS_ID      0x2e
#define PCI_REG_CAP_PTR	       0x34
#define PCI_REG_INTERRUPT_LINE 0x3c
#define PCI_REG_INTERRUPT_PIN  0x3d
#define PCI_CMD_IO	       0x0001
#define PCI_CMD_MEMORY	       0x0002
#define PCI_CMD_MASTER	       0x0004
#define PCI_CMD_INTX_DISABLE   0x0400
#define PCI_STATUS_CAP_LIST    0x0010
#define PCI_STATUS_INTERRUPT   0x0008
#define PCI_BAR_MEM_64	       0x04
#define PCI_BAR_PREFETCH       0x08
#define PCI_CAP_ID_MSIX	       0x11
#define PCI_CAP_ID_VNDR	       0x09

struct pci_function;

struct pci_bar {
	uint64_t size; /* a power of two >= 16 (memory BARs only); 0 = BAR unused */
	bool is_64;    /* takes this BAR and the next */
	bool prefetchable;
	bus_handler_fn fn; /* offset relative to the BAR's base */
	void *opaque;
	const char *name;
	/* Current placement on the MMIO bus (mapped only while memory decode is on and the
	 * address is sane). */
	uint64_t addr;
	bool mapped;
};

struct pci_function_ops {
	/* Config reads of the device's own registers: called after the generic bytes are in
	 * data, for [off, off+len) within one dword; may overwrite them. Optional. */
	void (*cfg_read)(struct pci_function *f, uint32_t off, uint8_t *data, uint32_t len);
	/* After a config write has been stored through the write mask. Optional. */
	void (*cfg_write)(struct pci_function *f, uint32_t off, const uint8_t *data, uint32_t len);
	/* A BAR was mapped at addr, moved there, or unmapped (mapped false): ioeventfds on
	 * the BAR follow it. Optional. */
	void (*bar_moved)(struct pci_function *f, unsigned bar, uint64_t addr, bool mapped);
	/* A VM reset; the host has restored the power-on config space. Optional. */
	void (*reset)(struct pci_function *f);
};

struct pci_function {
	struct pci_host *host;
	unsigned devfn; /* slot << 3 | function */
	const struct pci_function_ops *ops;
	void *opaque;
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];
	uint8_t reset_cfg[PCI_CFG_SIZE]; /* power-on contents (a VM reset restores them) */
	struct pci_bar bars[PCI_MAX_BARS];
	uint8_t cap_last; /* offset of the last capability, 0 for none */
	uint32_t cap_end; /* where the next capability may go */
	bool added;
};

struct pci_host {
	struct bus *pio, *mmio;
	struct vm_power *power;
	pthread_mutex_t lock;
	uint32_t config_address; /* 0xcf8 */
	struct pci_function *fns[PCI_MAX_DEVICES];
	struct pci_function bridge; /* 00:00.0 */
	uint64_t mmio32_next;	    /* BAR allocator */
	unsigned next_slot;
	bool ecam_mapped;
};

/* Sets up the host bridge: 00:00.0 (8086:29c0, class 0x0600), the 0xcf8-0xcff ports on pio
 * and the ECAM window on mmio (either bus may be NULL in tests). power receives the
 * reset-control writes at 0xcf9. Registers the host in l (reset). 0 or -errno. */
int pci_host_create(struct pci_host *h, struct device_list *l, struct bus *pio, struct bus *mmio,
		    struct vm_power *power);
void pci_host_destroy(struct pci_host *h);

/* A fresh function: IDs, class (base << 16 | sub << 8 | prog-if), header type 0, command
 * and interrupt line writable. */
void pci_function_init(struct pci_function *f, uint16_t vendor, uint16_t device,
		       uint32_t class_code, uint8_t revision, uint16_t subsys_vendor,
		       uint16_t subsys_id);
/* Describes BAR n (memory, size a power of two >= 16). Before pci_host_add. */
int pci_function_set_bar(struct pci_function *f, unsigned n, uint64_t size, bool is_64,
			 bus_handler_fn fn, void *opaque, const char *name);
/* Appends a capability of len bytes (id at data[0], the next pointer at data[1] is filled
 * in); returns its config-space offset, or -ENOSPC. wmask_bytes (or NULL) gives the
 * writable bits of the capability. Before pci_host_add. */
int pci_function_add_cap(struct pci_function *f, const void *data, uint32_t len,
			 const void *wmask_bytes);
/* INTx: pin 1 (INTA) routed to gsi, which the interrupt-line register shows. */
void pci_function_set_intx(struct pci_function *f, uint8_t gsi);
/* Puts f in the next free slot, assigns its BARs from the 32-bit window (memory decode
 * stays off until the guest enables it, as firmware leaves it) and returns 0, -ENOSPC. */
int pci_host_add(struct pci_host *h, struct pci_function *f);
/* Unmaps f's BARs and takes it off the bus. */
void pci_host_remove(struct pci_host *h, struct pci_function *f);

/* Config space access as the guest sees it (any width 1..4 inside one dword; unaligned
 * or wider accesses are split). bus/devfn that hold nothing read all ones. For tests and
 * the two access mechanisms. */
void pci_host_cfg_read(struct pci_host *h, unsigned bus, unsigned devfn, uint32_t off,
		       uint8_t *data, uint32_t len);
void pci_host_cfg_write(struct pci_host *h, unsigned bus, unsigned devfn, uint32_t off,
			const uint8_t *data, uint32_t len);
/* The bus handlers (exposed for unit tests, which call them without a bus). */
void pci_host_pio(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);
void pci_host_ecam(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

static inline uint16_t pci_cfg_get16(const struct pci_function *f, uint32_t off)
{
	return (uint16_t)(f->cfg[off] | f->cfg[off + 1] << 8);
}
static inline uint32_t pci_cfg_get32(const struct pci_function *f, uint32_t off)
{
	return (uint32_t)f->cfg[off] | (uint32_t)f->cfg[off + 1] << 8 |
	       (uint32_t)f->cfg[off + 2] << 16 | (uint32_t)f->cfg[off + 3] << 24;
}

#endif
