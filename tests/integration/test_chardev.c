/* Character backends and the console with the real kvmini binary: several serial ports,
 * mon:stdio, a regular file on stdin, a pty and a unix socket, each talked to as a user or
 * a tool would. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

TestSuite(chardev, .timeout = 90);

static char *read_file(const char *path)
{
	static char buf[3][16384];
	static unsigned slot;
	char *b = buf[slot++ % 3];
	b[0] = '\0';
	FILE *f = fopen(path, "r");
	if (!f)
		return b;
	size_t n = fread(b, 1, sizeof(buf[0]) - 1, f);
	b[n] = '\0';
	fclose(f);
	return b;
}

static void tmp_path(char *buf, size_t len, const char *what)
{
	static unsigned n;
	snprintf(buf, len, "/tmp/kvmini-chardev-%d-%u-%s", getpid(), n++, what);
	unlink(buf);
}

Test(chardev, two_serial_ports_each_get_their_own_text)
{
	char f1[128], opt[160];
	tmp_path(f1, sizeof(f1), "ttyS1");
	snprintf(opt, sizeof(opt), "file:%s", f1);
	const char *argv[] = {"kvmini",	 "run", "-serial",  "stdio",
			      "-serial", opt,	"--kernel", harness_guest("serial-ports"),
			      NULL};
	struct harness_opts o = {.timeout_s = 30};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && r.exit_status == 0, "exit %d: %s", r.exit_status, r.err);
	cr_assert(strstr(r.out, "ttyS0: hello from 0x3f8"), "%s", r.out);
	cr_assert_null(strstr(r.out, "ttyS1:"), "ttyS1's text went to stdout: %s", r.out);
	cr_assert(strstr(r.out, "ttyS0 present, ttyS1 present, ttyS2 absent, ttyS3 absent"), "%s",
		  r.out);
	char *s1 = read_file(f1);
	cr_assert(strstr(s1, "ttyS1: hello from 0x2f8"), "ttyS1's file: '%s'", s1);
	cr_assert_null(strstr(s1, "ttyS0"), "ttyS0's text reached ttyS1: '%s'", s1);
	unlink(f1);
	harness_result_free(&r);
}

Test(chardev, four_ports_and_serial_none_removes_a_port)
{
	char f1[128], f3[128], o1[160], o3[160];
	tmp_path(f1, sizeof(f1), "ttyS1");
	tmp_path(f3, sizeof(f3), "ttyS3");
	snprintf(o1, sizeof(o1), "file:%s", f1);
	snprintf(o3, sizeof(o3), "file:%s", f3);
	/* ttyS0 absent, ttyS1 a file, ttyS2 stdio, ttyS3 a file. */
	const char *argv[] = {"kvmini",	 "run", "-serial",  "none",
			      "-serial", o1,	"-serial",  "stdio",
			      "-serial", o3,	"--kernel", harness_guest("serial-ports"),
			      NULL};
	struct harness_opts o = {.timeout_s = 30};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && r.exit_status == 0, "exit %d: %s", r.exit_status, r.err);
	/* Without ttyS0 the guest's summary goes nowhere; ttyS2 (0x3e8) is on stdout. */
	cr_assert_null(strstr(r.out, "serial-ports:"), "ttyS0 should be absent: %s", r.out);
	cr_assert(strstr(r.out, "ttyS2: hello from 0x3e8"), "%s", r.out);
	cr_assert(strstr(read_file(f1), "ttyS1: hello from 0x2f8"), "%s", read_file(f1));
	cr_assert(strstr(read_file(f3), "ttyS3: hello from 0x2e8"), "%s", read_file(f3));
	unlink(f1);
	unlink(f3);
	harness_result_free(&r);
}

Test(chardev, mon_stdio_answers_info_status_and_quit_exits_0)
{
	const char *argv[] = {"kvmini",	   "run",      "-serial",
			      "mon:stdio", "--kernel", harness_guest("serial-echo"),
			      NULL};
	struct harness_opts o = {
	    .timeout_s = 30,
	    .input = "\x01"
		     "cinfo status\nhelp\nquit\n",
	    .input_after = "serial-echo: ready",
	    .keep_stdin_open = true, /* only the monitor's quit can end this run */
	};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert_not(r.timed_out, "quit did not end kvmini:\n%s\n%s", r.out, r.err);
	cr_assert(r.exited && r.exit_status == 0, "exit %d: %s", r.exit_status, r.err);
	cr_assert(strstr(r.out, "(kvmini) "), "%s", r.out);
	cr_assert(strstr(r.out, "VM status: running"), "%s", r.out);
	cr_assert(strstr(r.out, "system_reset"), "help lists the commands: %s", r.out);
	cr_assert_null(strstr(r.out, "\necho: "), "monitor input reached the guest: %s", r.out);
	harness_result_free(&r);
}

Test(chardev, mon_stdio_switches_back_to_the_guest)
{
	const char *argv[] = {"kvmini",	   "run",      "-serial",
			      "mon:stdio", "--kernel", harness_guest("serial-echo"),
			      NULL};
	struct harness_opts o = {
	    .timeout_s = 30,
	    .input = "\x01"
		     "cinfo status\n\x01"
		     "cquit\n",
	    .input_after = "serial-echo: ready",
	};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && r.exit_status == 0, "exit %d: %s", r.exit_status, r.err);
	cr_assert(strstr(r.out, "VM status: running"), "%s", r.out);
	cr_assert_null(strstr(r.out, "echo: info status"), "monitor input reached the guest");
	cr_assert(strstr(r.out, "echo: quit"), "after Ctrl-A c input is the guest's: %s", r.out);
	cr_assert(strstr(r.out, "serial-echo: bye"), "%s", r.out);
	harness_result_free(&r);
}

/* The named snapshots through the stdio monitor: savevm, info snapshots, loadvm, delvm. */
Test(chardev, mon_stdio_savevm_loadvm_delvm)
{
	char dir[] = "/tmp/kvmini-monsnap-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char file[64];
	snprintf(file, sizeof(file), "%s/t1.kvmini", dir);
	const char *argv[] = {"kvmini",
			      "run",
			      "-serial",
			      "mon:stdio",
			      "--snapshot-dir",
			      dir,
			      "--kernel",
			      harness_guest("serial-echo"),
			      NULL};
	struct harness_opts o = {
	    .timeout_s = 30,
	    .input = "\x01"
		     "csavevm t1\ninfo snapshots\nloadvm t1\ninfo status\nloadvm ../t1\n"
		     "delvm t1\ninfo snapshots\nquit\n",
	    .input_after = "serial-echo: ready",
	};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && r.exit_status == 0, "exit %d: %s", r.exit_status, r.err);
	cr_assert(strstr(r.out, "List of snapshots present in "), "%s", r.out);
	cr_assert(strstr(r.out, "\r\n1         t1 "), "the table has t1: %s", r.out);
	cr_assert(strstr(r.out, "VM status: running"), "loadvm ran the VM on: %s", r.out);
	cr_assert(strstr(r.out, "Error: invalid snapshot tag '../t1'"), "%s", r.out);
	cr_assert(strstr(r.out, "There is no snapshot available."), "delvm: %s", r.out);
	cr_assert_neq(access(file, F_OK), 0, "delvm left %s", file);
	cr_assert_null(strstr(r.out, "echo: savevm"), "monitor input reached the guest");
	harness_result_free(&r);
	cr_assert_eq(rmdir(dir), 0, "%s is not empty", dir);
}

Test(chardev, nographic_has_the_monitor_too)
{
	const char *argv[] = {"kvmini", "-nographic", "-kernel", harness_guest("serial-echo"),
			      NULL};
	struct harness_opts o = {
	    .timeout_s = 30,
	    .input = "\x01"
		     "cinfo status\n\x01"
		     "cback\nquit\n",
	    .input_after = "serial-echo: ready",
	};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && r.exit_status == 0, "exit %d: %s", r.exit_status, r.err);
	cr_assert(strstr(r.out, "VM status: running"), "%s", r.out);
	cr_assert(strstr(r.out, "echo: back"), "Ctrl-A c again returns to the guest: %s", r.out);
	cr_assert(strstr(r.out, "serial-echo: bye"), "%s", r.out);
	harness_result_free(&r);
}

Test(chardev, ctrl_a_h_prints_help_and_unknown_escape_is_reported)
{
	const char *argv[] = {"kvmini", "run", "--kernel", harness_guest("serial-echo"), NULL};
	struct harness_opts o = {
	    .timeout_s = 30,
	    .input = "\x01h\x01qok\nquit\n",
	    .input_after = "serial-echo: ready",
	};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && r.exit_status == 0, "exit %d: %s", r.exit_status, r.err);
	cr_assert(strstr(r.out, "C-a x"), "%s", r.out);
	cr_assert(strstr(r.err, "Ctrl-A q is not a command"), "%s", r.err);
	cr_assert(strstr(r.out, "echo: ok\n"), "the unknown escape's key is swallowed: %s", r.out);
	harness_result_free(&r);
}

/* ---- runs that need a real file on stdin, or a pty / socket peer ---- */

static pid_t spawn(const char *const argv[], int in_fd, int out_fd, int err_fd)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (in_fd >= 0)
			dup2(in_fd, 0);
		if (out_fd >= 0)
			dup2(out_fd, 1);
		if (err_fd >= 0)
			dup2(err_fd, 2);
		char *args[32];
		unsigned n = 0;
		args[n++] = (char *)harness_kvmini();
		for (unsigned i = 1; argv[i] && n < 31; i++)
			args[n++] = (char *)argv[i];
		args[n] = NULL;
		execv(args[0], args);
		_exit(127);
	}
	return pid;
}

/* Waits up to timeout_s; kills and returns -1 if kvmini is still running. */
static int wait_exit(pid_t pid, double timeout_s)
{
	int st;
	for (int i = 0; i < (int)(timeout_s * 100); i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

/* Reads from fd until buf holds needle or timeout_s passes. */
static bool read_until(int fd, char *buf, size_t cap, size_t *len, const char *needle,
		       double timeout_s)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		buf[*len] = '\0';
		if (strstr(buf, needle))
			return true;
		clock_gettime(CLOCK_MONOTONIC, &t);
		double el = (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
		if (el > timeout_s || *len + 1 >= cap)
			return false;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t n = read(fd, buf + *len, cap - 1 - *len);
		if (n <= 0) {
			if (n < 0 && errno == EAGAIN)
				continue;
			return strstr(buf, needle) != NULL;
		}
		*len += (size_t)n;
	}
}

Test(chardev, regular_file_on_stdin_reaches_the_guest)
{
	char in[128], out[128];
	tmp_path(in, sizeof(in), "stdin");
	tmp_path(out, sizeof(out), "stdout");
	FILE *f = fopen(in, "w");
	cr_assert_not_null(f);
	fputs("from a file\nsecond line\nquit\n", f);
	fclose(f);
	int in_fd = open(in, O_RDONLY);
	int out_fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(in_fd >= 0 && out_fd >= 0);
	const char *argv[] = {"kvmini", "run", "--kernel", harness_guest("serial-echo"), NULL};
	pid_t pid = spawn(argv, in_fd, out_fd, -1);
	close(in_fd);
	close(out_fd);
	int st = wait_exit(pid, 30);
	char *o = read_file(out);
	cr_assert_eq(st, 0, "exit %d (before: the guest waited forever): %s", st, o);
	cr_assert(strstr(o, "echo: from a file"), "%s", o);
	cr_assert(strstr(o, "echo: second line"), "%s", o);
	cr_assert(strstr(o, "serial-echo: bye"), "%s", o);
	unlink(in);
	unlink(out);
}

Test(chardev, pty_path_is_printed_and_talks_to_the_guest)
{
	int errp[2];
	cr_assert_eq(pipe(errp), 0);
	int devnull = open("/dev/null", O_RDWR);
	const char *argv[] = {
	    "kvmini", "run", "-serial", "pty", "--kernel", harness_guest("serial-echo"), NULL};
	pid_t pid = spawn(argv, devnull, devnull, errp[1]);
	close(errp[1]);
	close(devnull);
	char err[4096];
	size_t elen = 0;
	bool got = read_until(errp[0], err, sizeof(err), &elen, "(label serial0)", 20);
	cr_assert(got, "no pty line on stderr: %s", err);
	regex_t re;
	regmatch_t m[2];
	cr_assert_eq(regcomp(&re, "char device redirected to (/dev/pts/[0-9]+) \\(label serial0\\)",
			     REG_EXTENDED),
		     0);
	cr_assert_eq(regexec(&re, err, 2, m, 0), 0, "QEMU's wording: %s", err);
	char path[64];
	snprintf(path, sizeof(path), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), err + m[1].rm_so);
	regfree(&re);

	int fd = open(path, O_RDWR | O_NOCTTY);
	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	/* The guest may not be listening yet; repeat the line until it echoes. */
	char buf[8192];
	size_t len = 0;
	bool echoed = false;
	for (int i = 0; i < 20 && !echoed; i++) {
		cr_assert_eq(write(fd, "over pty\n", 9), 9);
		echoed = read_until(fd, buf, sizeof(buf), &len, "echo: over pty", 1.0);
	}
	cr_assert(echoed, "no echo through %s: %s", path, buf);
	cr_assert_eq(write(fd, "quit\n", 5), 5);
	/* kvmini waits for the reader before its hang-up would flush the last lines. */
	cr_assert(read_until(fd, buf, sizeof(buf), &len, "serial-echo: bye", 20), "%s", buf);
	int st = wait_exit(pid, 20);
	cr_assert_eq(st, 0, "exit %d", st);
	close(fd);
	close(errp[0]);
}

static int connect_unix(const char *path, double timeout_s)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	for (int i = 0; i < (int)(timeout_s * 100); i++) {
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
		usleep(10000);
	}
	return -1;
}

Test(chardev, unix_socket_server_nowait_runs_before_a_client_connects)
{
	char sock[108], opt[160], out[128];
	tmp_path(sock, sizeof(sock), "sock");
	tmp_path(out, sizeof(out), "stdout");
	snprintf(opt, sizeof(opt), "unix:%s,server,nowait", sock);
	/* ttyS0 on stdout (a file), ttyS1 the socket: the guest runs to its end with no client,
	 * because nowait does not hold it back. */
	int out_fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int devnull = open("/dev/null", O_RDWR);
	const char *argv[] = {"kvmini",	 "run", "-serial",  "stdio",
			      "-serial", opt,	"--kernel", harness_guest("serial-ports"),
			      NULL};
	pid_t pid = spawn(argv, devnull, out_fd, -1);
	int st = wait_exit(pid, 30);
	cr_assert_eq(st, 0, "exit %d: %s", st, read_file(out));
	cr_assert(strstr(read_file(out), "ttyS1 present"), "%s", read_file(out));
	struct stat sb;
	cr_assert_neq(stat(sock, &sb), 0, "the socket is removed at exit");

	/* Now a client that talks to the guest: serial-echo on the socket. */
	const char *argv2[] = {
	    "kvmini", "run", "-serial", opt + 0, "--kernel", harness_guest("serial-echo"), NULL};
	pid = spawn(argv2, devnull, out_fd, -1);
	close(out_fd);
	close(devnull);
	int fd = connect_unix(sock, 20);
	cr_assert_geq(fd, 0, "cannot connect to %s", sock);
	char buf[8192];
	size_t len = 0;
	bool echoed = false;
	for (int i = 0; i < 20 && !echoed; i++) {
		cr_assert_eq(write(fd, "over socket\n", 12), 12);
		echoed = read_until(fd, buf, sizeof(buf), &len, "echo: over socket", 1.0);
	}
	cr_assert(echoed, "no echo through the socket: %s", buf);
	cr_assert_eq(write(fd, "quit\n", 5), 5);
	cr_assert(read_until(fd, buf, sizeof(buf), &len, "serial-echo: bye", 20), "%s", buf);
	st = wait_exit(pid, 20);
	cr_assert_eq(st, 0, "exit %d", st);
	close(fd);
	unlink(out);
}

Test(chardev, unix_socket_server_waits_for_its_client)
{
	char sock[108], opt[160];
	tmp_path(sock, sizeof(sock), "sockw");
	snprintf(opt, sizeof(opt), "unix:%s,server", sock);
	int errp[2];
	cr_assert_eq(pipe(errp), 0);
	int devnull = open("/dev/null", O_RDWR);
	const char *argv[] = {
	    "kvmini", "run", "-serial", opt, "--kernel", harness_guest("serial-echo"), NULL};
	pid_t pid = spawn(argv, devnull, devnull, errp[1]);
	close(errp[1]);
	close(devnull);
	char err[4096];
	size_t elen = 0;
	cr_assert(read_until(errp[0], err, sizeof(err), &elen, "waiting for a connection", 20),
		  "%s", err);
	usleep(300000);
	int st;
	cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "kvmini must wait, not run on");
	int fd = connect_unix(sock, 5);
	cr_assert_geq(fd, 0);
	char buf[8192];
	size_t len = 0;
	/* Waiting means nothing the guest printed is lost: its first line arrives. */
	cr_assert(read_until(fd, buf, sizeof(buf), &len, "serial-echo: ready", 20), "%s", buf);
	cr_assert_eq(write(fd, "quit\n", 5), 5);
	cr_assert(read_until(fd, buf, sizeof(buf), &len, "serial-echo: bye", 20), "%s", buf);
	cr_assert_eq(wait_exit(pid, 20), 0);
	close(fd);
	close(errp[0]);
}

Test(chardev, monitor_cont_starts_a_vm_started_paused_and_stop_pauses_it)
{
	const char *argv[] = {
	    "kvmini", "run", "-S", "-serial", "mon:stdio", "--kernel", harness_guest("serial-echo"),
	    NULL};
	/* -S: nothing runs until cont, so the input cannot wait for the guest's greeting. */
	struct harness_opts o = {
	    .timeout_s = 30,
	    .input = "\x01"
		     "cinfo status\ncont\ninfo status\nstop\ninfo status\ncont\nquit\n",
	    .keep_stdin_open = true,
	};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && r.exit_status == 0, "exit %d: %s\n%s", r.exit_status, r.out, r.err);
	const char *p1 = strstr(r.out, "VM status: paused (prelaunch)");
	cr_assert_not_null(p1, "-S starts paused, in prelaunch: %s", r.out);
	const char *p2 = strstr(p1, "VM status: running");
	cr_assert_not_null(p2, "cont resumes: %s", r.out);
	const char *p3 = strstr(p2, "VM status: paused");
	cr_assert(p3 && p3[17] != ' ', "stop pauses (no longer prelaunch): %s", r.out);
	cr_assert_null(strstr(r.out, "not supported"), "%s", r.out);
	harness_result_free(&r);
}

Test(chardev, chardev_stdio_mux_with_mon_is_mon_stdio)
{
	const char *argv[] = {"kvmini",
			      "-chardev",
			      "stdio,id=con0,mux=on,signal=off",
			      "-serial",
			      "chardev:con0",
			      "-mon",
			      "chardev=con0,mode=readline",
			      "-kernel",
			      harness_guest("serial-echo"),
			      NULL};
	struct harness_opts o = {
	    .timeout_s = 30,
	    .input = "\x01"
		     "cinfo status\n\x01"
		     "cquit\n",
	    .input_after = "serial-echo: ready",
	};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && r.exit_status == 0, "exit %d: %s", r.exit_status, r.err);
	cr_assert(strstr(r.out, "VM status: running"), "%s", r.out);
	cr_assert(strstr(r.out, "serial-echo: bye"), "%s", r.out);
	harness_result_free(&r);
}

Test(chardev, chardev_socket_server_without_wait)
{
	char sock[108], spec[200];
	tmp_path(sock, sizeof(sock), "csock");
	snprintf(spec, sizeof(spec), "socket,id=c1,path=%s,server=on,wait=off", sock);
	const char *argv[] = {"kvmini",	    "-chardev", spec,
			      "-serial",    "stdio",	"-serial",
			      "chardev:c1", "-kernel",	harness_guest("serial-ports"),
			      NULL};
	struct harness_opts o = {.timeout_s = 30};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && r.exit_status == 0, "exit %d: %s", r.exit_status, r.err);
	cr_assert(strstr(r.out, "ttyS1 present"), "the socket-backed port exists: %s", r.out);
	harness_result_free(&r);
}

Test(chardev, ctrl_a_b_sends_a_break_the_guest_sees)
{
	const char *argv[] = {"kvmini", "run", "--kernel", harness_guest("serial-echo"), NULL};
	struct harness_opts o = {
	    .timeout_s = 30,
	    .input = "\x01"
		     "bafter\nquit\n",
	    .input_after = "serial-echo: ready",
	};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert(r.exited && r.exit_status == 0, "exit %d: %s", r.exit_status, r.err);
	cr_assert(strstr(r.out, "serial-echo: break 1"), "LSR.BI with an interrupt: %s", r.out);
	cr_assert(strstr(r.out, "echo: after\n"), "the break's NUL is not data: %s", r.out);
	harness_result_free(&r);
}

Test(chardev, reader_that_pauses_stalls_the_guest_and_loses_nothing)
{
	enum { LINES = 1500 }; /* ~52 KB: more than the pipe and kvmini's buffer together */
	int p[2];
	cr_assert_eq(pipe(p), 0);
	/* A one-page pipe, so the stall comes within a second of guest output. */
	cr_assert_geq(fcntl(p[0], F_SETPIPE_SZ, 4096), 0);
	int devnull = open("/dev/null", O_RDWR);
	char lines[32];
	snprintf(lines, sizeof(lines), "lines=%d", LINES);
	const char *argv[] = {"kvmini",	  "run", "--kernel", harness_guest("flood"),
			      "--append", lines, NULL};
	pid_t pid = spawn(argv, devnull, p[1], -1);
	close(p[1]);
	close(devnull);
	/* Nobody reads for a while: the guest fills the pipe and kvmini's 16 KiB buffer, then
	 * its transmitter stalls. */
	sleep(2);
	int st;
	cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "the guest finished though nobody read");
	static char out[LINES * 40 + 4096];
	size_t len = 0;
	for (;;) {
		ssize_t n = read(p[0], out + len, sizeof(out) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	out[len] = '\0';
	cr_assert_eq(wait_exit(pid, 60), 0);
	cr_assert(strstr(out, "flood: done"), "%.200s", out + (len > 200 ? len - 200 : 0));
	const char *q = out;
	for (unsigned i = 0; i < LINES; i++) {
		char want[64];
		snprintf(want, sizeof(want), "flood %05u abcdefghijklmnopqrstuvwxyz\n", i);
		const char *f = strstr(q, want);
		cr_assert_not_null(f, "line %u lost or out of order", i);
		q = f + strlen(want);
	}
	close(p[0]);
}
