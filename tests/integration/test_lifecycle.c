/* The VM's life cycle: in-process reboot on a guest reset (and -no-reboot), pausing and
 * resuming every vCPU at the park barrier, and -S. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "util/file.h"
#include "vmm/vm.h"

TestSuite(lifecycle, .timeout = 60);

static void run_reboot(const char *const extra[], struct harness_result *r)
{
	const char *argv[16] = {"kvmini", "run", "--kernel", harness_guest("reboot")};
	unsigned n = 4;
	for (unsigned i = 0; extra[i]; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	cr_assert_eq(harness_run(argv, &(struct harness_opts){.timeout_s = 40}, r), 0);
	cr_assert_not(r->timed_out, "stdout:\n%s\nstderr:\n%s", r->out, r->err);
	cr_assert(r->exited);
}

Test(lifecycle, keyboard_controller_reset_reboots_in_the_same_process)
{
	struct harness_result r;
	run_reboot((const char *[]){"--append", "reset=kbd", NULL}, &r);
	cr_assert_eq(r.exit_status, 0, "exit %d\n%s\n%s", r.exit_status, r.out, r.err);
	for (int b = 1; b <= 3; b++) {
		char want[32];
		snprintf(want, sizeof(want), "reboot: boot %d\n", b);
		cr_assert_eq(harness_count(r.out, want), 1, "boot %d once:\n%s", b, r.out);
	}
	cr_assert(strstr(r.out, "reboot: 3 boots OK"), "%s", r.out);
	harness_result_free(&r);
}

Test(lifecycle, port_cf9_reset_reboots_and_aps_wait_for_sipi_again)
{
	struct harness_result r;
	run_reboot((const char *[]){"--cpus", "2", "--append", "reset=cf9", NULL}, &r);
	cr_assert_eq(r.exit_status, 0, "exit %d\n%s\n%s", r.exit_status, r.out, r.err);
	for (int b = 1; b <= 3; b++) {
		char want[48];
		snprintf(want, sizeof(want), "reboot: cpu 1 started on boot %d", b);
		cr_assert(strstr(r.out, want), "%s:\n%s", want, r.out);
	}
	cr_assert(strstr(r.out, "reboot: 3 boots OK"), "%s", r.out);
	harness_result_free(&r);
}

Test(lifecycle, no_reboot_ends_kvmini_at_the_first_reset)
{
	for (int i = 0; i < 2; i++) {
		struct harness_result r;
		run_reboot((const char *[]){i ? "--no-reboot" : "-no-reboot", "--append",
					    "reset=kbd", NULL},
			   &r);
		cr_assert_eq(r.exit_status, 0, "exit %d\n%s\n%s", r.exit_status, r.out, r.err);
		cr_assert(strstr(r.out, "reboot: boot 1\n"), "%s", r.out);
		cr_assert_null(strstr(r.out, "reboot: boot 2"), "rebooted despite -no-reboot:\n%s",
			       r.out);
		cr_assert_null(strstr(r.out, "FAIL"), "%s", r.out);
		harness_result_free(&r);
	}
}

/* ---- pause and resume, in process: the test reads the guest's counters itself ---- */

struct live_vm {
	struct vm_config cfg;
	struct vm vm;
	char console[64];
	uint8_t *kernel;
	size_t kernel_size;
	pthread_t thread;
	int ret, status;
	struct errbuf e;
};

static void *live_vm_thread(void *arg)
{
	struct live_vm *l = arg;
	l->ret = vm_run(&l->vm, &l->status, &l->e);
	return NULL;
}

static void live_start(struct live_vm *l, unsigned ncpus, bool paused)
{
	memset(l, 0, sizeof(*l));
	struct errbuf e;
	cr_assert_eq(
	    read_whole_file(harness_guest("count"), "guest", &l->kernel, &l->kernel_size, &e), 0,
	    "%s", e.msg);
	config_init(&l->cfg);
	snprintf(l->console, sizeof(l->console), "/tmp/kvmini-lifecycle-%d", getpid());
	l->cfg.serial[0].backend = CHARDEV_FILE;
	l->cfg.serial[0].path = l->console;
	l->cfg.ncpus = ncpus;
	l->cfg.mem_size = 64ull << 20;
	l->cfg.start_paused = paused;
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	cr_assert_eq(
	    vm_create(&l->vm, &l->cfg, &start, l->kernel, l->kernel_size, "count", -1, 0, &l->e), 0,
	    "%s", l->e.msg);
	cr_assert_eq(pthread_create(&l->thread, NULL, live_vm_thread, l), 0);
}

static void live_stop(struct live_vm *l)
{
	power_request_stop(&l->vm.power, STOP_QUIT, 0);
	pthread_join(l->thread, NULL);
	cr_assert_eq(l->ret, 0, "%s", l->e.msg);
	cr_assert_eq(l->status, 0);
	vm_destroy(&l->vm);
	free(l->kernel);
	unlink(l->console);
}

static void sleep_ms(long ms)
{
	struct timespec t = {ms / 1000, (ms % 1000) * 1000000};
	nanosleep(&t, NULL);
}

/* Waits for the guest's "counters at" line; returns the counters' host address. */
static volatile uint64_t *live_counters(struct live_vm *l, unsigned ncpus, double timeout_s)
{
	for (double waited = 0; waited < timeout_s; waited += 0.02) {
		uint8_t *text;
		size_t n;
		struct errbuf e;
		if (read_whole_file(l->console, "console", &text, &n, &e) == 0) {
			unsigned long long addr = 0;
			unsigned cpus = 0;
			/* The file's bytes are not a C string: bound the search, and the scan
			 * by a terminated copy of the line. */
			static const char tag[] = "count: counters at ";
			char line[96] = {0};
			const char *p = memmem(text, n, tag, sizeof(tag) - 1);
			if (p)
				memcpy(line, p,
				       (size_t)((const char *)text + n - p) < sizeof(line) - 1
					   ? (size_t)((const char *)text + n - p)
					   : sizeof(line) - 1);
			bool ok = p && sscanf(line, "count: counters at %llx for %u cpus", &addr,
					      &cpus) == 2;
			free(text);
			if (ok) {
				cr_assert_eq(cpus, ncpus);
				void *hva = gpa_to_hva(&l->vm.mem, addr, 8 * ncpus);
				cr_assert_not_null(hva, "counters at 0x%llx outside RAM", addr);
				return hva;
			}
		}
		sleep_ms(20);
	}
	cr_assert_fail("the count guest did not start");
	return NULL;
}

static bool all_moving(volatile uint64_t *c, unsigned n, double timeout_s)
{
	uint64_t before[8];
	for (unsigned i = 0; i < n; i++)
		before[i] = c[i];
	for (double waited = 0; waited < timeout_s; waited += 0.01) {
		unsigned moved = 0;
		for (unsigned i = 0; i < n; i++)
			moved += c[i] != before[i];
		if (moved == n)
			return true;
		sleep_ms(10);
	}
	return false;
}

Test(lifecycle, pause_stops_every_vcpu_and_resume_lets_them_go)
{
	struct live_vm l;
	live_start(&l, 2, false);
	volatile uint64_t *c = live_counters(&l, 2, 20);
	cr_assert(all_moving(c, 2, 10), "both CPUs count before the pause");
	for (int round = 0; round < 3; round++) {
		cr_assert_eq(vm_pause(&l.vm), 0);
		cr_assert_eq(l.vm.control.ops->status(l.vm.control.opaque), VM_STATUS_PAUSED);
		uint64_t a0 = c[0], a1 = c[1];
		sleep_ms(300);
		cr_assert_eq(c[0], a0, "vCPU 0 ran while paused (round %d)", round);
		cr_assert_eq(c[1], a1, "vCPU 1 ran while paused (round %d)", round);
		cr_assert_eq(vm_resume(&l.vm), 0);
		cr_assert_eq(l.vm.control.ops->status(l.vm.control.opaque), VM_STATUS_RUNNING);
		cr_assert(all_moving(c, 2, 10), "both CPUs count again after resume");
	}
	live_stop(&l);
}

Test(lifecycle, start_paused_runs_nothing_until_resumed)
{
	struct live_vm l;
	live_start(&l, 1, true);
	sleep_ms(500);
	uint8_t *text = NULL;
	size_t n = 0;
	struct errbuf e;
	if (read_whole_file(l.console, "console", &text, &n, &e) == 0)
		free(text);
	cr_assert_eq(n, 0, "the guest printed while paused (-S)");
	cr_assert_eq(l.vm.control.ops->status(l.vm.control.opaque), VM_STATUS_PRELAUNCH);
	cr_assert_eq(vm_resume(&l.vm), 0);
	cr_assert_eq(l.vm.control.ops->status(l.vm.control.opaque), VM_STATUS_RUNNING);
	volatile uint64_t *c = live_counters(&l, 1, 20);
	cr_assert(all_moving(c, 1, 10));
	cr_assert_eq(vm_pause(&l.vm), 0);
	cr_assert_eq(l.vm.control.ops->status(l.vm.control.opaque), VM_STATUS_PAUSED,
		     "a stop after the first cont is paused, not prelaunch");
	live_stop(&l);
}

Test(lifecycle, stop_while_paused_ends_the_vm)
{
	struct live_vm l;
	live_start(&l, 2, false);
	(void)live_counters(&l, 2, 20);
	cr_assert_eq(vm_pause(&l.vm), 0);
	live_stop(&l); /* must not hang on parked vCPUs */
}

/* ---- pause and resume from the monitor (mon:stdio), seen on the console ---- */

/* The highest "count: tick N" in buf (0 if none). */
static unsigned long last_tick(const char *buf)
{
	unsigned long best = 0;
	for (const char *p = buf; (p = strstr(p, "count: tick ")); p++) {
		unsigned long n = strtoul(p + 12, NULL, 10);
		if (n > best)
			best = n;
	}
	return best;
}

struct mon_session {
	pid_t pid;
	int in, out; /* our ends: kvmini's stdin and stdout */
	char buf[1 << 16];
	size_t len;
};

static void mon_read_for(struct mon_session *s, double seconds)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		double el = (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
		if (el >= seconds)
			return;
		struct pollfd p = {.fd = s->out, .events = POLLIN};
		if (poll(&p, 1, 20) <= 0)
			continue;
		if (s->len + 1 >= sizeof(s->buf)) {
			/* Keep the tail: only the newest ticks matter. */
			memmove(s->buf, s->buf + sizeof(s->buf) / 2, s->len - sizeof(s->buf) / 2);
			s->len -= sizeof(s->buf) / 2;
		}
		ssize_t n = read(s->out, s->buf + s->len, sizeof(s->buf) - 1 - s->len);
		if (n > 0)
			s->len += (size_t)n;
		s->buf[s->len] = '\0';
	}
}

static bool mon_wait(struct mon_session *s, const char *needle, double timeout_s)
{
	for (double w = 0; w < timeout_s; w += 0.1) {
		if (strstr(s->buf, needle))
			return true;
		mon_read_for(s, 0.1);
	}
	return strstr(s->buf, needle) != NULL;
}

static void mon_send(struct mon_session *s, const char *text)
{
	cr_assert_eq(write(s->in, text, strlen(text)), (ssize_t)strlen(text));
}

Test(lifecycle, monitor_stop_freezes_a_counting_guest_and_cont_resumes_it)
{
	int in[2], out[2];
	cr_assert_eq(pipe(in), 0);
	cr_assert_eq(pipe(out), 0);
	struct mon_session *s = calloc(1, sizeof(*s));
	s->pid = fork();
	if (s->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		execl(harness_kvmini(), harness_kvmini(), "run", "-serial", "mon:stdio", "--cpus",
		      "2", "--kernel", harness_guest("count"), (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	s->in = in[1];
	s->out = out[0];
	fcntl(s->out, F_SETFL, O_NONBLOCK);

	cr_assert(mon_wait(s, "count: tick 3", 20), "the guest does not tick:\n%s", s->buf);
	mon_send(s, "\x01"
		    "cstop\ninfo status\n");
	cr_assert(mon_wait(s, "VM status: paused", 10), "no pause:\n%s", s->buf);
	/* Ticks printed before the vCPUs parked may still be on their way. */
	mon_read_for(s, 0.3);
	unsigned long frozen = last_tick(s->buf);
	mon_read_for(s, 1.5);
	cr_assert_eq(last_tick(s->buf), frozen, "the guest ticked while paused:\n%s", s->buf);
	mon_send(s, "cont\n");
	char want[48];
	snprintf(want, sizeof(want), "count: tick %lu", frozen + 2);
	cr_assert(mon_wait(s, want, 10), "no ticks after cont:\n%s", s->buf);
	mon_send(s, "quit\n");
	int st = -1;
	for (int i = 0; i < 500 && waitpid(s->pid, &st, WNOHANG) != s->pid; i++)
		usleep(10000);
	if (!WIFEXITED(st)) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, &st, 0);
	}
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "quit exits 0 (status 0x%x)", st);
	close(s->in);
	close(s->out);
	free(s);
}
