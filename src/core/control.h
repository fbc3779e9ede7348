/* What a monitor (mon:stdio today, the QMP socket next) may ask of a running VM. The VM
 * fills the table and hands it down, so the monitor never calls up into vm.c. Every
 * operation is called on the event-loop thread. */
#ifndef KVMINI_CORE_CONTROL_H
#define KVMINI_CORE_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"

enum vm_run_status {
	VM_STATUS_RUNNING,
	VM_STATUS_PAUSED,    /* stop / -S: every vCPU parked */
	VM_STATUS_SHUTDOWN,  /* stopping: the VM is on its way out */
	VM_STATUS_PRELAUNCH, /* -S: paused before the first instruction, until the first cont */
	VM_STATUS_INMIGRATE, /* -incoming defer: paused until migrate-incoming restores it */
};

struct vm_control_ops {
	/* Park every vCPU; returns once all are parked (0) or -errno. */
	int (*pause)(void *opaque);
	int (*resume)(void *opaque);
	/* system_reset: reboot the VM in the process (or end it with -no-reboot). */
	void (*reset)(void *opaque);
	/* system_powerdown: presses the ACPI power button (PWRBTN_STS, the SCI) and sends the
	 * POWERDOWN event; the guest decides what to do. 0 or -errno. */
	int (*powerdown)(void *opaque);
	/* query-vm-generation-id: the VM generation ID's GUID as text. 0 or -errno. */
	int (*generation_id)(void *opaque, char out[37]);
	/* quit ends kvmini with status 0. */
	void (*quit)(void *opaque);
	enum vm_run_status (*status)(void *opaque);
	/* Writes a snapshot of the VM to path (migrate to file:PATH); a running VM is paused
	 * for it and resumed after. Returns 0 or -errno with e filled. NULL: not available. */
	int (*snapshot_save)(void *opaque, const char *path, struct errbuf *e);
	/* HMP loadvm: replaces the VM's state with the snapshot's, in the process; a running
	 * VM runs on from the snapshot, a paused one stays paused. A file that fails its
	 * checks changes nothing. 0 or -errno with e filled. */
	int (*snapshot_load)(void *opaque, const char *path, struct errbuf *e);
	/* migrate-incoming to file:PATH, only while the status is inmigrate (-incoming
	 * defer): loads the snapshot, then the VM runs unless -S (or a stop since) asked
	 * otherwise. -EBUSY when not waiting for one. */
	int (*incoming)(void *opaque, const char *path, struct errbuf *e);
	/* info snapshots: checks the file as a restore would (RAM aside) and gives the guest's
	 * clock (kvmclock, ns) when it was taken. 0 or -errno with e filled. */
	int (*snapshot_clock)(void *opaque, const char *path, uint64_t *clock_ns, struct errbuf *e);
};

struct vm_control {
	const struct vm_control_ops *ops;
	void *opaque;
	/* Where HMP savevm/loadvm/delvm keep named snapshots (--snapshot-dir, or the first
	 * disk's directory); NULL: none. */
	const char *snapshot_dir;
};

const char *vm_run_status_name(enum vm_run_status s); /* "running", "paused", "shutdown",
							 "prelaunch", "inmigrate" */

#endif
