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

#include "harness.h"

static void loader_boot_hello(const char *guest, const char *mem)
{
	const char *argv[] = {"kvmini", "run", "--mem", mem, "--kernel", harness_guest(guest),
			      NULL};
	struct harness_result r;
	struct harness_opts o = {.timeout_s = 30};
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && !r.timed_out, "kvmini did not finish; stderr: %s", r.err);
	cr_assert_eq(r.exit_status, 0, "exit %d; stderr: %s", r.exit_status, r.err);
	cr_assert(strstr(r.out, "Hello from the kvmini test guest"), "stdout: %s", r.out);
	harness_result_free(&r);
}

TestSuite(loader, .timeout = 60);

/* ELF header in a read-only PT_LOAD at 0xff000, build-id note in a PT_LOAD at 4 MiB. */
Test(loader, gnu_ld_default_layout_boots)
{
	loader_boot_hello("hello-gnu-ld", "64M");
}

/* The note's PT_LOAD at 0x08048000 is past the end of a 64 MiB guest: skipped. */
Test(loader, gnu_ld_note_segment_beyond_ram_boots)
{
	loader_boot_hello("hello-gnu-ld-high-note", "64M");
	loader_boot_hello("hello-gnu-ld-high-note", "256M");
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
