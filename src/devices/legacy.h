/* The small legacy PC devices: i8042 (only the reset line), CMOS RTC, the debug-exit port
 * and the boot-time marker port. Each knows its ports and, where it ends the VM, the
 * struct vm_power; none knows struct vm. */
#ifndef KVMINI_DEVICES_LEGACY_H
#define KVMINI_DEVICES_LEGACY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "core/bus.h"
#include "core/device.h"
#include "core/irq.h"
#include "core/power.h"

/* i8042 keyboard controller at 0x60/0x64 with nothing attached: enough of the controller
 * for Linux's probe (self-test, command byte) to finish at once; command 0xfe (pulse reset
 * line) written to 0x64 resets the VM (power_request_reset). Never raises an interrupt. */
#define I8042_DATA_PORT	   0x60
#define I8042_COMMAND_PORT 0x64
struct i8042 {
	pthread_mutex_t lock;
	struct vm_power *power;
	uint8_t last_command;
	uint8_t command_byte; /* controller configuration byte (read by command 0x20) */
	uint8_t out;	      /* pending output byte */
	bool out_full;
};
int i8042_init(struct i8042 *k, struct vm_power *power);
void i8042_destroy(struct i8042 *k);
int i8042_attach(struct i8042 *k, struct bus *pio);
extern const struct device_ops i8042_device_ops; /* dev: struct i8042 * */
/* Allocates, initialises and attaches one, and registers it in the device list. */
int i8042_create(struct device_list *l, struct bus *pio, struct vm_power *power);

/* MC146818 CMOS RTC at 0x70 (index, bit 7 = NMI mask) / 0x71 (data): the host's current
 * UTC time in BCD, 24-hour mode, plus 128 bytes of CMOS RAM. */
#define RTC_INDEX_PORT 0x70
#define RTC_DATA_PORT  0x71
struct rtc {
	pthread_mutex_t lock;
	uint8_t index;
	uint8_t cmos[128];
};
int rtc_init(struct rtc *r);
/* Fills the CMOS bytes where PC firmware records the memory size and CPU count (base,
 * extended, above 16 MiB, above 4 GiB; CPUs - 1 at 0x5f), for guests that read them. */
void rtc_set_machine_info(struct rtc *r, uint64_t ram_below_4g, uint64_t ram_above_4g,
			  unsigned ncpus);
void rtc_destroy(struct rtc *r);
int rtc_attach(struct rtc *r, struct bus *pio);
/* Reset keeps the CMOS RAM (battery-backed on a PC) and clears the interrupt enables. */
extern const struct device_ops rtc_device_ops;
int rtc_create(struct device_list *l, struct bus *pio, uint64_t ram_below_4g, uint64_t ram_above_4g,
	       unsigned ncpus);

/* QEMU's isa-debug-exit: a write of v (1, 2 or 4 bytes) to any of its ports stops the VM
 * with exit status (v << 1) | 1. debug_exit_attach() places it where kvmini's test guests
 * expect it, 0xf4..0xf7; debug_exit_attach_at() where -device isa-debug-exit,iobase=,iosize=
 * says (size ports from port). */
#define DEBUG_EXIT_PORT 0xf4
int debug_exit_attach(struct vm_power *power, struct bus *pio);
/* Stateless: registered so the list names every device the VM has. */
int debug_exit_create(struct device_list *l, struct bus *pio, struct vm_power *power, uint16_t port,
		      uint32_t size);
int debug_exit_attach_at(struct vm_power *power, struct bus *pio, uint16_t port, uint32_t size);

/* Boot-time marker: the guest writes a progress code to port 0x80 (the POST-code port, as
 * Cloud Hypervisor's debug port); codes 0x40-0x7f (Cloud Hypervisor's kernel and user-space
 * ranges) are logged with the time since kvmini started; others (Linux's io_delay writes)
 * are ignored. At most BOOT_MARKER_MAX lines are logged. */
#define BOOT_MARKER_PORT 0x80
#define BOOT_MARKER_MAX	 64
struct boot_marker {
	pthread_mutex_t lock;
	struct timespec start; /* CLOCK_MONOTONIC when kvmini started */
	unsigned count;
	uint8_t last_code;
	double last_ms;
};
int boot_marker_init(struct boot_marker *m, const struct timespec *start);
void boot_marker_destroy(struct boot_marker *m);
int boot_marker_attach(struct boot_marker *m, struct bus *pio);
extern const struct device_ops boot_marker_device_ops;
int boot_marker_create(struct device_list *l, struct bus *pio, const struct timespec *start);

/* The ACPI PM1a fixed registers the FADT points at (src/arch/x86/acpi.h): status at 0x600
 * (write 1 to clear), enable at 0x602, control at 0x604; and the GPE0 block at 0x620 (status,
 * write 1 to clear, then enable; 16 GPEs). Control reads with SCI_EN set (the machine is
 * always in ACPI mode); a write with SLP_EN (bit 13) powers the VM off (STOP_POWEROFF),
 * whatever the sleep type. The one fixed event is the power button (PWRBTN_STS/PWRBTN_EN,
 * bit 8; pm_power_button sets the status); the SCI, ISA IRQ 9 (level, active high: the
 * MADT's override), is asserted while (PM1_STS & PM1_EN) | (GPE0_STS & GPE0_EN) is not 0.
 * Enable registers read back what was written. */
#define PM1A_EVT_PORT	    0x600
#define PM1A_CNT_PORT	    0x604
#define PM1A_CNT_SCI_EN	    0x0001
#define PM1A_CNT_SLP_EN	    0x2000
#define PM1_PWRBTN	    0x0100     /* PWRBTN_STS in PM1_STS, PWRBTN_EN in PM1_EN */
#define PM1_STS_IMPLEMENTED PM1_PWRBTN /* the only status bit kvmini sets */
#define PM_GPE0_PORT	    0x620
#define PM_GPE0_LEN	    4
#define PM_SCI_IRQ	    9
struct pm {
	pthread_mutex_t lock;
	struct vm_power *power;
	uint16_t regs[3]; /* PM1_STS, PM1_EN, PM1_CNT */
	uint16_t gpe0_sts, gpe0_en;
	struct irq sci; /* a KVM_IRQ_LINE line on GSI 9 (vm_fd < 0: only recorded) */
};
int pm_init(struct pm *pm, struct vm_power *power, int vm_fd);
void pm_destroy(struct pm *pm);
int pm_attach(struct pm *pm, struct bus *pio);
/* The power button is pressed (QMP/HMP system_powerdown): PWRBTN_STS set, SCI updated. */
void pm_power_button(struct pm *pm);
/* A general-purpose event: GPE0_STS bit set, SCI updated. */
void pm_gpe0_raise(struct pm *pm, unsigned bit);
/* Sets the SCI line to the registers' level again: after a restore has replaced the
 * IOAPIC's state (which holds the line's level) with the snapshot's. */
void pm_sync_sci(struct pm *pm);
/* The SCI's level as the device drives it (for tests). */
bool pm_sci_level(struct pm *pm);
extern const struct device_ops pm_device_ops;
/* *out (if not NULL) receives the device, which the list owns. */
int pm_create(struct device_list *l, struct bus *pio, struct vm_power *power, int vm_fd,
	      struct pm **out);

/* The PC's reset control register at 0xcf9 (PIIX/ICH): a write with bit 2 (RST_CPU) set
 * resets the machine; the FADT names it as the ACPI reset register (value 0x06). */
#define RESET_CONTROL_PORT  0xcf9
#define RESET_CONTROL_VALUE 0x06
int reset_control_create(struct device_list *l, struct bus *pio, struct vm_power *power);
/* A byte written to the reset control register (the PCI host bridge owns 0xcf8-0xcff and
 * hands 0xcf9 here when it is present). */
void reset_control_write(struct vm_power *power, uint8_t value);

#endif
