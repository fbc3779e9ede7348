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

#endif
