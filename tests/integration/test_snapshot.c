/* Snapshot and restore end to end: a counting guest is snapshotted in the middle (in
 * process, with vm_snapshot_save), then restored into new kvmini processes with --restore
 * and -incoming file:PATH. The restored guest continues where it was: its ticks go on from
 * the snapshot's, it never boots again, and two clones of one snapshot both run. Damaged
 * and mismatched snapshots are refused with one line and exit status 1. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "util/file.h"
#include "vmm/snapshot.h"
#include "vmm/vm.h"

TestSuite(snapshot, .timeout = 120);

static void sleep_ms(long ms)
{
	struct timespec t = {ms / 1000, (ms % 1000) * 1000000};
	nanosleep(&t, NULL);
}

/* The highest "count: tick N" in [buf, buf+n). */
static unsigned long last_tick(const char *buf, size_t n)
{
	unsigned long best = 0;
	static const char tag[] = "count: tick ";
	for (const char *p = buf; (p = memmem(p, n - (size_t)(p - buf), tag, sizeof(tag) - 1));
	     p++) {
		char num[16] = {0};
		size_t left = n - (size_t)(p - buf) - (sizeof(tag) - 1);
		memcpy(num, p + sizeof(tag) - 1, left < 15 ? left : 15);
		unsigned long v = strtoul(num, NULL, 10);
		if (v > best)
			best = v;
	}
	return best;
}

static unsigned long console_tick(const char *path)
{
	uint8_t *text;
	size_t n;
	struct errbuf e;
	if (read_whole_file(path, "console", &text, &n, &e) < 0)
		return 0;
	unsigned long t = last_tick((const char *)text, n);
	free(text);
	return t;
}

static char snap_path[128];
static unsigned long snap_tick;
/* What the guest printed before the snapshot (NUL-terminated). */
static char *snap_console;
static size_t snap_console_len;

static bool console_has(const char *path, const char *needle)
{
	uint8_t *text;
	size_t n;
	struct errbuf e;
	if (read_whole_file(path, "console", &text, &n, &e) < 0)
		return false;
	bool found = memmem(text, n, needle, strlen(needle)) != NULL;
	free(text);
	return found;
}

struct runner {
	struct vm vm;
	int ret, status;
	struct errbuf e;
};

static void *run_vm(void *arg)
{
	struct runner *r = arg;
	r->ret = vm_run(&r->vm, &r->status, &r->e);
	return NULL;
}

/* Runs guest in this process with ncpus, snapshots it once its console shows wait (left
 * paused, so the console then holds what was printed before the snapshot), stops it. */
static void make_snapshot_with(const char *guest, unsigned ncpus, const char *wait,
			       const char *const *opts);

static void make_snapshot_of(const char *guest, unsigned ncpus, const char *wait)
{
	make_snapshot_with(guest, ncpus, wait, (const char *const[]){NULL});
}

/* opts: more `kvmini run` options (NULL-terminated), e.g. a disk. */
static void make_snapshot_with(const char *guest, unsigned ncpus, const char *wait,
			       const char *const *opts)
{
	struct vm_config cfg;
	static struct runner r;
	uint8_t *kernel;
	size_t kernel_size;
	struct errbuf e = {{0}};
	char console[128];
	snprintf(console, sizeof(console), "/tmp/kvmini-snapcon-%d", getpid());
	snprintf(snap_path, sizeof(snap_path), "/tmp/kvmini-snap-%d.kvs", getpid());
	cr_assert_eq(read_whole_file(harness_guest(guest), "guest", &kernel, &kernel_size, &e), 0,
		     "%s", e.msg);
	config_init(&cfg);
	char *args[16];
	int nargs = 0;
	for (; opts[nargs]; nargs++)
		args[nargs] = (char *)opts[nargs];
	cr_assert_eq(config_parse_run(&cfg, nargs, args, &e), 0, "%s", e.msg);
	cfg.serial[0].backend = CHARDEV_FILE;
	cfg.serial[0].path = console;
	cfg.ncpus = ncpus;
	cfg.mem_size = 64ull << 20;
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	memset(&r, 0, sizeof(r));
	cr_assert_eq(vm_create(&r.vm, &cfg, &start, kernel, kernel_size, guest, -1, 0, &e), 0, "%s",
		     e.msg);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, run_vm, &r), 0);
	for (int i = 0; i < 3000 && !console_has(console, wait); i++)
		sleep_ms(10);
	cr_assert(console_has(console, wait), "the %s guest never printed %s (vm_run: %d %s)",
		  guest, wait, r.ret, r.e.msg);
	/* Without the flag a running VM runs on after the save; with it, it stays paused;
	 * a paused VM stays paused either way. Each save replaces the file. */
	const struct vm_control *c = &r.vm.control;
	cr_assert_eq(vm_snapshot_save(&r.vm, snap_path, 0, &e), 0, "%s", e.msg);
	cr_assert_eq(c->ops->status(c->opaque), VM_STATUS_RUNNING);
	cr_assert_eq(vm_snapshot_save(&r.vm, snap_path, SNAPSHOT_LEAVE_PAUSED, &e), 0, "%s", e.msg);
	cr_assert_eq(c->ops->status(c->opaque), VM_STATUS_PAUSED);
	sleep_ms(300); /* the console's writer drains what the guest printed before */
	cr_assert_eq(vm_snapshot_save(&r.vm, snap_path, 0, &e), 0, "%s", e.msg);
	cr_assert_eq(c->ops->status(c->opaque), VM_STATUS_PAUSED);
	snap_tick = console_tick(console);
	free(snap_console);
	uint8_t *text;
	cr_assert_eq(read_whole_file(console, "console", &text, &snap_console_len, &e), 0);
	snap_console = realloc(text, snap_console_len + 1);
	snap_console[snap_console_len] = 0;
	cr_assert_eq(vm_snapshot_restore_check(&r.vm, snap_path, &e), 0, "%s", e.msg);
	power_request_stop(&r.vm.power, STOP_QUIT, 0);
	pthread_join(t, NULL);
	cr_assert_eq(r.ret, 0, "%s", r.e.msg);
	vm_destroy(&r.vm);
	config_free(&cfg);
	free(kernel);
	unlink(console);
}

static void make_snapshot(unsigned ncpus)
{
	make_snapshot_of("count", ncpus, "count: tick 3\n");
}

/* A restored run: stops once it has printed two ticks past the snapshot's. */
static void run_restored(const char *flag, const char *cpus, struct harness_result *res)
{
	char want[48], incoming[160];
	snprintf(want, sizeof(want), "count: tick %lu", snap_tick + 2);
	const char *stop[] = {want, NULL};
	const char *path = snap_path;
	if (!strcmp(flag, "-incoming")) {
		snprintf(incoming, sizeof(incoming), "file:%s", snap_path);
		path = incoming;
	}
	const char *argv[] = {"kvmini", "run", flag,	path,  "--kernel", harness_guest("count"),
			      "--cpus", cpus,  "--mem", "64M", NULL};
	cr_assert_eq(
	    harness_run(argv, &(struct harness_opts){.timeout_s = 30, .stop_when = stop}, res), 0);
}

static void assert_continues(struct harness_result *res)
{
	cr_assert_not(res->timed_out, "no tick %lu after restore:\nstdout:\n%s\nstderr:\n%s",
		      snap_tick + 2, res->out, res->err);
	char next[48];
	snprintf(next, sizeof(next), "count: tick %lu\n", snap_tick + 1);
	cr_assert(strstr(res->out, next), "tick %lu follows the snapshot's:\n%s", snap_tick + 1,
		  res->out);
	/* It did not boot again: no start-up line and no tick from before the snapshot. */
	cr_assert_null(strstr(res->out, "counters at"), "%s", res->out);
	cr_assert_null(strstr(res->out, "count: tick 1\n"), "%s", res->out);
	char old[48];
	snprintf(old, sizeof(old), "count: tick %lu\n", snap_tick);
	cr_assert_null(strstr(res->out, old), "%s", res->out);
}

Test(snapshot, restore_in_a_new_process_continues_the_ticks)
{
	make_snapshot(2);
	struct stat st;
	cr_assert_eq(stat(snap_path, &st), 0);
	/* Sparse: of 64 MiB of RAM only the pages the guest and loader touched are stored. */
	cr_assert_lt((uint64_t)st.st_blocks * 512, 8ull << 20, "%llu bytes allocated",
		     (unsigned long long)st.st_blocks * 512);
	struct harness_result res;
	run_restored("--restore", "2", &res);
	assert_continues(&res);
	harness_result_free(&res);
	run_restored("-incoming", "2", &res);
	assert_continues(&res);
	harness_result_free(&res);
	unlink(snap_path);
}

struct clone {
	struct harness_result res;
};

static void *run_clone(void *arg)
{
	struct clone *c = arg;
	run_restored("--restore", "1", &c->res);
	return NULL;
}

Test(snapshot, two_clones_of_one_snapshot_both_continue)
{
	make_snapshot(1);
	struct clone a, b;
	pthread_t ta, tb;
	cr_assert_eq(pthread_create(&ta, NULL, run_clone, &a), 0);
	cr_assert_eq(pthread_create(&tb, NULL, run_clone, &b), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	assert_continues(&a.res);
	assert_continues(&b.res);
	harness_result_free(&a.res);
	harness_result_free(&b.res);
	unlink(snap_path);
}

/* kvmini run --restore on a damaged copy: exit 1, one line on stderr containing want. */
static void assert_refused(const char *file, const char *cpus, const char *want)
{
	const char *argv[] = {
	    "kvmini", "run", "--restore", file,	 "--kernel", harness_guest("count"),
	    "--cpus", cpus,  "--mem",	  "64M", NULL};
	struct harness_result res;
	cr_assert_eq(harness_run(argv, &(struct harness_opts){.timeout_s = 20}, &res), 0);
	cr_assert(res.exited && res.exit_status == 1, "exit %d\n%s\n%s", res.exit_status, res.out,
		  res.err);
	cr_assert(strstr(res.err, want), "want \"%s\" in:\n%s", want, res.err);
	cr_assert_eq(harness_count(res.err, "\n"), 1, "one line:\n%s", res.err);
	cr_assert_null(strstr(res.out, "count:"), "the guest ran:\n%s", res.out);
	harness_result_free(&res);
}

static void copy_file(const char *from, const char *to, off_t len)
{
	uint8_t *data;
	size_t n;
	struct errbuf e;
	cr_assert_eq(read_whole_file(from, "snapshot", &data, &n, &e), 0, "%s", e.msg);
	int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	size_t want = len < 0 ? n : (size_t)len;
	cr_assert_eq(write(fd, data, want), (ssize_t)want);
	close(fd);
	free(data);
}

Test(snapshot, damaged_and_mismatched_snapshots_are_refused_with_one_line)
{
	make_snapshot(2);
	char bad[160];
	snprintf(bad, sizeof(bad), "%s.bad", snap_path);
	assert_refused(snap_path, "1", "snapshot has 2 vCPUs, this VM has 1");

	struct stat st;
	cr_assert_eq(stat(snap_path, &st), 0);
	copy_file(snap_path, bad, st.st_size / 2);
	assert_refused(bad, "2", "truncated");
	copy_file(snap_path, bad, st.st_size - 1);
	assert_refused(bad, "2", "truncated");

	copy_file(snap_path, bad, -1);
	int fd = open(bad, O_RDWR);
	uint8_t b;
	cr_assert_eq(pread(fd, &b, 1, 32 + 24 + 9), 1); /* in the config section */
	b ^= 0x10;
	cr_assert_eq(pwrite(fd, &b, 1, 32 + 24 + 9), 1);
	close(fd);
	assert_refused(bad, "2", "CRC mismatch");

	fd = open(bad, O_WRONLY | O_TRUNC);
	cr_assert_eq(write(fd, "this is not a snapshot at all, not even close\n", 46), 46);
	close(fd);
	assert_refused(bad, "2", "not a kvmini snapshot");
	assert_refused("/nonexistent/snap", "2", "cannot open snapshot");
	unlink(bad);
	unlink(snap_path);
}

/* The ring-3 checksum guest is deterministic: what it printed before the snapshot plus
 * what the restored process prints is byte for byte what an uninterrupted run prints. */
Test(snapshot, restored_checksum_sequence_equals_an_uninterrupted_run)
{
	const char *ref_argv[] = {"kvmini", "run", "--kernel", harness_guest("checksum"),
				  "--mem",  "64M", NULL};
	struct harness_result ref;
	cr_assert_eq(harness_run(ref_argv, &(struct harness_opts){.timeout_s = 60}, &ref), 0);
	cr_assert(ref.exited && ref.exit_status == 0, "%s\n%s", ref.out, ref.err);
	cr_assert(strstr(ref.out, "checksum: step 200 "), "%s", ref.out);

	make_snapshot_of("checksum", 1, "checksum: step 40 ");
	cr_assert_null(strstr(snap_console, "checksum: step 200 "), "snapshot after the end");
	const char *argv[] = {"kvmini",	 "run",	     "--restore",
			      snap_path, "--kernel", harness_guest("checksum"),
			      "--mem",	 "64M",	     NULL};
	struct harness_result res;
	cr_assert_eq(harness_run(argv, &(struct harness_opts){.timeout_s = 60}, &res), 0);
	cr_assert(res.exited && res.exit_status == 0, "exit %d\n%s", res.exit_status, res.err);
	cr_assert_null(strstr(res.out, "checksum: start"), "booted again:\n%s", res.out);
	size_t n = snap_console_len + res.out_len;
	char *joined = malloc(n + 1);
	memcpy(joined, snap_console, snap_console_len);
	memcpy(joined + snap_console_len, res.out, res.out_len + 1);
	cr_assert_eq(n, ref.out_len, "before + after the snapshot: %zu bytes, uninterrupted %zu", n,
		     ref.out_len);
	cr_assert_eq(memcmp(joined, ref.out, n), 0, "joined:\n%s\nuninterrupted:\n%s", joined,
		     ref.out);
	free(joined);
	harness_result_free(&res);
	harness_result_free(&ref);
	unlink(snap_path);
}

/* A virtio-blk guest in the middle of 1000000 random reads at queue depth 32: restored,
 * its device runs again (queues, worker, notifications) and every read completes. */
Test(snapshot, restored_virtio_blk_guest_finishes_its_reads)
{
	char disk[64], opt[96];
	snprintf(disk, sizeof(disk), "/tmp/kvmini-snapdisk-%d", getpid());
	int fd = open(disk, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 64 << 20), 0);
	close(fd);
	snprintf(opt, sizeof(opt), "%s,ro", disk);
	const char *append = "blk=bench n=1000000 qd=32";
	make_snapshot_with("virtio-blk", 1, "virtio-blk: pci ",
			   (const char *const[]){"--disk", opt, "--append", append, NULL});
	cr_assert_null(strstr(snap_console, "reads of 4096 bytes"), "snapshot after the reads:\n%s",
		       snap_console);
	const char *argv[] = {
	    "kvmini", "run", "--restore", snap_path, "--kernel", harness_guest("virtio-blk"),
	    "--mem",  "64M", "--disk",	  opt,	     "--append", append,
	    NULL};
	struct harness_result res;
	cr_assert_eq(harness_run(argv, &(struct harness_opts){.timeout_s = 60}, &res), 0);
	cr_assert(strstr(res.out, "bench qd 32: 1000000 reads"), "stdout:\n%s\nstderr:\n%s",
		  res.out, res.err);
	cr_assert(strstr(res.out, "virtio-blk: OK"), "%s", res.out);
	harness_result_free(&res);
	unlink(snap_path);
	unlink(disk);
}

/* The highest "virtio-blk: round N ok" in text, or 0. */
static unsigned long last_round(const char *text)
{
	unsigned long best = 0;
	for (const char *p = text; (p = strstr(p, "virtio-blk: round ")); p++) {
		unsigned long v = strtoul(p + strlen("virtio-blk: round "), NULL, 10);
		if (v > best)
			best = v;
	}
	return best;
}

/* A virtio-blk guest writing, flushing and reading back rounds of blocks at queue depth 32
 * is snapshotted with writes in flight (the pause answers them first); restored, it goes on
 * from the next round, every read-back matches, and the host file holds the last round. */
Test(snapshot, virtio_blk_writes_in_flight_survive_and_disk_and_guest_agree)
{
	enum { ROUNDS = 40, BLOCKS = 256 };
	char disk[64], append[96];
	snprintf(disk, sizeof(disk), "/tmp/kvmini-snapwdisk-%d", getpid());
	int fd = open(disk, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 4 << 20), 0);
	close(fd);
	snprintf(append, sizeof(append), "blk=writer rounds=%d blocks=%d", ROUNDS, BLOCKS);
	make_snapshot_with("virtio-blk", 1, "virtio-blk: round 3 ok",
			   (const char *const[]){"--disk", disk, "--append", append, NULL});
	unsigned long saved = last_round(snap_console);
	cr_assert(saved >= 3 && saved < ROUNDS, "snapshot at round %lu:\n%s", saved, snap_console);
	const char *argv[] = {
	    "kvmini", "run", "--restore", snap_path, "--kernel", harness_guest("virtio-blk"),
	    "--mem",  "64M", "--disk",	  disk,	     "--append", append,
	    NULL};
	struct harness_result res;
	cr_assert_eq(harness_run(argv, &(struct harness_opts){.timeout_s = 60}, &res), 0);
	cr_assert_null(strstr(res.out, "FAIL"), "stdout:\n%s\nstderr:\n%s", res.out, res.err);
	cr_assert(strstr(res.out, "virtio-blk: OK"), "stdout:\n%s\nstderr:\n%s", res.out, res.err);
	/* Before and after the snapshot, joined (a line may be cut by it): every round once,
	 * in order: the restored guest went on where the snapshot left it. */
	size_t jn = snap_console_len + res.out_len;
	char *joined = malloc(jn + 1);
	memcpy(joined, snap_console, snap_console_len);
	memcpy(joined + snap_console_len, res.out, res.out_len);
	joined[jn] = 0;
	unsigned long want = 1;
	for (const char *p = joined; (p = strstr(p, "virtio-blk: round ")); p++, want++)
		cr_assert_eq(strtoul(p + strlen("virtio-blk: round "), NULL, 10), want,
			     "round %lu out of order:\n%s", want, joined);
	cr_assert_eq(want, ROUNDS + 1, "%s", joined);
	free(joined);
	cr_assert_eq(last_round(res.out), ROUNDS);
	fd = open(disk, O_RDONLY);
	cr_assert_geq(fd, 0);
	static uint8_t block[4096];
	for (unsigned k = 0; k < BLOCKS; k++) {
		cr_assert_eq(pread(fd, block, sizeof(block), (off_t)k * 4096), 4096);
		for (unsigned i = 0; i < 4096; i++)
			cr_assert_eq(block[i], (uint8_t)((i * 13 + k * 7 + ROUNDS * 31) & 0xff),
				     "block %u byte %u of the host file", k, i);
	}
	close(fd);
	harness_result_free(&res);
	unlink(snap_path);
	unlink(disk);
}
