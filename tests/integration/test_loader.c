/* The loader against what users hand it: ELF kernels as GNU ld lays them out by default,
 * and big inputs, which must cost what they are (the initrd read straight into guest RAM,
 * the kernel mapped and judged by its first pages). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <asm/bootparam.h>
#include <zstd.h>

#include "harness.h"

/* Boots a hello guest with -v; `skipped` is whether kvmini must say it left a header/note
 * segment out. */
static void loader_boot_hello(const char *guest, const char *mem, bool skipped)
{
	const char *argv[] = {"kvmini", "run", "-v", "--mem", mem, "--kernel", harness_guest(guest),
			      NULL};
	struct harness_result r;
	struct harness_opts o = {.timeout_s = 30};
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && !r.timed_out, "kvmini did not finish; stderr: %s", r.err);
	cr_assert_eq(r.exit_status, 0, "exit %d; stderr: %s", r.exit_status, r.err);
	cr_assert(strstr(r.out, "Hello from the kvmini test guest"), "stdout: %s", r.out);
	cr_assert_eq(strstr(r.err, "holds only ELF headers or notes; not loaded") != NULL, skipped,
		     "stderr: %s", r.err);
	harness_result_free(&r);
}

TestSuite(loader, .timeout = 60);

/* ELF header in a read-only PT_LOAD at 0xff000, build-id note in a PT_LOAD at 4 MiB. */
Test(loader, gnu_ld_default_layout_boots)
{
	loader_boot_hello("hello-gnu-ld", "64M", false);
}

/* The note's PT_LOAD at 0x08048000 is past the end of a 64 MiB guest: skipped. */
Test(loader, gnu_ld_note_segment_beyond_ram_boots)
{
	loader_boot_hello("hello-gnu-ld-high-note", "64M", true);
	loader_boot_hello("hello-gnu-ld-high-note", "256M", false); /* fits: loaded, as QEMU */
}

static long loader_children_maxrss_mib(void)
{
	struct rusage ru;
	getrusage(RUSAGE_CHILDREN, &ru);
	return ru.ru_maxrss >> 10;
}

/* A 96 MiB initrd costs its 96 MiB of guest RAM, not a second copy on kvmini's heap. */
Test(loader, initrd_goes_straight_into_guest_ram)
{
	char path[] = "/tmp/kvmini-initrd-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	const size_t n = 96u << 20;
	static uint8_t chunk[1 << 20];
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (uint8_t)(i * 13 + 1);
	for (size_t done = 0; done < n; done += sizeof(chunk))
		cr_assert_eq(write(fd, chunk, sizeof(chunk)), (ssize_t)sizeof(chunk));
	close(fd);
	const char *argv[] = {"kvmini",	  "run",      "--mem",
			      "256M",	  "--kernel", harness_guest("hello"),
			      "--initrd", path,	      NULL};
	struct harness_result r;
	struct harness_opts o = {.timeout_s = 30};
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	unlink(path);
	cr_assert(r.exited && r.exit_status == 0, "exit %d; stderr: %s", r.exit_status, r.err);
	long rss = loader_children_maxrss_mib();
	cr_assert_lt(rss, 96 + 40, "kvmini peaked at %ld MiB for a 96 MiB initrd", rss);
	harness_result_free(&r);
}

/* A bzImage whose 20 KiB zstd payload claims a 1 GiB window and unpacks to 400 MiB: with
 * 64 MiB of guest RAM that is an error naming --mem, reached without kvmini's memory
 * growing past the guest's size (it used to reach 1 GiB, then hand the payload to the
 * guest's decompressor). */
Test(loader, zstd_bomb_is_an_error_with_bounded_memory)
{
	const size_t n = 400u << 20;
	uint8_t *zeros = calloc(1, n);
	size_t cap = ZSTD_compressBound(n);
	uint8_t *z = malloc(cap);
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	cr_assert(zeros && z && cc);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, 30);
	size_t zlen = ZSTD_compress2(cc, z, cap, zeros, n);
	cr_assert(!ZSTD_isError(zlen));
	ZSTD_freeCCtx(cc);
	free(zeros);

	const size_t setup = 5 * 512, poff = 0x100, ksize = (poff + zlen + 15) & ~(size_t)15;
	uint8_t *img = calloc(1, setup + ksize);
	struct setup_header h = {.setup_sects = 4,
				 .syssize = (uint32_t)(ksize / 16),
				 .boot_flag = 0xaa55,
				 .header = 0x53726448,
				 .version = 0x020f,
				 .loadflags = LOADED_HIGH,
				 .kernel_alignment = 0x200000,
				 .xloadflags = XLF_KERNEL_64,
				 .cmdline_size = 2047,
				 .payload_offset = (uint32_t)poff,
				 .payload_length = (uint32_t)zlen,
				 .pref_address = 0x1000000,
				 .init_size = 0x1000000};
	memcpy(img + 0x1f1, &h, sizeof(h));
	memcpy(img + setup + poff, z, zlen);
	free(z);
	char path[] = "/tmp/kvmini-bomb-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, img, setup + ksize), (ssize_t)(setup + ksize));
	close(fd);
	free(img);

	const char *argv[] = {"kvmini", "run", "--mem", "64M", "--kernel", path, NULL};
	struct harness_result r;
	struct harness_opts o = {.timeout_s = 30};
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	unlink(path);
	cr_assert(r.exited && r.exit_status == 1, "exit %d; stderr: %s", r.exit_status, r.err);
	cr_assert(strstr(r.err, "more than the 64 MiB of guest RAM") && strstr(r.err, "--mem"),
		  "%s", r.err);
	cr_assert_null(strstr(r.err, "falling back"), "%s", r.err);
	long rss = loader_children_maxrss_mib();
	cr_assert_lt(rss, 64 + 40, "kvmini peaked at %ld MiB", rss);
	harness_result_free(&r);
}

/* A guest reset loads the kernel and initrd again from what main.c keeps open (the kernel
 * mapping, the initrd fd): with an initrd, every boot of the reboot guest comes up. */
Test(loader, reboot_reloads_the_kernel_and_initrd_from_the_kept_files)
{
	char path[] = "/tmp/kvmini-initrd-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	static uint8_t chunk[1 << 20];
	memset(chunk, 0xa5, sizeof(chunk));
	cr_assert_eq(write(fd, chunk, sizeof(chunk)), (ssize_t)sizeof(chunk));
	close(fd);
	const char *argv[] = {
	    "kvmini",	"run", "-v",	   "--mem",	"64M", "--kernel", harness_guest("reboot"),
	    "--initrd", path,  "--append", "reset=kbd", NULL};
	struct harness_result r;
	struct harness_opts o = {.timeout_s = 40};
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	unlink(path);
	cr_assert(r.exited && r.exit_status == 0, "exit %d; stdout: %s; stderr: %s", r.exit_status,
		  r.out, r.err);
	cr_assert(strstr(r.out, "reboot: 3 boots OK"), "%s", r.out);
	cr_assert_geq(harness_count(r.err, "initrd: 1048576 bytes at"), 1, "%s", r.err);
	harness_result_free(&r);
}
