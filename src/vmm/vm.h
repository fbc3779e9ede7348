/* A whole VM: the one place that assembles memory, the interrupt controllers, devices and
 * vCPUs, and runs them. It sits above everything; nothing below calls into it. All state is
 * here (no process-wide globals), so several VMs can live in one process. */
#ifndef KVMINI_VMM_VM_H
#define KVMINI_VMM_VM_H

#include <stdint.h>
#include <time.h>

#include <linux/kvm.h>

#include "arch/x86/boot.h"
#include "arch/x86/state.h"
#include "config.h"
#include "devices/legacy.h"
#include "devices/pci.h"
#include "devices/serial.h"
#include "devices/vmgenid.h"
#include "util/err.h"
#include "core/guest_mem.h"
#include "core/bus.h"
#include "core/control.h"
#include "core/device.h"
#include "vmm/console.h"
#include "core/irq.h"
#include "vmm/kvm.h"
#include "core/loop.h"
#include "core/power.h"
#include "vmm/qmp.h"
#include "vmm/vcpu.h"
#include "virtio/mmio.h"

struct vm {
	const struct vm_config *cfg;
	struct timespec start; /* CLOCK_MONOTONIC when kvmini started */
	struct kvm_host kvm;
	int vm_fd;

	uint8_t *ram;
	size_t ram_size;
	/* Private anonymous memory (a fresh boot): a page never touched is zero. Not after a
	 * restore, whose RAM is a private mapping of the snapshot file. */
	bool ram_anonymous;
	struct guest_mem mem;

	struct bus pio, mmio;
	struct vm_power power;
	struct event_loop loop;

	/* The GSI routing table: KVM's PIC/IOAPIC defaults plus the MSI routes devices take;
	 * installed only once a device changes it. */
	struct irq_router irq_router;
	/* ttyS0..3: the host side (backend, escapes, monitor) and the UART; a port whose
	 * -serial is none has neither. The UARTs are in `devices` too. */
	struct console consoles[KVMINI_MAX_SERIALS];
	struct irq_line serial_irqs[KVMINI_MAX_SERIALS];
	struct serial serials[KVMINI_MAX_SERIALS];
	bool serial_present[KVMINI_MAX_SERIALS];
	struct pci_host pci; /* bus 0: the host bridge and the virtio-pci functions */
	bool pci_created;
	struct device_list devices;    /* every device: reset, save, destroy */
	struct pm *pm;		       /* the ACPI PM registers (in devices): the power button */
	struct vmgenid *vmgenid;       /* the VM generation ID (in devices) */
	struct vm_control control;     /* what the monitor may ask of the VM */
	struct vm_migration migration; /* control.migration points here */
	struct qmp_server qmp;	       /* --qmp / -mon mode=control */
	bool qmp_open;
	bool reset_by_host;	 /* the pending reset came from the monitor (RESET's reason) */
	bool reset_stop_by_host; /* -no-reboot stop caused by the monitor's system_reset */
	/* kvmclock as it was when stop parked the vCPUs: cont sets it back, so the guest's
	 * clock does not jump by the pause (as QEMU does). */
	struct kvm_clock_data paused_clock;
	bool paused_clock_valid;
	/* -S: no vCPU has run yet; query-status says "prelaunch" until the first cont. */
	bool prelaunch;
	/* -incoming defer: paused until migrate-incoming loads a snapshot; then the VM runs
	 * if autostart (no -S, or a cont since; a stop clears it, as in QEMU). */
	bool inmigrate, autostart;
	/* Named snapshots' directory (vm_control.snapshot_dir): --snapshot-dir, or the first
	 * disk's directory. */
	char *snapshot_dir;
	/* The virtio-mmio windows in use, and the kernel command line that announces them
	 * (the user's with virtio_mmio.device= added). */
	struct virtio_mmio_layout mmio_layout;
	char *cmdline;

	struct kvm_cpuid2 *supported_cpuid;
	/* KVM_GET_SUPPORTED_CPUID runs on its own thread while the VM is assembled: on hosts
	 * that trap every cpuid it is the slowest step of start-up. */
	pthread_t cpuid_thread;
	bool cpuid_thread_started;
	int cpuid_ret;
	struct errbuf cpuid_err;
	struct x86_boot_args boot_args; /* kept: a reset loads the kernel again */
	struct x86_boot_setup boot;
	/* Power-on state, captured before the first KVM_RUN: what a reset returns to. */
	struct x86_vm_state reset_vm_state;
	struct x86_vcpu_state *reset_vcpu_state; /* one per vCPU */
	struct vcpu_env vcpu_env;
	struct vcpu *vcpus; /* cfg->ncpus of them (an idle VM carries no unused ones) */
	unsigned nvcpus;
	int signal_fd;
	unsigned init_done; /* how far vm_create got, for vm_destroy */
};

/* Builds the VM described by cfg: memory, irqchip, devices, kernel, vCPUs. kernel is the
 * image (a mapping of the file, or the built-in demo), initrd_fd the open initrd (-1 for
 * none), read into guest RAM with pread. Both must stay valid until vm_destroy (a reset
 * loads them again). Returns 0 or -errno with e set. */
int vm_create(struct vm *vm, const struct vm_config *cfg, const struct timespec *start,
	      const uint8_t *kernel, size_t kernel_size, const char *kernel_name, int initrd_fd,
	      uint64_t initrd_size, struct errbuf *e);
/* Runs until the guest or the user stops it; *exit_status is what kvmini should exit with.
 * Returns 0, or -errno if the VM could not run (with e set). */
int vm_run(struct vm *vm, int *exit_status, struct errbuf *e);
void vm_destroy(struct vm *vm);

/* Parks every vCPU (returns once all are parked), then quiesces the devices (in-flight
 * disk requests complete, see device_ops.pause), and lets them go again; the monitor's
 * stop/cont, and what snapshot and migration stand on. One thread at a time (the loop
 * thread, or a test's), never a vCPU's. */
int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);

#endif
