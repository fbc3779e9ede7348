/* virtio-blk end to end: the real kvmini with the virtio-blk guest (a ring-3 polling
 * driver) on a disk file the test made, and the host file checked afterwards. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define DISK_SIZE (1u << 20)
#define BLOCK	  4096u

static void make_disk(char *path, uint8_t fill)
{
	strcpy(path, "/tmp/kvmini-vblk-XXXXXX");
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	uint8_t *buf = malloc(DISK_SIZE);
	memset(buf, fill, DISK_SIZE);
	cr_assert_eq(write(fd, buf, DISK_SIZE), DISK_SIZE);
	free(buf);
	fsync(fd);
	close(fd);
}

/* The guest's pattern at sector 8 of the file. */
static bool file_has_pattern(const char *path)
{
	uint8_t b[BLOCK];
	int fd = open(path, O_RDONLY);
	cr_assert(fd >= 0);
	cr_assert_eq(pread(fd, b, BLOCK, 8 * 512), BLOCK);
	close(fd);
	for (unsigned i = 0; i < BLOCK; i++)
		if (b[i] != (uint8_t)((i * 13 + 7) & 0xff))
			return false;
	return true;
}

/* What blk=rw must leave behind on any transport: the read past the end failed, the serial
 * came back, the pattern is in the host file, and the file did not grow. */
static void expect_rw_done(const struct harness_result *r, const char *path, const char *id)
{
	char want[64];
	snprintf(want, sizeof(want), "virtio-blk: id %s", id);
	cr_assert(strstr(r->out, "virtio-blk: read-past-end status 1"), "%s", r->out);
	cr_assert(strstr(r->out, want), "%s", r->out);
	cr_assert(strstr(r->out, "virtio-blk: OK"), "%s", r->out);
	cr_assert(file_has_pattern(path), "the write reached the host file");
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, DISK_SIZE, "a read past the end grew nothing");
}

static void run_guest(const char *disk_opt, const char *disk_val, const char *mode,
		      struct harness_result *r)
{
	char append[64];
	snprintf(append, sizeof(append), "blk=%s", mode);
	const char *argv[] = {"kvmini",	 "-kernel",    harness_guest("virtio-blk"),
			      "-append", append,       disk_opt,
			      disk_val,	 "-nographic", NULL};
	struct harness_opts o = {.timeout_s = 60};
	cr_assert_eq(harness_run(argv, &o, r), 0);
}

Test(virtio_blk, write_flush_read_back_and_the_file_holds_it)
{
	char path[64], opt[128];
	make_disk(path, 0xee);
	snprintf(opt, sizeof(opt), "%s,id=bootdisk", path);
	struct harness_result r;
	run_guest("--disk", opt, "rw", &r);
	cr_assert(r.exited && r.exit_status == 0, "exit %d\n%s%s", r.exit_status, r.out, r.err);
	cr_assert(strstr(r.out, "capacity 2048 blk_size 512"), "%s", r.out);
	expect_rw_done(&r, path, "bootdisk");
	harness_result_free(&r);
	unlink(path);
}

Test(virtio_blk, qemu_drive_spelling_and_cache_none)
{
	char path[64], opt[160];
	make_disk(path, 0);
	snprintf(opt, sizeof(opt), "file=%s,format=raw,if=virtio,cache=none", path);
	struct harness_result r;
	run_guest("-drive", opt, "rw", &r);
	cr_assert(r.exited && r.exit_status == 0, "exit %d\n%s%s", r.exit_status, r.out, r.err);
	cr_assert(strstr(r.out, "virtio-blk: OK"), "%s", r.out);
	cr_assert(file_has_pattern(path));
	harness_result_free(&r);
	unlink(path);
}

Test(virtio_blk, read_only_disk_refuses_writes_and_stays_unchanged)
{
	char path[64], opt[128];
	make_disk(path, 0x5a);
	snprintf(opt, sizeof(opt), "%s,ro", path);
	struct harness_result r;
	run_guest("--disk", opt, "ro", &r);
	cr_assert(r.exited && r.exit_status == 0, "exit %d\n%s%s", r.exit_status, r.out, r.err);
	cr_assert(strstr(r.out, "virtio-blk: write status 1"), "%s", r.out);
	cr_assert(strstr(r.out, "virtio-blk: OK"), "%s", r.out);
	uint8_t *b = malloc(DISK_SIZE);
	int fd = open(path, O_RDONLY);
	cr_assert_eq(read(fd, b, DISK_SIZE), DISK_SIZE);
	close(fd);
	for (unsigned i = 0; i < DISK_SIZE; i++)
		cr_assert_eq(b[i], 0x5a, "byte %u changed", i);
	free(b);
	harness_result_free(&r);
	unlink(path);
}

Test(virtio_blk, discard_punches_a_hole_in_the_host_file)
{
	char path[64];
	make_disk(path, 0x77);
	struct stat before, after;
	stat(path, &before);
	struct harness_result r;
	run_guest("--disk", path, "discard", &r);
	cr_assert(r.exited && r.exit_status == 0, "exit %d\n%s%s", r.exit_status, r.out, r.err);
	stat(path, &after);
	/* 1024 sectors = 512 KiB = 1024 blocks of st_blocks' 512 bytes. */
	cr_assert_lt(after.st_blocks, before.st_blocks - 1000, "st_blocks %lld -> %lld",
		     (long long)before.st_blocks, (long long)after.st_blocks);
	cr_assert_eq(after.st_size, DISK_SIZE);
	harness_result_free(&r);
	unlink(path);
}

struct kill_ctx {
	const char *path;
	struct harness_result second;
	int second_ran;
};

/* While the first kvmini holds the disk: a second one is refused; then kill -9. */
static void second_then_kill(int pid, void *arg)
{
	struct kill_ctx *k = arg;
	const char *argv[] = {"kvmini", "-kernel", harness_guest("virtio-blk"),
			      "--disk", k->path,   "-nographic",
			      NULL};
	struct harness_opts o = {.timeout_s = 20};
	k->second_ran = harness_run(argv, &o, &k->second) == 0;
	kill(pid, SIGKILL);
}

Test(virtio_blk, flushed_write_survives_kill_9_and_the_disk_is_locked)
{
	char path[64];
	make_disk(path, 0);
	struct kill_ctx k = {.path = path};
	const char *stop[] = {"virtio-blk: flushed", NULL};
	const char *argv[] = {"kvmini",	 "-kernel",	harness_guest("virtio-blk"),
			      "-append", "blk=flushed", "--disk",
			      path,	 "-nographic",	NULL};
	struct harness_opts o = {
	    .timeout_s = 60, .stop_when = stop, .inspect = second_then_kill, .inspect_arg = &k};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(strstr(r.out, "virtio-blk: flushed"), "%s%s", r.out, r.err);
	cr_assert(!r.exited && r.term_signal == SIGKILL, "exited %d status %d signal %d", r.exited,
		  r.exit_status, r.term_signal);
	cr_assert(file_has_pattern(path), "the flushed write is in the file after kill -9");
	cr_assert(k.second_ran);
	cr_assert(k.second.exited && k.second.exit_status == 1, "second: exit %d: %s",
		  k.second.exit_status, k.second.err);
	cr_assert(strstr(k.second.err, path) && strstr(k.second.err, "in use"), "%s", k.second.err);
	cr_assert_eq(harness_count(k.second.err, "\n"), 1, "one line: %s", k.second.err);
	harness_result_free(&k.second);
	harness_result_free(&r);
	unlink(path);
}

Test(virtio_blk, qcow2_image_is_refused_naming_the_format)
{
	char path[64];
	make_disk(path, 0);
	int fd = open(path, O_WRONLY);
	cr_assert_eq(pwrite(fd, "QFI\xfb\0\0\0\3", 8, 0), 8);
	close(fd);
	const char *argv[] = {"kvmini",	    "-kernel", harness_guest("virtio-blk"), "--disk", path,
			      "-nographic", NULL};
	struct harness_opts o = {.timeout_s = 20};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && r.exit_status == 1, "exit %d", r.exit_status);
	cr_assert(strstr(r.err, "qcow2") && strstr(r.err, path), "%s", r.err);
	harness_result_free(&r);
	unlink(path);
}

Test(virtio_blk, drive_if_none_with_device_serial_and_queues)
{
	char path[64], drive[160];
	make_disk(path, 0);
	snprintf(drive, sizeof(drive), "if=none,id=hd0,file=%s,format=raw", path);
	const char *argv[] = {
	    "kvmini",	  "-kernel", harness_guest("virtio-blk"),
	    "-append",	  "blk=rw",  "-drive",
	    drive,	  "-device", "virtio-blk-pci,drive=hd0,num-queues=4,serial=SN-42",
	    "-nographic", NULL};
	struct harness_opts o = {.timeout_s = 60};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && r.exit_status == 0, "exit %d\n%s%s", r.exit_status, r.out, r.err);
	cr_assert(strstr(r.out, "virtio-blk: id SN-42"), "%s", r.out);
	cr_assert(file_has_pattern(path));
	harness_result_free(&r);
	unlink(path);
}

/* ---- the same guest over virtio-mmio: kvmini announces the window on the command line
 * (virtio_mmio.device=4K@0xfe000000:5) and the guest kit finds the disk there. ---- */

static void run_mmio(const char *const *extra, const char *mode, struct harness_result *r)
{
	char append[64];
	snprintf(append, sizeof(append), "blk=%s", mode);
	const char *argv[24] = {"kvmini",   "run", "--kernel", harness_guest("virtio-blk"),
				"--append", append};
	unsigned n = 6;
	for (unsigned i = 0; extra[i]; i++)
		argv[n++] = extra[i];
	argv[n++] = "-nographic";
	argv[n] = NULL;
	struct harness_opts o = {.timeout_s = 60};
	cr_assert_eq(harness_run(argv, &o, r), 0);
	cr_assert(r->exited && r->exit_status == 0, "exit %d\n%s%s", r->exit_status, r->out,
		  r->err);
	cr_assert(strstr(r->out, "virtio-blk: mmio 0xfe000000 capacity 2048 blk_size 512"), "%s",
		  r->out);
	cr_assert(strstr(r->out, "virtio-blk: OK"), "%s", r->out);
}

Test(virtio_blk, mmio_write_flush_read_back_and_read_past_end)
{
	char path[64], opt[128];
	make_disk(path, 0xee);
	snprintf(opt, sizeof(opt), "%s,id=mmiodisk", path);
	const char *extra[] = {"--disk", opt, "--virtio-transport", "mmio", NULL};
	struct harness_result r;
	run_mmio(extra, "rw", &r);
	expect_rw_done(&r, path, "mmiodisk");
	harness_result_free(&r);
	unlink(path);
}

Test(virtio_blk, mmio_read_only_disk_refuses_writes)
{
	char path[64], opt[128];
	make_disk(path, 0x5a);
	snprintf(opt, sizeof(opt), "file=%s,format=raw,if=none,id=d0,readonly=on", path);
	const char *extra[] = {"-drive", opt, "-device", "virtio-blk-device,drive=d0", NULL};
	struct harness_result r;
	run_mmio(extra, "ro", &r);
	cr_assert(strstr(r.out, "virtio-blk: write status 1"), "%s", r.out);
	uint8_t *b = malloc(DISK_SIZE);
	int fd = open(path, O_RDONLY);
	cr_assert_eq(read(fd, b, DISK_SIZE), DISK_SIZE);
	close(fd);
	for (unsigned i = 0; i < DISK_SIZE; i++)
		cr_assert_eq(b[i], 0x5a, "byte %u changed", i);
	free(b);
	harness_result_free(&r);
	unlink(path);
}

/* Each queue's block in the file: block i + 1 holds the pattern xor i. */
static void expect_mq_blocks(const char *path, unsigned nq)
{
	uint8_t b[BLOCK];
	int fd = open(path, O_RDONLY);
	cr_assert(fd >= 0);
	for (unsigned q = 0; q < nq; q++) {
		cr_assert_eq(pread(fd, b, BLOCK, (8 + 8ull * q) * 512), BLOCK);
		for (unsigned i = 0; i < BLOCK; i++)
			cr_assert_eq(b[i], (uint8_t)(((i * 13 + 7) & 0xff) ^ q),
				     "queue %u's block, byte %u", q, i);
	}
	close(fd);
}

/* virtio-mmio has QueueSel, so MQ works as on PCI: four queues, each used. */
Test(virtio_blk, mmio_four_queues_each_write_and_read)
{
	char path[64], opt[128];
	make_disk(path, 0);
	snprintf(opt, sizeof(opt), "%s,queues=4", path);
	const char *extra[] = {"--disk", opt, "--virtio-transport", "mmio", NULL};
	struct harness_result r;
	run_mmio(extra, "mq", &r);
	cr_assert(strstr(r.out, "virtio-blk: num_queues 4\n"), "%s", r.out);
	cr_assert(strstr(r.out, "virtio-blk: mq 4 queues used"), "%s", r.out);
	expect_mq_blocks(path, 4);
	harness_result_free(&r);
	unlink(path);
}

Test(virtio_blk, pci_four_queues_each_write_and_read)
{
	char path[64], drive[160];
	make_disk(path, 0);
	snprintf(drive, sizeof(drive), "if=none,id=hd0,file=%s,format=raw", path);
	const char *argv[] = {"kvmini",	    "-kernel", harness_guest("virtio-blk"),
			      "-append",    "blk=mq",  "-drive",
			      drive,	    "-device", "virtio-blk-pci,drive=hd0,num-queues=4",
			      "-nographic", NULL};
	struct harness_opts o = {.timeout_s = 60};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && r.exit_status == 0, "exit %d\n%s%s", r.exit_status, r.out, r.err);
	cr_assert(strstr(r.out, "virtio-blk: pci 00:01.0"), "%s", r.out);
	cr_assert(strstr(r.out, "virtio-blk: mq 4 queues used"), "%s", r.out);
	expect_mq_blocks(path, 4);
	harness_result_free(&r);
	unlink(path);
}
