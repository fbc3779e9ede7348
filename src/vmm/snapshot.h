/* Snapshot and restore of a whole VM: every vCPU's state, the in-kernel interrupt
 * controllers, timer and clock, every device in the device list, and guest memory.
 *
 * The file is a stream of sections (snapshot_format.h): a header, the configuration that
 * must match, the VM and vCPU state, one section per device, then guest memory at a
 * page-aligned offset, written sparse (zero pages are holes), and an end marker. Restore
 * checks the whole file (header, every section's CRC32, the configuration) before it
 * changes anything, then maps memory MAP_PRIVATE from the file: the VM runs before its
 * memory is read, and any number of processes can restore one snapshot, each private. */
#ifndef KVMINI_VMM_SNAPSHOT_H
#define KVMINI_VMM_SNAPSHOT_H

#include <stdint.h>

#include "util/err.h"

struct vm;

/* Leave the VM paused after the snapshot (QEMU's migrate does); without it a VM that was
 * running is resumed, one that was paused stays paused. */
#define SNAPSHOT_LEAVE_PAUSED 1u

/* Writes a snapshot of vm to path (created or truncated; mode 0600). A running VM is
 * paused first. Any thread but a vCPU's (the loop thread, the control socket's, a test's).
 * Returns 0 or -errno with e set (the VM keeps running, or stays as it was, on failure). */
int vm_snapshot_save(struct vm *vm, const char *path, unsigned flags, struct errbuf *e);

/* Checks that path is a complete, intact snapshot that vm (created from the same options)
 * can take: header, every section's CRC, the configuration. Changes nothing. */
int vm_snapshot_restore_check(struct vm *vm, const char *path, struct errbuf *e);

/* Replaces the state of vm, freshly made by vm_create() and not yet run, with the
 * snapshot's. Checks everything first: on failure vm is as it was. `kvmini run --restore
 * PATH` and `-incoming file:PATH` call it between vm_create() and vm_run(). */
int vm_snapshot_restore(struct vm *vm, const char *path, struct errbuf *e);

/* Replaces the state of a VM that may have run (HMP loadvm, QMP migrate-incoming): reads
 * and checks the whole file while the VM runs on, then pauses it, puts every device back
 * to power-on state, loads the snapshot as vm_snapshot_restore does and resumes it unless
 * it was paused or SNAPSHOT_LEAVE_PAUSED. Loop thread (or any but a vCPU's). A file that
 * fails the checks leaves the VM as it was; a failure once loading began (an ioctl KVM
 * refuses) leaves it paused, with the error saying so. */
int vm_snapshot_load(struct vm *vm, const char *path, unsigned flags, struct errbuf *e);

/* What `info snapshots` shows of a file (checked as a restore checks it, RAM aside). */
struct snapshot_info {
	uint64_t vm_clock_ns; /* kvmclock when it was taken: the guest's time since boot */
	uint64_t mem_size;
	char version[13]; /* the kvmini that wrote it */
};
int vm_snapshot_info(const char *path, struct snapshot_info *info, struct errbuf *e);

#endif
