/* Bad input gets one clear line on stderr and a non-zero exit: never a crash, never a hang,
 * never a VM that starts anyway. Each case runs the real binary. */
#include <criterion/criterion.h>
#include <elf.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "kernels.h"

/* Runs kvmini with argv and checks the failure contract; the one stderr line must contain
 * every word in `words` (NULL-terminated). */
static void bad_expect_failure(const char *const argv[], const char *const words[])
{
	struct harness_result r;
	struct harness_opts o = {.timeout_s = 20};
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert_not(r.timed_out, "kvmini hung; stderr: %s", r.err);
	cr_assert(r.exited, "kvmini died of signal %d; stderr: %s", r.term_signal, r.err);
	cr_assert_neq(r.exit_status, 0, "kvmini accepted bad input; stdout: %s", r.out);
	cr_assert_eq(harness_count(r.err, "\n"), 1, "expected exactly one error line, got: %s",
		     r.err);
	cr_assert(strncmp(r.err, "kvmini: ", 8) == 0, "error line lacks the prefix: %s", r.err);
	for (unsigned i = 0; words && words[i]; i++)
		cr_assert(strstr(r.err, words[i]), "error line lacks '%s': %s", words[i], r.err);
	cr_assert_eq(r.out_len, 0, "the guest must not have run; stdout: %s", r.out);
	harness_result_free(&r);
}

static char bad_tmpdir[256];

static void bad_setup(void)
{
	snprintf(bad_tmpdir, sizeof(bad_tmpdir), "/tmp/kvmini-bad-XXXXXX");
	cr_assert_not_null(mkdtemp(bad_tmpdir));
}

static void bad_teardown(void)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", bad_tmpdir);
	cr_assert_eq(system(cmd), 0);
}

/* Writes len bytes of data (or of the file src, from its start) to tmpdir/name. */
static const char *bad_write_file(const char *name, const void *data, size_t len)
{
	static char path[512];
	snprintf(path, sizeof(path), "%s/%s", bad_tmpdir, name);
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	fclose(f);
	return path;
}

static void *bad_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "cannot read %s", path);
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	void *buf = malloc(*len);
	cr_assert_eq(fread(buf, 1, *len, f), *len);
	fclose(f);
	return buf;
}

/* The unprivileged cases run a copy of kvmini in the (world-readable) temporary directory:
 * the build tree may sit below a directory the unprivileged user cannot enter. */
static void bad_use_public_copy_of_kvmini(void)
{
	static char copy[600];
	char cmd[2048];
	snprintf(copy, sizeof(copy), "%s/kvmini", bad_tmpdir);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod 0755 '%s' '%s'", harness_kvmini(), copy,
		 copy, bad_tmpdir);
	cr_assert_eq(system(cmd), 0, "cannot copy %s", harness_kvmini());
	setenv("KVMINI", copy, 1);
}

static char *bad_real_kernel(void)
{
	char *k = test_kernel_path("cloud-amd64");
	cr_assert_not_null(k, "no Debian kernel in kernels/: run scripts/fetch-kernels.sh");
	return k;
}

TestSuite(bad_input, .init = bad_setup, .fini = bad_teardown, .timeout = 60);

Test(bad_input, missing_kernel)
{
	const char *argv[] = {"kvmini", "run", "--kernel", "/nonexistent/bzImage", NULL};
	bad_expect_failure(argv, (const char *[]){"/nonexistent/bzImage", "No such file", NULL});
}

Test(bad_input, kernel_is_a_directory)
{
	const char *argv[] = {"kvmini", "run", "--kernel", "/tmp", NULL};
	bad_expect_failure(argv, (const char *[]){"not a regular file", NULL});
}

Test(bad_input, unreadable_kernel_as_unprivileged_user)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to run kvmini as an unprivileged user");
	const char *path = bad_write_file("secret", "x", 1);
	cr_assert_eq(chmod(path, 0), 0);
	bad_use_public_copy_of_kvmini();
	const char *argv[] = {"kvmini", "run", "--kernel", path, NULL};
	struct harness_result r;
	struct harness_opts o = {.timeout_s = 20, .run_as_user = "65534"};
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && r.exit_status != 0 && r.exit_status != 126, "status %d, err %s",
		  r.exit_status, r.err);
	cr_assert(strstr(r.err, "Permission denied"), "%s", r.err);
	cr_assert_eq(harness_count(r.err, "\n"), 1, "%s", r.err);
	harness_result_free(&r);
}

Test(bad_input, not_a_kernel)
{
	const char text[] = "#!/bin/sh\necho this is a shell script, not a kernel\n";
	const char *path = bad_write_file("script.sh", text, sizeof(text));
	const char *argv[] = {"kvmini", "run", "--kernel", path, NULL};
	bad_expect_failure(argv, (const char *[]){"neither a Linux bzImage nor an ELF", NULL});
}

Test(bad_input, empty_kernel)
{
	const char *path = bad_write_file("empty", "", 0);
	const char *argv[] = {"kvmini", "run", "--kernel", path, NULL};
	bad_expect_failure(argv, (const char *[]){"kernel", NULL});
}

Test(bad_input, truncated_bzimage)
{
	size_t len;
	char *k = bad_real_kernel();
	uint8_t *img = bad_read_file(k, &len);
	const char *path = bad_write_file("truncated", img, 64 * 1024);
	const char *argv[] = {"kvmini", "run", "--kernel", path, NULL};
	bad_expect_failure(argv, (const char *[]){"truncated", NULL});
	free(img);
	free(k);
}

Test(bad_input, too_old_boot_protocol)
{
	size_t len;
	char *k = bad_real_kernel();
	uint8_t *img = bad_read_file(k, &len);
	img[0x206] = 0x04; /* version 2.04 */
	img[0x207] = 0x02;
	const char *path = bad_write_file("old", img, len);
	const char *argv[] = {"kvmini", "run", "--kernel", path, NULL};
	bad_expect_failure(argv, (const char *[]){"2.04", NULL});
	free(img);
	free(k);
}

Test(bad_input, corrupt_payload_with_host_decompression)
{
	size_t len;
	char *k = bad_real_kernel();
	uint8_t *img = bad_read_file(k, &len);
	/* Keep the header, scramble the middle of the compressed payload. */
	for (size_t i = len / 2; i < len / 2 + 65536; i++)
		img[i] ^= 0x5a;
	const char *path = bad_write_file("corrupt", img, len);
	const char *argv[] = {"kvmini", "run", "--boot-decompress=host", "--kernel", path, NULL};
	bad_expect_failure(argv, (const char *[]){"lz4", NULL});
	free(img);
	free(k);
}

Test(bad_input, truncated_elf)
{
	size_t len;
	uint8_t *img = bad_read_file(harness_guest("hello"), &len);
	const char *path = bad_write_file("short.elf", img, 100);
	const char *argv[] = {"kvmini", "run", "--kernel", path, NULL};
	bad_expect_failure(argv, (const char *[]){"ELF", NULL});
	free(img);
}

Test(bad_input, kernel_larger_than_memory)
{
	char *k = bad_real_kernel();
	const char *argv[] = {"kvmini", "run", "--mem", "8M", "--kernel", k, NULL};
	bad_expect_failure(argv, (const char *[]){"--mem", NULL});
	free(k);
}

Test(bad_input, initrd_larger_than_memory)
{
	static uint8_t big[8 << 20];
	const char *initrd = bad_write_file("big.img", big, sizeof(big));
	const char *argv[] = {"kvmini",	  "run",  "--mem", "8M", "--kernel", harness_guest("hello"),
			      "--initrd", initrd, NULL};
	bad_expect_failure(argv, (const char *[]){"initrd", NULL});
}

/* A FIFO blocks open() until a writer comes: kvmini must refuse it at once. */
Test(bad_input, kernel_and_initrd_that_are_fifos)
{
	char fifo[512];
	snprintf(fifo, sizeof(fifo), "%s/fifo", bad_tmpdir);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	const char *argv[] = {"kvmini", "run", "--kernel", fifo, NULL};
	bad_expect_failure(argv, (const char *[]){fifo, "not a regular file (it is a FIFO)", NULL});
	const char *argv2[] = {"kvmini",   "run", "--kernel", harness_guest("hello"),
			       "--initrd", fifo,  NULL};
	bad_expect_failure(argv2, (const char *[]){"initrd", "it is a FIFO", NULL});
}

Test(bad_input, initrd_that_is_a_character_device)
{
	const char *argv[] = {"kvmini",	  "run",       "--kernel", harness_guest("hello"),
			      "--initrd", "/dev/zero", NULL};
	bad_expect_failure(argv, (const char *[]){"/dev/zero", "it is a character device", NULL});
}

/* 2 GB of zeros is judged by its header, not read first (it used to take 9.7 s and 2 GB). */
Test(bad_input, two_gigabytes_of_zeros_fail_fast)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/zeros", bad_tmpdir);
	int fd = open(path, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 2000000000), 0);
	close(fd);
	const char *argv[] = {"kvmini", "run", "--kernel", path, NULL};
	struct harness_result r;
	struct harness_opts o = {.timeout_s = 20};
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && r.exit_status != 0, "status %d", r.exit_status);
	cr_assert(strstr(r.err, "boot_flag"), "%s", r.err);
	cr_assert_lt(r.seconds, 1.0, "took %.2f s", r.seconds);
	struct rusage ru;
	getrusage(RUSAGE_CHILDREN, &ru);
	cr_assert_lt(ru.ru_maxrss >> 10, 64, "kvmini peaked at %ld MiB", ru.ru_maxrss >> 10);
	harness_result_free(&r);
}

/* A segment that holds code and lands on kvmini's page tables: one line naming both. */
Test(bad_input, elf_segment_over_the_boot_page_tables)
{
	size_t len;
	uint8_t *img = bad_read_file(harness_guest("hello-gnu-ld"), &len);
	Elf64_Ehdr eh;
	memcpy(&eh, img, sizeof(eh));
	Elf64_Phdr ph;
	memcpy(&ph, img + eh.e_phoff, sizeof(ph));
	cr_assert_eq(ph.p_paddr, 0xff000, "the header segment GNU ld makes");
	ph.p_paddr = ph.p_vaddr = 0x9000;
	ph.p_flags = PF_R | PF_X; /* no longer just headers: code */
	memcpy(img + eh.e_phoff, &ph, sizeof(ph));
	const char *path = bad_write_file("collide.elf", img, len);
	const char *argv[] = {"kvmini", "run", "--kernel", path, NULL};
	bad_expect_failure(
	    argv, (const char *[]){"segment 0 [0x9000-0x9",
				   "overlaps the identity-map page tables [0x9000-0xf000)", NULL});
	free(img);
}

Test(bad_input, missing_initrd)
{
	const char *argv[] = {"kvmini", "run", "--initrd", "/nonexistent/initrd.img", NULL};
	bad_expect_failure(argv, (const char *[]){"initrd", "No such file", NULL});
}

Test(bad_input, command_line_too_long)
{
	static char longline[5000];
	memset(longline, 'a', sizeof(longline) - 1);
	const char *argv[] = {"kvmini", "run", "--append", longline, NULL};
	bad_expect_failure(argv, (const char *[]){"command line", NULL});
}

Test(bad_input, mem_zero)
{
	const char *argv[] = {"kvmini", "run", "--mem", "0", NULL};
	bad_expect_failure(argv, (const char *[]){"--mem", NULL});
}

Test(bad_input, mem_absurd)
{
	const char *argv[] = {"kvmini", "run", "--mem", "99999999T", NULL};
	bad_expect_failure(argv, (const char *[]){"--mem", NULL});
}

Test(bad_input, mem_not_a_size)
{
	const char *argv[] = {"kvmini", "-m", "lots", NULL};
	bad_expect_failure(argv, (const char *[]){"lots", NULL});
}

Test(bad_input, cpus_zero)
{
	const char *argv[] = {"kvmini", "run", "--cpus", "0", NULL};
	bad_expect_failure(argv, (const char *[]){"--cpus", NULL});
}

Test(bad_input, cpus_thousand)
{
	const char *argv[] = {"kvmini", "-smp", "1000", NULL};
	bad_expect_failure(argv, (const char *[]){"1000", NULL});
}

Test(bad_input, unknown_option)
{
	const char *argv[] = {"kvmini", "run", "--frobnicate", NULL};
	bad_expect_failure(argv, (const char *[]){"--frobnicate", NULL});
}

Test(bad_input, unsupported_qemu_option_is_named)
{
	const char *argv[] = {"kvmini", "-m", "128", "-hda", "disk.img", NULL};
	bad_expect_failure(argv, (const char *[]){"-hda", "--disk", NULL});
}

Test(bad_input, unknown_command)
{
	const char *argv[] = {"kvmini", "boot", NULL};
	bad_expect_failure(argv, (const char *[]){"boot", NULL});
}

Test(bad_input, no_kvm_device)
{
	setenv("KVMINI_KVM_DEVICE", "/nonexistent/kvm", 1);
	const char *argv[] = {"kvmini", "run", NULL};
	bad_expect_failure(argv, (const char *[]){"/nonexistent/kvm", "No such file", NULL});
}

Test(bad_input, no_permission_on_kvm_device)
{
	const char *argv[] = {"kvmini", "run", NULL};
	struct harness_result r;
	struct harness_opts o = {.timeout_s = 20, .run_as_user = "65534"};
	struct stat st;
	if (geteuid() != 0)
		cr_skip_test("needs root to run kvmini as an unprivileged user");
	cr_assert_eq(stat("/dev/kvm", &st), 0);
	if (st.st_mode & S_IROTH && st.st_mode & S_IWOTH)
		cr_skip_test("/dev/kvm is world-accessible here; nothing to refuse");
	bad_use_public_copy_of_kvmini();
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && r.exit_status != 0 && r.exit_status != 126, "status %d err %s",
		  r.exit_status, r.err);
	cr_assert(strstr(r.err, "/dev/kvm") && strstr(r.err, "Permission denied"), "%s", r.err);
	cr_assert_eq(harness_count(r.err, "\n"), 1, "%s", r.err);
	cr_assert_eq(r.out_len, 0);
	harness_result_free(&r);
}

Test(bad_input, console_file_in_missing_directory)
{
	const char *argv[] = {"kvmini", "run", "--console", "file:/nonexistent/dir/log", NULL};
	bad_expect_failure(argv, (const char *[]){"/nonexistent/dir/log", NULL});
}

Test(bad_input, hugepages_without_reservation)
{
	/* Ask for one 2 MiB page more than the pool has free, whatever is reserved here. */
	FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "r");
	long n = 0;
	if (f) {
		if (fscanf(f, "%ld", &n) != 1)
			n = 0;
		fclose(f);
	}
	char mem[32];
	snprintf(mem, sizeof(mem), "%ldM", (n + 1) * 2);
	const char *argv[] = {"kvmini", "run", "--hugepages", "--mem", mem, NULL};
	bad_expect_failure(argv, (const char *[]){"nr_hugepages", NULL});
}

Test(bad_input, cpu_affinity_to_missing_host_cpu)
{
	const char *argv[] = {"kvmini", "run", "--cpu-affinity", "0=1000", NULL};
	bad_expect_failure(argv, (const char *[]){"vCPU 0", NULL});
}
