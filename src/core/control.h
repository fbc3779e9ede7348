/* What a monitor (mon:stdio today, the QMP socket next) may ask of a running VM. The VM
 * fills the table and hands it down, so the monitor never calls up into vm.c. Every
 * operation is called on the event-loop thread. */
#ifndef KVMINI_CORE_CONTROL_H
#define KVMINI_CORE_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"

#define VM_STATS_MAX	   32
#define VM_BLOCK_STATS_MAX 16

struct vm_stat {
	const char *name; /* a static string: "rd_bytes", "tx_frames", ... */
	uint64_t value;
};

/* One device's counters, as the monitors show them. The strings live as long as the VM. */
struct vm_device_stats {
	const char *name;      /* "virtio-blk" */
	const char *qdev;      /* QOM-style path: /machine/peripheral/ID/virtio-backend */
	const char *transport; /* "pci", "mmio" */
	const char *address;   /* "00:01.0", "0xfe000000" */
	unsigned nstats;
	struct vm_stat stats[VM_STATS_MAX]; /* the device's own counters */
	/* A disk: the -drive id and its counters in QEMU's block accounting (names as in
	 * BlockDeviceStats); drive NULL otherwise. */
	const char *drive;
	unsigned nblock;
	struct vm_stat block[VM_BLOCK_STATS_MAX];
};

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
	/* The counters of every device that keeps some (the virtio devices), for
	 * query-blockstats, x-query-virtio-stats and HMP's info blockstats/virtio-stats:
	 * fills up to max entries and returns how many there are. Counters are atomics the
	 * device threads update; nothing is stopped to read them. NULL: none to report. */
	unsigned (*device_stats)(void *opaque, struct vm_device_stats *out, unsigned max);
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

/* query-migrate's view, shared by every monitor: the outcome of the last migrate or
 * migrate-incoming (QMP or HMP). */
struct vm_migration {
	const char *status; /* NULL: none yet; "completed" or "failed" */
};

struct vm_control {
	const struct vm_control_ops *ops;
	void *opaque;
	struct vm_migration *migration; /* NULL: not kept */
	/* Where HMP savevm/loadvm/delvm keep named snapshots (--snapshot-dir, or the first
	 * disk's directory); NULL: none. */
	const char *snapshot_dir;
};

/* Records a migrate or migrate-incoming's outcome for query-migrate (ctl or its
 * migration may be NULL). */
static inline void vm_migration_done(const struct vm_control *ctl, bool ok)
{
	if (ctl && ctl->migration)
		ctl->migration->status = ok ? "completed" : "failed";
}

const char *vm_run_status_name(enum vm_run_status s); /* "running", "paused", "shutdown",
							 "prelaunch", "inmigrate" */

#endif
