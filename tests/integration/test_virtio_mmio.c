/* virtio-mmio and virtio-console end to end: the real kvmini with the guest kit's polling
 * ring-3 driver. The guest reads MagicValue/Version/DeviceID of the MMIO window, writes a
 * line to hvc0 that must appear on the port's backend, and echoes a line the test sends.
 * kvmini announces each MMIO device on the kernel command line. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return strdup("");
	static char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	return strdup(buf);
}

static void run(const char *const argv[], const struct harness_opts *o, struct harness_result *r)
{
	cr_assert_eq(harness_run(argv, o, r), 0, "cannot run %s", harness_kvmini());
	cr_assert_not(r->timed_out, "the guest did not finish:\nstdout:\n%s\nstderr:\n%s", r->out,
		      r->err);
	cr_assert(r->exited, "kvmini died of signal %d:\n%s", r->term_signal, r->err);
}

/* The console guest on an MMIO virtio-console whose backend is stdio, its serial port on
 * a file; returns the serial port's text. */
static char *console_guest(const char *const *opts, struct harness_result *r)
{
	char ser[] = "/tmp/kvmini-vcon-XXXXXX";
	int fd = mkstemp(ser);
	cr_assert_geq(fd, 0);
	close(fd);
	char serial_opt[64];
	snprintf(serial_opt, sizeof(serial_opt), "file:%s", ser);
	const char *argv[32] = {"kvmini",   "run",
				"--kernel", harness_guest("virtio-console"),
				"--append", "virtio=mmio"};
	unsigned n = 6;
	for (unsigned i = 0; opts[i]; i++)
		argv[n++] = opts[i];
	argv[n++] = "-serial";
	argv[n++] = serial_opt;
	argv[n] = NULL;
	struct harness_opts o = {
	    .timeout_s = 60,
	    .input = "hello over hvc0\n",
	    .input_after = "virtio-console: ready",
	};
	run(argv, &o, r);
	char *s = slurp(ser);
	unlink(ser);
	return s;
}

static void expect_console_works(const struct harness_result *r, const char *ser)
{
	cr_assert_eq(r->exit_status, 0, "exit %d\nstdout:\n%s\nstderr:\n%s\nserial:\n%s",
		     r->exit_status, r->out, r->err, ser);
	cr_assert(
	    strstr(ser, "virtio-console: mmio 0xfe000000 magic 0x74726976 version 2 device 3"),
	    "%s", ser);
	cr_assert(strstr(r->out, "hvc0: hello from the guest\n"), "%s", r->out);
	cr_assert(strstr(r->out, "hvc0 echo: hello over hvc0\n"), "%s", r->out);
	cr_assert(strstr(ser, "virtio-console: echoed 16 bytes"), "%s", ser);
	cr_assert(strstr(ser, "virtio-console: OK"), "%s", ser);
	/* The guest's hvc0 is on stdout, not its serial port, and nothing else is. */
	cr_assert_null(strstr(r->out, "virtio-console: OK"), "%s", r->out);
}

Test(virtio_mmio, console_virtio_on_mmio)
{
	const char *opts[] = {"--console", "virtio", "--virtio-transport", "mmio", NULL};
	struct harness_result r;
	char *ser = console_guest(opts, &r);
	expect_console_works(&r, ser);
	free(ser);
	harness_result_free(&r);
}

Test(virtio_mmio, qemu_virtconsole_spelling)
{
	const char *opts[] = {"-chardev", "stdio,id=con0",
			      "-device",  "virtio-serial-device",
			      "-device",  "virtconsole,chardev=con0",
			      NULL};
	struct harness_result r;
	char *ser = console_guest(opts, &r);
	expect_console_works(&r, ser);
	free(ser);
	harness_result_free(&r);
}

Test(virtio_mmio, console_output_to_a_file_backend)
{
	char out[] = "/tmp/kvmini-vcon-out-XXXXXX";
	int fd = mkstemp(out);
	cr_assert_geq(fd, 0);
	close(fd);
	char chardev[96];
	snprintf(chardev, sizeof(chardev), "file,id=c1,path=%s", out);
	/* No input on a file backend: the guest times out waiting for a line, but its
	 * greeting must be in the file by then. Stop it once the serial port says ready. */
	const char *argv[] = {"kvmini",	  "run",
			      "--kernel", harness_guest("virtio-console"),
			      "--append", "virtio=mmio",
			      "-chardev", chardev,
			      "-device",  "virtio-serial-device",
			      "-device",  "virtconsole,chardev=c1",
			      "-serial",  "stdio",
			      NULL};
	const char *stop[] = {"virtio-console: greeting sent", NULL};
	struct harness_opts o = {.timeout_s = 60, .stop_when = stop};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert_not(r.timed_out, "%s\n%s", r.out, r.err);
	char *text = NULL;
	for (int i = 0; i < 50; i++) {
		free(text);
		text = slurp(out);
		if (strstr(text, "virtio-console: ready"))
			break;
		usleep(100000);
	}
	cr_assert(strstr(text, "hvc0: hello from the guest\nvirtio-console: ready\n"),
		  "file holds: '%s'\nstdout:\n%s\nstderr:\n%s", text, r.out, r.err);
	free(text);
	unlink(out);
	harness_result_free(&r);
}

Test(virtio_mmio, devices_announced_on_the_command_line)
{
	const char *argv[] = {"kvmini",	  "run",
			      "--kernel", harness_guest("bootinfo"),
			      "--append", "quiet",
			      "-chardev", "null,id=n",
			      "-device",  "virtio-serial-device",
			      "-device",  "virtconsole,chardev=n",
			      NULL};
	struct harness_opts o = {.timeout_s = 30};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(strstr(r.out, "cmdline: quiet virtio_mmio.device=4K@0xfe000000:5\n"),
		  "stdout:\n%s\nstderr:\n%s", r.out, r.err);
	harness_result_free(&r);
	/* A command line that names the device already is left as it is. */
	const char *argv2[] = {"kvmini",
			       "run",
			       "--kernel",
			       harness_guest("bootinfo"),
			       "--append",
			       "virtio_mmio.device=4K@0xfe000000:7",
			       "-chardev",
			       "null,id=n",
			       "--virtio-transport",
			       "mmio",
			       "-device",
			       "virtio-serial",
			       "-device",
			       "virtconsole,chardev=n",
			       NULL};
	cr_assert_eq(harness_run(argv2, &o, &r), 0);
	cr_assert(strstr(r.out, "cmdline: virtio_mmio.device=4K@0xfe000000:7\n"), "%s", r.out);
	harness_result_free(&r);
}

static void expect_refused(const char *const argv[], const char *msg)
{
	struct harness_opts o = {.timeout_s = 20};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited);
	cr_assert_neq(r.exit_status, 0, "accepted: %s", r.err);
	cr_assert(strstr(r.err, msg), "stderr: %s", r.err);
	harness_result_free(&r);
}

Test(virtio_mmio, bad_options_refused)
{
	const char *a1[] = {"kvmini", "run", "--virtio-transport", "ccw", NULL};
	expect_refused(a1, "the transports are pci and mmio");
	const char *a2[] = {
	    "kvmini", "run", "-chardev", "null,id=c", "-device", "virtconsole,chardev=c", NULL};
	expect_refused(a2, "virtio-serial");
	const char *a3[] = {"kvmini",  "run",
			    "-device", "virtio-serial-device",
			    "-device", "virtconsole,chardev=nope",
			    NULL};
	expect_refused(a3, "no -chardev with id=nope");
	const char *a4[] = {"kvmini",
			    "run",
			    "--console",
			    "virtio",
			    "-serial",
			    "stdio",
			    "--virtio-transport",
			    "mmio",
			    "-serial",
			    "file:/dev/null",
			    NULL};
	expect_refused(a4, "stdio is used by a serial port and the virtio console");
}

/* virtio-rng (vpci's device) over MMIO, by both spellings: the kit's guest reads two
 * different 64-byte blocks. */
static void rng_guest(const char *const *opts)
{
	const char *argv[32] = {"kvmini",   "run",	  "--kernel", harness_guest("virtio-rng"),
				"--append", "virtio=mmio"};
	unsigned n = 6;
	for (unsigned i = 0; opts[i]; i++)
		argv[n++] = opts[i];
	argv[n] = NULL;
	struct harness_opts o = {.timeout_s = 60};
	struct harness_result r;
	run(argv, &o, &r);
	cr_assert_eq(r.exit_status, 0, "exit %d\nstdout:\n%s\nstderr:\n%s", r.exit_status, r.out,
		     r.err);
	cr_assert(strstr(r.out, "virtio-rng: mmio 0xfe000000 device 4"), "%s", r.out);
	cr_assert(strstr(r.out, "virtio-rng: OK"), "%s", r.out);
	harness_result_free(&r);
}

Test(virtio_mmio, rng_with_virtio_transport_mmio)
{
	const char *opts[] = {"--rng", "--virtio-transport", "mmio", NULL};
	rng_guest(opts);
}

Test(virtio_mmio, rng_virtio_rng_device)
{
	const char *opts[] = {"-device", "virtio-rng-device", NULL};
	rng_guest(opts);
}

/* Two MMIO devices: windows 0 and 1 on GSIs 5 and 6, both announced, in -device order. */
Test(virtio_mmio, second_device_gets_the_next_window)
{
	const char *argv2[] = {"kvmini",
			       "run",
			       "--kernel",
			       harness_guest("bootinfo"),
			       "--rng",
			       "-chardev",
			       "null,id=n",
			       "-device",
			       "virtio-serial-device",
			       "-device",
			       "virtconsole,chardev=n",
			       "--virtio-transport",
			       "mmio",
			       NULL};
	struct harness_opts o = {.timeout_s = 30};
	struct harness_result r;
	cr_assert_eq(harness_run(argv2, &o, &r), 0);
	cr_assert(strstr(r.out, "cmdline: virtio_mmio.device=4K@0xfe000000:5 "
				"virtio_mmio.device=4K@0xfe001000:6\n"),
		  "stdout:\n%s\nstderr:\n%s", r.out, r.err);
	harness_result_free(&r);
}

/* The same console guest over virtio-pci (vpci's transport), by --console virtio's default
 * and by -device virtio-serial-pci. */
static void console_pci(const char *const *opts)
{
	char ser[] = "/tmp/kvmini-vcon-XXXXXX";
	int fd = mkstemp(ser);
	cr_assert_geq(fd, 0);
	close(fd);
	char serial_opt[64];
	snprintf(serial_opt, sizeof(serial_opt), "file:%s", ser);
	const char *argv[32] = {"kvmini", "run", "--kernel", harness_guest("virtio-console")};
	unsigned n = 4;
	for (unsigned i = 0; opts[i]; i++)
		argv[n++] = opts[i];
	argv[n++] = "-serial";
	argv[n++] = serial_opt;
	argv[n] = NULL;
	struct harness_opts o = {
	    .timeout_s = 60, .input = "over pci\n", .input_after = "virtio-console: ready"};
	struct harness_result r;
	run(argv, &o, &r);
	char *s = slurp(ser);
	unlink(ser);
	cr_assert_eq(r.exit_status, 0, "exit %d\nstdout:\n%s\nstderr:\n%s\nserial:\n%s",
		     r.exit_status, r.out, r.err, s);
	cr_assert(strstr(s, "virtio-console: pci "), "%s", s);
	cr_assert(strstr(r.out, "hvc0: hello from the guest\n"), "%s", r.out);
	cr_assert(strstr(r.out, "hvc0 echo: over pci\n"), "%s", r.out);
	cr_assert(strstr(s, "virtio-console: OK"), "%s", s);
	free(s);
	harness_result_free(&r);
}

Test(virtio_mmio, console_virtio_on_pci_by_default)
{
	const char *opts[] = {"--console", "virtio", NULL};
	console_pci(opts);
}

Test(virtio_mmio, qemu_virtio_serial_pci)
{
	const char *opts[] = {"-chardev", "stdio,id=con0",
			      "-device",  "virtio-serial-pci",
			      "-device",  "virtconsole,chardev=con0",
			      NULL};
	console_pci(opts);
}
