/* QEMU spellings seen through their effect on a real guest: where isa-debug-exit answers
 * after -device moves it, the RAM a fractional -m gives, what -nodefaults leaves, and the
 * one-line refusals of what kvmini lacks. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

TestSuite(qemu_options, .timeout = 60);

static void opt_run(const char *const argv[], struct harness_result *r)
{
	struct harness_opts o = {.timeout_s = 30};

	cr_assert_eq(harness_run(argv, &o, r), 0, "cannot run %s", harness_kvmini());
	cr_assert_not(r->timed_out, "kvmini did not finish:\nstdout:\n%s\nstderr:\n%s", r->out,
		      r->err);
	cr_assert(r->exited, "kvmini died of signal %d:\n%s", r->term_signal, r->err);
}

/* Boots portout writing value (width bytes) to port, with one -device; returns the status. */
static int opt_portout(const char *device, const char *port, const char *value, const char *width,
		       struct harness_result *r)
{
	char cmdline[128];
	const char *argv[] = {"kvmini",	 "-kernel", harness_guest("portout"),
			      "-append", cmdline,   "-device",
			      device,	 NULL};

	snprintf(cmdline, sizeof(cmdline), "port=%s value=%s width=%s", port, value, width);
	opt_run(argv, r);
	cr_assert(strstr(r->out, "portout: writing"), "the guest did not run:\n%s\n%s", r->out,
		  r->err);
	return r->exit_status;
}

Test(qemu_options, debug_exit_at_qemu_default_ports)
{
	struct harness_result r;

	/* iobase 0x501, iosize 2: the last port, 0x502, ends the VM with (3 << 1) | 1. */
	cr_assert_eq(opt_portout("isa-debug-exit", "0x502", "3", "1", &r), 7, "stdout:\n%s\n%s",
		     r.out, r.err);
	harness_result_free(&r);
}

Test(qemu_options, debug_exit_moved_away_from_f4)
{
	struct harness_result r;

	/* kvmini's own 0xf4 is gone: the write falls on an empty bus and the guest powers off. */
	cr_assert_eq(opt_portout("isa-debug-exit,iobase=0x501,iosize=2", "0xf4", "3", "4", &r), 0,
		     "stdout:\n%s\n%s", r.out, r.err);
	cr_assert(strstr(r.out, "portout: nothing stopped the VM"), "%s", r.out);
	harness_result_free(&r);
	/* Nor does the port just past iosize answer. */
	cr_assert_eq(opt_portout("isa-debug-exit,iobase=0x501,iosize=2", "0x503", "3", "1", &r), 0,
		     "stdout:\n%s\n%s", r.out, r.err);
	harness_result_free(&r);
}

Test(qemu_options, debug_exit_as_tutorials_write_it)
{
	struct harness_result r;

	cr_assert_eq(opt_portout("isa-debug-exit,iobase=0xf4,iosize=0x04", "0xf4", "0x10", "4", &r),
		     0x21, "stdout:\n%s\n%s", r.out, r.err);
	harness_result_free(&r);
}

Test(qemu_options, fractional_m_reaches_the_guest)
{
	const char *argv[] = {"kvmini",
			      "-m",
			      "1.5G",
			      "-kernel",
			      harness_guest("bootinfo"),
			      "-append",
			      "expect_mem_mb=1536 expect_no_initrd",
			      NULL};
	struct harness_result r;

	opt_run(argv, &r);
	cr_assert_eq(r.exit_status, 0, "exit %d\n%s\n%s", r.exit_status, r.out, r.err);
	cr_assert(strstr(r.out, "bootinfo: OK"), "%s", r.out);
	harness_result_free(&r);
}

Test(qemu_options, tutorial_command_line)
{
	const char *argv[] = {"kvmini",
			      "-M",
			      "q35,accel=kvm",
			      "-nodefaults",
			      "-no-user-config",
			      "-display",
			      "none",
			      "-monitor",
			      "none",
			      "-serial",
			      "stdio",
			      "-name",
			      "guest=tut,debug-threads=on",
			      "-m",
			      "128M",
			      "--no-reboot",
			      "-kernel",
			      harness_guest("hello"),
			      NULL};
	struct harness_result r;

	opt_run(argv, &r);
	cr_assert_eq(r.exit_status, 0, "exit %d\n%s\n%s", r.exit_status, r.out, r.err);
	cr_assert(strstr(r.out, "Hello from the kvmini test guest"), "%s", r.out);
	harness_result_free(&r);
}

Test(qemu_options, nodefaults_without_serial_prints_nothing)
{
	const char *argv[] = {"kvmini", "-nodefaults", "-kernel", harness_guest("hello"), NULL};
	struct harness_result r;

	opt_run(argv, &r);
	cr_assert_eq(r.exit_status, 0, "exit %d\n%s\n%s", r.exit_status, r.out, r.err);
	cr_assert_eq(r.out_len, 0, "the default serial port should be gone:\n%s", r.out);
	harness_result_free(&r);
}

Test(qemu_options, version_as_qemu_spells_it)
{
	const char *v1[] = {"kvmini", "version", NULL}, *v2[] = {"kvmini", "-version", NULL},
		   *v3[] = {"kvmini", "run", "-m", "1G", "-version", NULL};
	struct harness_result a, b, c;

	opt_run(v1, &a);
	opt_run(v2, &b);
	opt_run(v3, &c);
	cr_assert_eq(a.exit_status, 0);
	cr_assert(!strncmp(a.out, "kvmini ", 7), "%s", a.out);
	cr_assert_str_eq(b.out, a.out);
	cr_assert_str_eq(c.out, a.out);
	cr_assert_eq(b.exit_status, 0);
	cr_assert_eq(c.exit_status, 0);
	harness_result_free(&a);
	harness_result_free(&b);
	harness_result_free(&c);
}

/* One line on stderr naming the option and value, exit 2, no guest. */
static void opt_refused(const char *const argv[], const char *w1, const char *w2)
{
	struct harness_result r;

	opt_run(argv, &r);
	cr_assert_eq(r.exit_status, 2, "exit %d\n%s", r.exit_status, r.err);
	cr_assert_eq(harness_count(r.err, "\n"), 1, "not one line: %s", r.err);
	cr_assert(strstr(r.err, w1), "no '%s' in: %s", w1, r.err);
	cr_assert(strstr(r.err, w2), "no '%s' in: %s", w2, r.err);
	cr_assert_eq(r.out_len, 0, "%s", r.out);
	harness_result_free(&r);
}

Test(qemu_options, lacking_devices_are_refused_by_name)
{
	opt_refused((const char *[]){"kvmini", "-kernel", harness_guest("hello"), "-device",
				     "virtio-blk-pci,drive=d0", NULL},
		    "virtio-blk-pci", "no -drive has id 'd0'");
	opt_refused((const char *[]){"kvmini", "-kernel", harness_guest("hello"), "-drive",
				     "file=disk.img,if=virtio,format=qcow2", NULL},
		    "format=qcow2", "raw images only");
	opt_refused((const char *[]){"kvmini", "-M", "virt", NULL}, "-M 'virt'", "one machine");
	opt_refused((const char *[]){"kvmini", "-display", "gtk", NULL}, "-display 'gtk'",
		    "no display");
}
