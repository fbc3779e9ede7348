/* PCI for the test guests: configuration access (ECAM MMIO, or mechanism #1 on ports
 * 0xcf8/0xcfc as the fall-back), enumeration of bus 0, BAR reading and sizing, the
 * capability list, MSI-X.
 *
 * A function is named by its bdf: bus << 8 | device << 3 | function. Everything works in
 * ring 0 and in ring 3 (user_call): ECAM and BARs in the 32-bit hole are plain MMIO on the
 * kit's identity map (3-4 GiB uncached); mechanism #1 uses in/out, which on PVM hosts traps
 * to the kit's #GP handler from ring 3 (it works, slowly: prefer ECAM there). Memory above
 * 4 GiB (a 64-bit BAR placed high) is not mapped by the kit's page tables. */
#ifndef KIT_PCI_H
#define KIT_PCI_H

#include <stdbool.h>
#include <stdint.h>

#define PCI_ECAM_BASE	 0xe0000000ull /* bus 0 (1 MiB), kvmini's layout */
#define PCI_CONFIG_ADDR	 0xcf8
#define PCI_CONFIG_DATA	 0xcfc
#define PCI_BDF(b, d, f) ((uint16_t)((b) << 8 | (d) << 3 | (f)))
#define PCI_BUS(bdf)	 ((bdf) >> 8)
#define PCI_DEV(bdf)	 (((bdf) >> 3) & 0x1f)
#define PCI_FN(bdf)	 ((bdf)&7)

/* Configuration-space registers (type 0 header) */
#define PCI_VENDOR_ID	  0x00
#define PCI_DEVICE_ID	  0x02
#define PCI_COMMAND	  0x04
#define PCI_STATUS	  0x06
#define PCI_CLASS_REV	  0x08 /* revision in bits 7:0, class code in 31:8 */
#define PCI_HEADER_TYPE	  0x0e
#define PCI_BAR0	  0x10
#define PCI_SUBSYS_VENDOR 0x2c
#define PCI_SUBSYS_ID	  0x2e
#define PCI_CAP_PTR	  0x34
#define PCI_INT_LINE	  0x3c
#define PCI_INT_PIN	  0x3d

#define PCI_CMD_IO	  0x0001
#define PCI_CMD_MEM	  0x0002
#define PCI_CMD_MASTER	  0x0004
#define PCI_CMD_INTX_OFF  0x0400
#define PCI_STATUS_CAPS	  0x0010
#define PCI_HDR_MULTIFN	  0x80
#define PCI_CAP_ID_MSI	  0x05
#define PCI_CAP_ID_VENDOR 0x09
#define PCI_CAP_ID_PCIE	  0x10
#define PCI_CAP_ID_MSIX	  0x11

enum pci_access { PCI_ACCESS_NONE, PCI_ACCESS_ECAM, PCI_ACCESS_CF8 };

/* Chooses the configuration mechanism: ECAM if a function answers at 00:00.0 through the
 * ECAM window, else mechanism #1 if one answers there, else none. The window is the ACPI
 * MCFG entry for segment 0 from bus 0 if the tables have one (QEMU q35: 0xb0000000), else
 * PCI_ECAM_BASE for bus 0 (kvmini's layout). `force`
 * (PCI_ACCESS_ECAM or _CF8) skips the choice; PCI_ACCESS_NONE chooses. Returns the
 * mechanism in use. The other pci_* calls call pci_init(PCI_ACCESS_NONE) if nobody did. */
enum pci_access pci_init(enum pci_access force);
enum pci_access pci_access_mode(void);
/* The ECAM window's address; *from_mcfg (if not NULL) says whether ACPI's MCFG gave it. */
uint64_t pci_ecam_base(bool *from_mcfg);
const char *pci_access_name(enum pci_access a); /* "ecam", "cf8", "none" */
/* Reads "pci=ecam" or "pci=cf8" from a command line (PCI_ACCESS_NONE if neither). */
enum pci_access pci_access_from_cmdline(const char *cmdline);

/* Configuration reads and writes at offset off (0-4095 with ECAM, 0-255 with mechanism #1;
 * beyond that reads give all ones and writes are dropped). Accesses are naturally aligned. */
uint8_t pci_read8(uint16_t bdf, uint16_t off);
uint16_t pci_read16(uint16_t bdf, uint16_t off);
uint32_t pci_read32(uint16_t bdf, uint16_t off);
void pci_write8(uint16_t bdf, uint16_t off, uint8_t v);
void pci_write16(uint16_t bdf, uint16_t off, uint16_t v);
void pci_write32(uint16_t bdf, uint16_t off, uint32_t v);

struct pci_func {
	uint16_t bdf;
	uint16_t vendor, device;
	uint32_t class_code; /* base class << 16 | subclass << 8 | prog-if */
	uint8_t revision;
	uint8_t header_type; /* bit 7 (multifunction) masked off */
	bool multifunction;
	uint16_t subsys_vendor, subsys_id;
};

/* Enumerates bus 0 (devices 0-31, functions 1-7 only where function 0 sets the
 * multifunction bit). Fills up to max entries in bdf order; returns how many exist (may be
 * more than max). */
unsigned pci_enumerate(struct pci_func *out, unsigned max);
/* Reads one function's identity; false if nothing answers (vendor 0xffff). */
bool pci_read_func(uint16_t bdf, struct pci_func *out);
/* First function on bus 0 with this vendor and device id (device 0xffff: any). */
bool pci_find(uint16_t vendor, uint16_t device, struct pci_func *out);

enum pci_bar_type { PCI_BAR_NONE, PCI_BAR_IO, PCI_BAR_MEM32, PCI_BAR_MEM64 };
struct pci_bar {
	enum pci_bar_type type;
	bool prefetchable;
	uint64_t addr; /* as programmed (I/O: port number) */
	uint64_t size; /* 0: not implemented */
};
/* Reads and sizes BAR index (0-5) of a type 0 function: decoding is switched off in the
 * command register, all ones written, the mask read back, the old value and command
 * restored. A 64-bit BAR uses index and index + 1. Returns how many BAR slots it took (1 or
 * 2), 0 for a bad index. An unimplemented BAR gives type PCI_BAR_NONE, size 0. */
unsigned pci_bar_probe(uint16_t bdf, unsigned index, struct pci_bar *out);
/* The address of BAR index without sizing it (0 if unimplemented or an I/O BAR). */
uint64_t pci_bar_addr(uint16_t bdf, unsigned index);
/* Places every memory BAR of the function whose address is 0 (no firmware assigned it) at
 * the next free naturally aligned address from 0xc0000000 (shared bump allocator) and sets
 * the command register's memory/I/O enable and bus master bits. Returns false if a BAR did
 * not fit below 0xe0000000. */
bool pci_enable(uint16_t bdf);
/* The string form of a BAR type: "io", "mem32", "mem64". */
const char *pci_bar_type_name(enum pci_bar_type t);

/* Capability list. pci_cap_first returns the first capability's offset (0: none: the
 * status register says there is no list, or the pointer is out of range); pci_cap_next the
 * one after the capability at off. The walk is bounded (48 entries, offsets 0x40-0xfc,
 * dword aligned), so a looping list ends. pci_cap_find returns the first capability with
 * this id at or after offset start (0: from the beginning), 0 if none. */
uint8_t pci_cap_first(uint16_t bdf);
uint8_t pci_cap_next(uint16_t bdf, uint8_t off);
uint8_t pci_cap_find(uint16_t bdf, uint8_t id, uint8_t start);
/* The next capability with this id after the one at off (0 if none). */
uint8_t pci_cap_find_after(uint16_t bdf, uint8_t id, uint8_t off);
/* Copies len bytes of the capability at off (starting at its first byte, the id) into buf. */
void pci_cap_read(uint16_t bdf, uint8_t off, void *buf, unsigned len);

/* MSI-X */
#define PCI_MSIX_CTRL_ENABLE (1u << 15)
#define PCI_MSIX_CTRL_FMASK  (1u << 14)
#define PCI_MSIX_ENTRY_SIZE  16
#define PCI_MSIX_VEC_MASKED  1u
struct pci_msix {
	uint16_t bdf;
	uint8_t cap;	  /* capability offset */
	uint16_t entries; /* table size (N, not N - 1) */
	uint8_t table_bir, pba_bir;
	uint32_t table_off, pba_off;
	uint64_t table, pba; /* addresses (BAR + offset); 0 if the BAR is not placed */
};
/* Finds the MSI-X capability and resolves its table and PBA addresses. False if none. */
bool pci_msix_find(uint16_t bdf, struct pci_msix *out);
/* Programs table entry idx: address 0xfee00000 | apic_id << 12, data = vector (fixed,
 * edge), masked or not. False if idx is out of range or the table is not placed. */
bool pci_msix_set(const struct pci_msix *m, unsigned idx, uint8_t apic_id, uint8_t vector,
		  bool masked);
void pci_msix_mask_entry(const struct pci_msix *m, unsigned idx, bool masked);
/* Reads entry idx's four dwords (address low/high, data, vector control). */
void pci_msix_read_entry(const struct pci_msix *m, unsigned idx, uint32_t out[4]);
/* Sets the capability's enable bit and the function mask bit as given. */
void pci_msix_enable(const struct pci_msix *m, bool enable, bool function_masked);
/* The pending bit of entry idx in the PBA. */
bool pci_msix_pending(const struct pci_msix *m, unsigned idx);

#endif
