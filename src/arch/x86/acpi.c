#include "arch/x86/acpi.h"
#include "util/checksum.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "arch/x86/mptable.h" /* IOAPIC_ADDR, LAPIC_ADDR: one definition for both tables */
#include "arch/x86/layout.h"
#include "devices/vmgenid.h" /* VMGENID_ADDR, VMGENID_GPE: what the AML names */

/* The tables are built in host memory with plain struct copies, so every multi-byte field is
 * stored in host order; ACPI is little-endian. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "ACPI tables need a little-endian host");

#define ACPI_MAX_CPUS 64

#define ACPI_OEM_ID	  "KVMINI"
#define ACPI_OEM_TABLE_ID "KVMINIVM"
#define ACPI_CREATOR_ID	  "KVMI"

/* ACPI 6.x section 5.2.5.3. */
struct acpi_rsdp {
	char signature[8];
	uint8_t checksum; /* over the ACPI 1.0 part: the first 20 bytes */
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt_address;
	uint32_t length;
	uint64_t xsdt_address;
	uint8_t extended_checksum; /* over all 36 bytes */
	uint8_t reserved[3];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP size");
_Static_assert(offsetof(struct acpi_rsdp, length) == 20, "RSDP 1.0 part is 20 bytes");

/* ACPI 6.x section 5.2.6: the header every table but the FACS starts with. */
struct acpi_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_header) == 36, "SDT header size");
_Static_assert(offsetof(struct acpi_header, checksum) == 9, "SDT checksum offset");

/* ACPI 6.x section 5.2.3.2. */
struct acpi_gas {
	uint8_t space_id;
	uint8_t bit_width;
	uint8_t bit_offset;
	uint8_t access_size;
	uint64_t address;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_gas) == 12, "GAS size");

#define ACPI_GAS_SYSTEM_IO   1
#define ACPI_GAS_ACCESS_BYTE 1
#define ACPI_GAS_ACCESS_WORD 2

/* ACPI 6.x section 5.2.10. */
struct acpi_facs {
	char signature[4];
	uint32_t length;
	uint32_t hardware_signature;
	uint32_t firmware_waking_vector;
	uint32_t global_lock;
	uint32_t flags;
	uint64_t x_firmware_waking_vector;
	uint8_t version;
	uint8_t reserved[3];
	uint32_t ospm_flags;
	uint8_t reserved2[24];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_facs) == 64, "FACS size");

/* ACPI 6.x section 5.2.9 (layout unchanged from 6.0 through 6.5). */
struct acpi_fadt {
	struct acpi_header header;
	uint32_t firmware_ctrl;
	uint32_t dsdt;
	uint8_t reserved0;
	uint8_t preferred_pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable;
	uint8_t acpi_disable;
	uint8_t s4bios_req;
	uint8_t pstate_cnt;
	uint32_t pm1a_evt_blk;
	uint32_t pm1b_evt_blk;
	uint32_t pm1a_cnt_blk;
	uint32_t pm1b_cnt_blk;
	uint32_t pm2_cnt_blk;
	uint32_t pm_tmr_blk;
	uint32_t gpe0_blk;
	uint32_t gpe1_blk;
	uint8_t pm1_evt_len;
	uint8_t pm1_cnt_len;
	uint8_t pm2_cnt_len;
	uint8_t pm_tmr_len;
	uint8_t gpe0_blk_len;
	uint8_t gpe1_blk_len;
	uint8_t gpe1_base;
	uint8_t cst_cnt;
	uint16_t p_lvl2_lat;
	uint16_t p_lvl3_lat;
	uint16_t flush_size;
	uint16_t flush_stride;
	uint8_t duty_offset;
	uint8_t duty_width;
	uint8_t day_alrm;
	uint8_t mon_alrm;
	uint8_t century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_version;
	uint64_t x_firmware_ctrl;
	uint64_t x_dsdt;
	struct acpi_gas x_pm1a_evt_blk;
	struct acpi_gas x_pm1b_evt_blk;
	struct acpi_gas x_pm1a_cnt_blk;
	struct acpi_gas x_pm1b_cnt_blk;
	struct acpi_gas x_pm2_cnt_blk;
	struct acpi_gas x_pm_tmr_blk;
	struct acpi_gas x_gpe0_blk;
	struct acpi_gas x_gpe1_blk;
	struct acpi_gas sleep_control_reg;
	struct acpi_gas sleep_status_reg;
	char hypervisor_vendor_id[8];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT revision 6 size");
_Static_assert(offsetof(struct acpi_fadt, sci_int) == 46, "FADT SCI_INT offset");
_Static_assert(offsetof(struct acpi_fadt, pm1a_cnt_blk) == 64, "FADT PM1a_CNT_BLK offset");
_Static_assert(offsetof(struct acpi_fadt, pm1_evt_len) == 88, "FADT PM1_EVT_LEN offset");
_Static_assert(offsetof(struct acpi_fadt, iapc_boot_arch) == 109, "FADT IAPC_BOOT_ARCH offset");
_Static_assert(offsetof(struct acpi_fadt, flags) == 112, "FADT flags offset");
_Static_assert(offsetof(struct acpi_fadt, minor_version) == 131, "FADT minor version offset");
_Static_assert(offsetof(struct acpi_fadt, x_dsdt) == 140, "FADT X_DSDT offset");
_Static_assert(offsetof(struct acpi_fadt, x_pm1a_cnt_blk) == 172, "FADT X_PM1a_CNT offset");
_Static_assert(offsetof(struct acpi_fadt, hypervisor_vendor_id) == 268, "FADT vendor offset");

/* FADT fixed feature flags (ACPI 6.x table 5.10). */
#define FADT_F_WBINVD	  (1u << 0)
#define FADT_F_PROC_C1	  (1u << 2)
#define FADT_F_PWR_BUTTON (1u << 4)
#define FADT_F_SLP_BUTTON (1u << 5)
#define FADT_F_RESET_REG  (1u << 10) /* RESET_REG_SUP */
/* IA-PC boot architecture flags (ACPI 6.x table 5.11). */
#define FADT_IAPC_8042	     (1u << 1)
#define FADT_IAPC_VGA_ABSENT (1u << 2)

/* A C2/C3 latency above 100/1000 us is how the FADT says the state is not supported. */
#define FADT_LATENCY_NO_CSTATE 0x0fff

/* ACPI 6.x section 5.2.12. */
/* PCI Firmware Specification 3.2, 4.1.2: the MCFG table, one allocation per ECAM window. */
struct acpi_mcfg_alloc {
	uint64_t base;
	uint16_t segment;
	uint8_t start_bus;
	uint8_t end_bus;
	uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_mcfg_alloc) == 16, "MCFG allocation size");

struct acpi_mcfg {
	struct acpi_header header;
	uint64_t reserved;
	struct acpi_mcfg_alloc alloc[1];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_mcfg) == 60, "MCFG size");

struct acpi_madt {
	struct acpi_header header;
	uint32_t lapic_address;
	uint32_t flags;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_madt) == 44, "MADT fixed part size");

#define MADT_PCAT_COMPAT 1u

struct madt_lapic {
	uint8_t type;
	uint8_t length;
	uint8_t processor_uid;
	uint8_t apic_id;
	uint32_t flags;
} __attribute__((packed));
_Static_assert(sizeof(struct madt_lapic) == 8, "MADT local APIC size");

#define MADT_LAPIC_ENABLED 1u

struct madt_ioapic {
	uint8_t type;
	uint8_t length;
	uint8_t ioapic_id;
	uint8_t reserved;
	uint32_t address;
	uint32_t gsi_base;
} __attribute__((packed));
_Static_assert(sizeof(struct madt_ioapic) == 12, "MADT IOAPIC size");

struct madt_iso {
	uint8_t type;
	uint8_t length;
	uint8_t bus;
	uint8_t source;
	uint32_t gsi;
	uint16_t flags;
} __attribute__((packed));
_Static_assert(sizeof(struct madt_iso) == 10, "MADT interrupt source override size");

/* MPS INTI flags: polarity in bits 1:0 (1 = active high), trigger mode in bits 3:2 (3 = level). */
#define MADT_INTI_ACTIVE_HIGH 0x1
#define MADT_INTI_LEVEL	      0xc

struct madt_lapic_nmi {
	uint8_t type;
	uint8_t length;
	uint8_t processor_uid;
	uint16_t flags;
	uint8_t lint;
} __attribute__((packed));
_Static_assert(sizeof(struct madt_lapic_nmi) == 6, "MADT local APIC NMI size");

#define MADT_ALL_PROCESSORS 0xff

/* The whole DSDT body: Name (_S5, Package (0x04) { 0x05, 0x05, Zero, Zero }), which Linux
 * evaluates to learn SLP_TYP for power-off (the optional \_PTS and \_SST it also tries may
 * be absent), and the PCI host bridge device. */
/* clang-format off */
static const uint8_t acpi_dsdt_aml[] = {
	0x08,                  /* NameOp */
	'_', 'S', '5', '_',    /* NameSeg; the DSDT is loaded at the root, so this is \_S5 */
	0x12,                  /* PackageOp */
	0x08,                  /* PkgLength, one-byte form (bits 7:6 = 0): itself + 7 bytes after */
	0x04,                  /* NumElements */
	0x0a, ACPI_S5_SLP_TYP, /* BytePrefix: SLP_TYPa, written to PM1a_CNT bits 10-12 */
	0x0a, ACPI_S5_SLP_TYP, /* BytePrefix: SLP_TYPb, unused as there is no PM1b block */
	0x00,                  /* ZeroOp: reserved */
	0x00,                  /* ZeroOp: reserved */

	/* Device (\_SB.PCI0): the PCI host bridge (devices/pci.c). With ACPI on, Linux scans
	 * only the root buses the namespace names (a PNP0A03 device), never bus 0 on its own;
	 * its _CRS gives bus 0, the config ports and the windows BARs live in. */
	0x5b, 0x82,            /* DeviceOp */
	0x46, 0x08,            /* PkgLength, two-byte form: 0x86 = itself + 132 bytes after */
	'\\', 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', /* \_SB.PCI0 (DualNamePrefix) */
	0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x03, /* Name (_HID, EisaId ("PNP0A03")) */
	0x08, '_', 'U', 'I', 'D', 0x00, /* Name (_UID, Zero) */
	0x08, '_', 'S', 'E', 'G', 0x00, /* Name (_SEG, Zero) */
	0x08, '_', 'B', 'B', 'N', 0x00, /* Name (_BBN, Zero) */
	0x08, '_', 'C', 'R', 'S',       /* Name (_CRS, Buffer (84) { ... }) */
	0x11, 0x48, 0x05,      /* BufferOp, PkgLength 0x58 (two-byte form) */
	0x0a, 84,              /* BufferSize: BytePrefix 84 */
	/* WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode): buses 0..0 */
	0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00,
	0x00, 0x00,  0x00, 0x00,  0x00, 0x00,  0x00, 0x00,  0x01, 0x00,
	/* IO (Decode16, 0x0cf8, 0x0cf8, 1, 8): the configuration ports, consumed */
	0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08,
	/* WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange):
	 * 0x0000-0x0cf7 and 0x0d00-0xffff */
	0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03,
	0x00, 0x00,  0x00, 0x00,  0xf7, 0x0c,  0x00, 0x00,  0xf8, 0x0c,
	0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03,
	0x00, 0x00,  0x00, 0x0d,  0xff, 0xff,  0x00, 0x00,  0x00, 0xf3,
	/* DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable,
	 * ReadWrite): the 32-bit BAR window 0xc0000000-0xdfffffff */
	0x87, 0x17, 0x00, 0x00, 0x0c, 0x01,
	0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0xc0,  0xff, 0xff, 0xff, 0xdf,
	0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x20,
	0x79, 0x00,            /* EndTag */

	/* Device (\_SB.VGEN): the VM generation ID (devices/vmgenid.h). Linux's vmgenid
	 * driver matches the _CID (ACPICA upper-cases it to VM_GEN_COUNTER), Windows the
	 * _CID/_DDN; both evaluate ADDR for the GUID's address. */
	0x5b, 0x82,            /* DeviceOp */
	0x4a, 0x05,            /* PkgLength, two-byte form: 0x5a = itself + 88 bytes after */
	'\\', 0x2e, '_', 'S', 'B', '_', 'V', 'G', 'E', 'N', /* \_SB.VGEN */
	0x08, '_', 'H', 'I', 'D', 0x0d, 'Q', 'E', 'M', 'U', 'V', 'G', 'I', 'D', 0x00,
	0x08, '_', 'C', 'I', 'D', 0x0d,
	'V', 'M', '_', 'G', 'e', 'n', '_', 'C', 'o', 'u', 'n', 't', 'e', 'r', 0x00,
	0x08, '_', 'D', 'D', 'N', 0x0d,
	'V', 'M', '_', 'G', 'e', 'n', '_', 'C', 'o', 'u', 'n', 't', 'e', 'r', 0x00,
	/* Method (ADDR, 0, NotSerialized) { Return (Package (2) { low, high }) } */
	0x14, 0x14, 'A', 'D', 'D', 'R', 0x00, /* MethodOp, PkgLength 20, no args */
	0xa4,                  /* ReturnOp */
	0x12, 0x0c, 0x02,      /* PackageOp, PkgLength 12, NumElements 2 */
	0x0c, (uint8_t)VMGENID_ADDR, (uint8_t)(VMGENID_ADDR >> 8),
	(uint8_t)(VMGENID_ADDR >> 16), (uint8_t)(VMGENID_ADDR >> 24), /* DWordConst: low */
	0x0c, (uint8_t)(VMGENID_ADDR >> 32), (uint8_t)(VMGENID_ADDR >> 40),
	(uint8_t)(VMGENID_ADDR >> 48), (uint8_t)(VMGENID_ADDR >> 56), /* DWordConst: high */

	/* Scope (\_GPE) { Method (_E00) { Notify (\_SB.VGEN, 0x80) } }: GPE0 bit 0, which
	 * devices/vmgenid.c raises on a new generation; ACPICA enables GPEs with a method. */
	0x10, 0x1a, '\\', '_', 'G', 'P', 'E', /* ScopeOp, PkgLength 26 */
	0x14, 0x13, '_', 'E', '0', '0', 0x00,  /* MethodOp, PkgLength 19, no args */
	0x86, '\\', 0x2e, '_', 'S', 'B', '_', 'V', 'G', 'E', 'N', 0x0a, 0x80, /* Notify */
};
/* clang-format on */
_Static_assert(VMGENID_GPE == 0, "the _E00 method is GPE0 bit 0");
_Static_assert(sizeof(acpi_dsdt_aml) == 14 + 136 + 92 + 27, "_S5, PCI0, VGEN, _GPE AML size");

/* Largest image (64 CPUs) is about 1.2 KiB; the buffer bounds the layout, and the layout
 * must also stay inside the window e820 reserves for the tables. */
#define ACPI_IMAGE_MAX 4096
_Static_assert(ACPI_IMAGE_MAX <= ACPI_TABLES_SIZE, "image larger than the ACPI window");

struct acpi_image {
	uint8_t bytes[ACPI_IMAGE_MAX];
	size_t len;
};

/* Reserves size bytes at the next align-byte boundary; returns the offset or -ENOSPC. */
static long acpi_image_alloc(struct acpi_image *img, size_t size, size_t align)
{
	size_t off = (img->len + align - 1) & ~(align - 1);

	if (off > sizeof(img->bytes) || size > sizeof(img->bytes) - off)
		return -ENOSPC;
	img->len = off + size;
	return (long)off;
}

/* Fills a table's checksum so that all its bytes, as copied into the image, sum to 0. */
static void acpi_image_checksum(struct acpi_image *img, size_t off, size_t len)
{
	uint8_t *table = img->bytes + off;

	table[offsetof(struct acpi_header, checksum)] = 0;
	table[offsetof(struct acpi_header, checksum)] = table_checksum(table, len);
}

static struct acpi_header acpi_make_header(const char *signature, uint32_t length, uint8_t revision)
{
	struct acpi_header h = {
	    .length = length,
	    .revision = revision,
	    .oem_revision = 1,
	    .creator_revision = 1,
	};

	memcpy(h.signature, signature, sizeof(h.signature));
	memcpy(h.oem_id, ACPI_OEM_ID, sizeof(h.oem_id));
	memcpy(h.oem_table_id, ACPI_OEM_TABLE_ID, sizeof(h.oem_table_id));
	memcpy(h.creator_id, ACPI_CREATOR_ID, sizeof(h.creator_id));
	return h;
}

static uint64_t acpi_gpa(long off)
{
	return ACPI_TABLES_START + (uint64_t)off;
}

static struct acpi_fadt acpi_fadt(uint64_t facs, uint64_t dsdt)
{
	struct acpi_fadt f = {
	    .header = acpi_make_header("FACP", sizeof(struct acpi_fadt), 6),
	    /* Only the 32-bit FACS pointer: with both set, ACPICA installs the FACS twice. */
	    .firmware_ctrl = (uint32_t)facs,
	    /* Both DSDT pointers, equal, so that ACPI 1.0 and 2.0+ readers agree. */
	    .dsdt = (uint32_t)dsdt,
	    .x_dsdt = dsdt,
	    .sci_int = ACPI_SCI_IRQ,
	    /* No SMI command port: the OS must consider the machine already in ACPI mode
	     * (ACPICA's acpi_hw_get_mode() returns ACPI mode when SMI_CMD is 0). */
	    .smi_cmd = 0,
	    .pm1a_evt_blk = ACPI_PM1A_EVT_PORT,
	    .pm1a_cnt_blk = ACPI_PM1A_CNT_PORT,
	    .gpe0_blk = ACPI_GPE0_PORT,
	    .pm1_evt_len = 4,
	    .pm1_cnt_len = 2,
	    .gpe0_blk_len = ACPI_GPE0_LEN,
	    /* No PM timer (optional since ACPI 5.0A): kvmclock and the TSC serve as clocks. */
	    .pm_tmr_blk = 0,
	    .pm_tmr_len = 0,
	    .p_lvl2_lat = FADT_LATENCY_NO_CSTATE,
	    .p_lvl3_lat = FADT_LATENCY_NO_CSTATE,
	    /* kvmini has an i8042 (Linux skips probing it when this bit is clear in a revision
	     * >= 2 FADT) and no VGA. */
	    .iapc_boot_arch = FADT_IAPC_8042 | FADT_IAPC_VGA_ABSENT,
	    /* WBINVD works under KVM and HLT gives C1, as on a PC. PWR_BUTTON clear: the power
	     * button is the fixed one (PWRBTN_STS/EN in PM1a, devices/pm.c), which QMP's
	     * system_powerdown presses; no sleep button (SLP_BUTTON set = absent). Not
	     * hardware-reduced: the PM1a blocks exist and Linux powers off through them. */
	    .flags = FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_SLP_BUTTON | FADT_F_RESET_REG,
	    /* The reset register is the PC's reset control port (devices/legacy.h), what
	     * Linux's reboot=acpi writes. */
	    .reset_reg = {ACPI_GAS_SYSTEM_IO, 8, 0, ACPI_GAS_ACCESS_BYTE, ACPI_RESET_PORT},
	    .reset_value = ACPI_RESET_VALUE,
	    .minor_version = 5,
	    /* Bit widths must equal 8 * the legacy lengths or ACPICA warns of a mismatch. */
	    .x_pm1a_evt_blk = {ACPI_GAS_SYSTEM_IO, 32, 0, ACPI_GAS_ACCESS_WORD, ACPI_PM1A_EVT_PORT},
	    .x_pm1a_cnt_blk = {ACPI_GAS_SYSTEM_IO, 16, 0, ACPI_GAS_ACCESS_WORD, ACPI_PM1A_CNT_PORT},
	    .x_gpe0_blk = {ACPI_GAS_SYSTEM_IO, 8 * ACPI_GPE0_LEN, 0, ACPI_GAS_ACCESS_BYTE,
			   ACPI_GPE0_PORT},
	};

	memcpy(f.hypervisor_vendor_id, "KVMINIVM", sizeof(f.hypervisor_vendor_id));
	return f;
}

static uint32_t acpi_madt_size(unsigned ncpus)
{
	return sizeof(struct acpi_madt) + ncpus * sizeof(struct madt_lapic) +
	       sizeof(struct madt_ioapic) + sizeof(struct madt_iso) + sizeof(struct madt_lapic_nmi);
}

static void acpi_image_put(struct acpi_image *img, size_t *at, const void *src, size_t len)
{
	memcpy(img->bytes + *at, src, len);
	*at += len;
}

static void acpi_write_madt(struct acpi_image *img, long off, unsigned ncpus)
{
	uint32_t size = acpi_madt_size(ncpus);
	size_t at = (size_t)off;

	struct acpi_madt madt = {
	    .header = acpi_make_header("APIC", size, 5),
	    .lapic_address = (uint32_t)LAPIC_ADDR,
	    /* KVM's in-kernel irqchip includes the two 8259s; Linux masks them when it switches
	     * to the IOAPIC. */
	    .flags = MADT_PCAT_COMPAT,
	};
	acpi_image_put(img, &at, &madt, sizeof(madt));

	/* In APIC ID order, the BSP (APIC ID 0) first: Linux numbers the CPUs in table order. */
	for (unsigned i = 0; i < ncpus; i++) {
		struct madt_lapic lapic = {
		    .type = 0,
		    .length = sizeof(lapic),
		    .processor_uid = (uint8_t)i,
		    .apic_id = (uint8_t)i,
		    .flags = MADT_LAPIC_ENABLED,
		};
		acpi_image_put(img, &at, &lapic, sizeof(lapic));
	}

	/* ID ncpus, as in the MP table, so it collides with no local APIC ID. */
	struct madt_ioapic ioapic = {
	    .type = 1,
	    .length = sizeof(ioapic),
	    .ioapic_id = (uint8_t)ncpus,
	    .address = (uint32_t)IOAPIC_ADDR,
	    .gsi_base = 0,
	};
	acpi_image_put(img, &at, &ioapic, sizeof(ioapic));

	/* Without an override Linux programs the SCI level-triggered, active-low (the ACPI
	 * default for the SCI). KVM documents KVM_IRQ_LINE's level as the asserted state and
	 * asks userspace not to present active-low lines, so declare IRQ 9 active-high, level,
	 * as QEMU does. No other override: KVM's default routing wires ISA IRQ n to IOAPIC pin
	 * n, including the PIT on IRQ 0, which the ACPI default (identity) already describes. */
	struct madt_iso iso = {
	    .type = 2,
	    .length = sizeof(iso),
	    .bus = 0,
	    .source = ACPI_SCI_IRQ,
	    .gsi = ACPI_SCI_IRQ,
	    .flags = MADT_INTI_ACTIVE_HIGH | MADT_INTI_LEVEL,
	};
	acpi_image_put(img, &at, &iso, sizeof(iso));

	/* LINT1 of every CPU is the NMI input, the PC wiring KVM's local APIC models. */
	struct madt_lapic_nmi nmi = {
	    .type = 4,
	    .length = sizeof(nmi),
	    .processor_uid = MADT_ALL_PROCESSORS,
	    .flags = 0,
	    .lint = 1,
	};
	acpi_image_put(img, &at, &nmi, sizeof(nmi));

	acpi_image_checksum(img, (size_t)off, size);
}

/* Lays out every table in img; acpi_write_tables copies it into guest memory and
 * acpi_tables_size reports its extent. */
static int acpi_build(struct acpi_image *out, unsigned ncpus)
{
	struct acpi_image img = {.len = 0};
	const size_t xsdt_size = sizeof(struct acpi_header) + 3 * sizeof(uint64_t);
	const size_t dsdt_size = sizeof(struct acpi_header) + sizeof(acpi_dsdt_aml);

	if (ncpus == 0 || ncpus > ACPI_MAX_CPUS)
		return -EINVAL;

	/* Every table 16-byte aligned, as firmware does; the FACS needs 64 (ACPI 5.2.10). */
	long rsdp = acpi_image_alloc(&img, sizeof(struct acpi_rsdp), 16);
	long xsdt = acpi_image_alloc(&img, xsdt_size, 16);
	long facs = acpi_image_alloc(&img, sizeof(struct acpi_facs), 64);
	long fadt = acpi_image_alloc(&img, sizeof(struct acpi_fadt), 16);
	long dsdt = acpi_image_alloc(&img, dsdt_size, 16);
	long madt = acpi_image_alloc(&img, acpi_madt_size(ncpus), 16);
	long mcfg = acpi_image_alloc(&img, sizeof(struct acpi_mcfg), 16);
	if (rsdp < 0 || xsdt < 0 || facs < 0 || fadt < 0 || dsdt < 0 || madt < 0 || mcfg < 0)
		return -ENOSPC;

	struct acpi_rsdp r = {
	    .signature = {'R', 'S', 'D', ' ', 'P', 'T', 'R', ' '},
	    .revision = 2,
	    /* No RSDT: with revision >= 2 and a non-zero XSDT address, ACPICA
	     * (acpi_tb_parse_root_table) and Linux's boot stub use the XSDT only. */
	    .rsdt_address = 0,
	    .length = sizeof(struct acpi_rsdp),
	    .xsdt_address = acpi_gpa(xsdt),
	};
	memcpy(r.oem_id, ACPI_OEM_ID, sizeof(r.oem_id));
	r.checksum = table_checksum((const uint8_t *)&r, offsetof(struct acpi_rsdp, length));
	r.extended_checksum = table_checksum((const uint8_t *)&r, sizeof(r));
	memcpy(img.bytes + rsdp, &r, sizeof(r));

	/* The DSDT and FACS are reached through the FADT only, as the spec requires. */
	size_t at = (size_t)xsdt;
	struct acpi_header xh = acpi_make_header("XSDT", (uint32_t)xsdt_size, 1);
	uint64_t entries[3] = {acpi_gpa(fadt), acpi_gpa(madt), acpi_gpa(mcfg)};
	acpi_image_put(&img, &at, &xh, sizeof(xh));
	acpi_image_put(&img, &at, entries, sizeof(entries));
	acpi_image_checksum(&img, (size_t)xsdt, xsdt_size);

	struct acpi_facs fc = {
	    .signature = {'F', 'A', 'C', 'S'}, .length = sizeof(struct acpi_facs), .version = 2};
	memcpy(img.bytes + facs, &fc, sizeof(fc));

	struct acpi_fadt f = acpi_fadt(acpi_gpa(facs), acpi_gpa(dsdt));
	memcpy(img.bytes + fadt, &f, sizeof(f));
	acpi_image_checksum(&img, (size_t)fadt, sizeof(f));

	/* Revision 2: AML integers are 64-bit. */
	at = (size_t)dsdt;
	struct acpi_header dh = acpi_make_header("DSDT", (uint32_t)dsdt_size, 2);
	acpi_image_put(&img, &at, &dh, sizeof(dh));
	acpi_image_put(&img, &at, acpi_dsdt_aml, sizeof(acpi_dsdt_aml));
	acpi_image_checksum(&img, (size_t)dsdt, dsdt_size);

	acpi_write_madt(&img, madt, ncpus);

	/* The ECAM window of bus 0, segment 0 (devices/pci.c serves it). */
	struct acpi_mcfg mc = {
	    .header = acpi_make_header("MCFG", sizeof(struct acpi_mcfg), 1),
	    .alloc = {{.base = X86_PCI_ECAM_BASE,
		       .segment = 0,
		       .start_bus = 0,
		       .end_bus = X86_PCI_ECAM_BUSES - 1}},
	};
	memcpy(img.bytes + mcfg, &mc, sizeof(mc));
	acpi_image_checksum(&img, (size_t)mcfg, sizeof(mc));

	*out = img;
	return 0;
}

int acpi_write_tables(const struct guest_mem *mem, unsigned ncpus)
{
	struct acpi_image img;
	int ret = acpi_build(&img, ncpus);
	return ret < 0 ? ret : guest_mem_write(mem, ACPI_TABLES_START, img.bytes, img.len);
}

uint64_t acpi_tables_size(unsigned ncpus)
{
	struct acpi_image img;
	return acpi_build(&img, ncpus) < 0 ? ACPI_TABLES_SIZE : img.len;
}
