/* first_line: times one VMM run from the outside, for bench/run.
 *
 *   first_line line [-t MS] -- CMD [ARGS...]
 *       Time from just before the spawn until MARKER has arrived on CMD's stdout. CMD is
 *       then SIGKILLed, so its teardown is not part of the figure (it is reaped before
 *       first_line exits, so the next run does not overlap with it).
 *       Prints: ms=<float>
 *   first_line exit [-t MS] -- CMD [ARGS...]
 *       Time from just before the spawn until CMD has been reaped, plus its CPU time.
 *       Fails unless MARKER was seen, so an exit without a booted guest cannot pass.
 *       Prints: ms=<float> cpu_ms=<float> status=<exit status>
 *   first_line rss [-t MS] [-w MS] -- CMD [ARGS...]
 *       Waits for MARKER, then -w MS more (default 500), reads /proc/PID/status and
 *       /proc/PID/smaps, kills CMD.
 *       Prints: rss_kib= hwm_kib= anon_kib= file_kib= guest_kib= idle_cpu_ms=
 *       guest_kib is the resident part of the mappings of exactly the guest's RAM size
 *       (-g MiB, default 128): the guest pages touched, however the VMM lays out RAM.
 *       idle_cpu_ms is the CPU time all of CMD's threads used during the -w wait, while
 *       the guest sat in hlt: anything above zero is a VMM that polls.
 *
 * -t is the time limit for the whole run (default 10000 ms); on expiry CMD is killed and
 * first_line fails. CMD gets /dev/null on stdin (all VMMs then skip terminal set-up the
 * same way) and first_line's stderr, so its complaints stay visible. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MARKER "bench: guest up"

extern char **environ;

enum mode { MODE_LINE, MODE_EXIT, MODE_RSS };

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void usage(void)
{
	fputs("usage: first_line line|exit|rss [-t MS] [-w MS] [-g MIB] -- CMD [ARGS...]\n",
	      stderr);
	exit(2);
}

/* Looks for MARKER in the stream, across read boundaries. */
struct scanner {
	char tail[sizeof(MARKER) - 1];
	size_t tail_len;
	bool found;
};

static void scan(struct scanner *s, const char *buf, size_t n)
{
	char window[sizeof(s->tail) + 4096];
	while (n > 0 && !s->found) {
		size_t take = n < 4096 ? n : 4096;
		memcpy(window, s->tail, s->tail_len);
		memcpy(window + s->tail_len, buf, take);
		size_t len = s->tail_len + take;
		if (memmem(window, len, MARKER, sizeof(MARKER) - 1))
			s->found = true;
		size_t keep = len < sizeof(s->tail) ? len : sizeof(s->tail);
		memcpy(s->tail, window + len - keep, keep);
		s->tail_len = keep;
		buf += take;
		n -= take;
	}
}

/* Reads what is available. Returns false at EOF. */
static bool drain(int fd, struct scanner *s)
{
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof(buf));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0)
		return false;
	scan(s, buf, (size_t)n);
	return true;
}

static long status_kib(const char *text, const char *key)
{
	const char *p = strstr(text, key);
	return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

/* Run time of all of pid's threads, in ns, from schedstat: exact, unlike the clock ticks of
 * /proc/PID/stat. */
static long long cpu_ns(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	long long sum = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char p[320];
		snprintf(p, sizeof(p), "/proc/%d/task/%s/schedstat", (int)pid, de->d_name);
		FILE *f = fopen(p, "re");
		long long ns;
		if (f && fscanf(f, "%lld", &ns) == 1)
			sum += ns;
		if (f)
			fclose(f);
	}
	closedir(d);
	return sum;
}

static int read_rss(pid_t pid, long guest_mib, double idle_cpu_ms)
{
	char path[64], text[8192];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = 0;
	fclose(f);

	/* smaps rather than guessing the guest's footprint: each VMM writes boot data, and
	 * QEMU its firmware, into guest RAM, and only the kernel knows which pages those were. */
	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	char line[512];
	long size = 0, guest = 0;
	while (fgets(line, sizeof(line), f)) {
		long v;
		if (sscanf(line, "Size: %ld kB", &v) == 1)
			size = v;
		else if (sscanf(line, "Rss: %ld kB", &v) == 1 && size == guest_mib * 1024)
			guest += v;
	}
	fclose(f);
	printf("rss_kib=%ld hwm_kib=%ld anon_kib=%ld file_kib=%ld guest_kib=%ld idle_cpu_ms=%.3f\n",
	       status_kib(text, "VmRSS:"), status_kib(text, "VmHWM:"), status_kib(text, "RssAnon:"),
	       status_kib(text, "RssFile:"), guest, idle_cpu_ms);
	return 0;
}

static void kill_and_reap(pid_t pid)
{
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	enum mode mode;
	if (strcmp(argv[1], "line") == 0)
		mode = MODE_LINE;
	else if (strcmp(argv[1], "exit") == 0)
		mode = MODE_EXIT;
	else if (strcmp(argv[1], "rss") == 0)
		mode = MODE_RSS;
	else
		usage();
	long timeout_ms = 10000, wait_ms = 500, guest_mib = 128;
	int opt;
	optind = 2;
	while ((opt = getopt(argc, argv, "+t:w:g:")) != -1) {
		switch (opt) {
		case 't':
			timeout_ms = atol(optarg);
			break;
		case 'w':
			wait_ms = atol(optarg);
			break;
		case 'g':
			guest_mib = atol(optarg);
			break;
		default:
			usage();
		}
	}
	if (optind >= argc)
		usage();
	char **cmd = argv + optind;

	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		perror("first_line: pipe");
		return 2;
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);

	/* posix_spawnp is a vfork+exec: the spawn itself costs the same small amount for every
	 * VMM, and the clock starts before it, as "from exec" should. */
	pid_t pid;
	double t0 = now_ms();
	int err = posix_spawnp(&pid, cmd[0], &fa, NULL, cmd, environ);
	if (err) {
		fprintf(stderr, "first_line: cannot run %s: %s\n", cmd[0], strerror(err));
		return 2;
	}
	close(pipefd[1]);
	int out = pipefd[0];

	struct scanner sc = {0};
	double t_found = 0;
	while (!sc.found || mode == MODE_EXIT) {
		double left = timeout_ms - (now_ms() - t0);
		if (left <= 0) {
			fprintf(stderr, "first_line: %s: no %s within %ld ms\n", cmd[0],
				sc.found ? "exit" : "'" MARKER "'", timeout_ms);
			kill_and_reap(pid);
			return 1;
		}
		struct pollfd p = {.fd = out, .events = POLLIN};
		if (poll(&p, 1, (int)left + 1) < 0 && errno != EINTR)
			break;
		if (p.revents && !drain(out, &sc))
			break; /* EOF */
		if (sc.found && t_found == 0)
			t_found = now_ms();
	}

	if (mode == MODE_LINE || mode == MODE_RSS) {
		if (!sc.found) {
			fprintf(stderr, "first_line: %s closed its stdout before '%s'\n", cmd[0],
				MARKER);
			kill_and_reap(pid);
			return 1;
		}
		int ret = 0;
		if (mode == MODE_LINE) {
			printf("ms=%.3f\n", t_found - t0);
		} else {
			struct timespec ts = {wait_ms / 1000, (wait_ms % 1000) * 1000000L};
			long long cpu0 = cpu_ns(pid);
			nanosleep(&ts, NULL);
			double idle_ms = (cpu_ns(pid) - cpu0) / 1e6;
			if (read_rss(pid, guest_mib, idle_ms) < 0) {
				fprintf(stderr, "first_line: cannot read /proc/%d: %s\n", (int)pid,
					strerror(errno));
				ret = 1;
			}
		}
		kill_and_reap(pid);
		return ret;
	}

	/* MODE_EXIT: EOF came when CMD closed its files on the way out; wait4 returns when
	 * the kernel is done with it, which includes the VM's teardown. */
	int status;
	struct rusage ru;
	while (wait4(pid, &status, 0, &ru) < 0) {
		if (errno != EINTR) {
			perror("first_line: wait4");
			return 2;
		}
	}
	double t_end = now_ms();
	if (!sc.found) {
		fprintf(stderr, "first_line: %s exited without printing '%s'\n", cmd[0], MARKER);
		return 1;
	}
	double cpu = ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 +
		     ru.ru_stime.tv_sec * 1e3 + ru.ru_stime.tv_usec / 1e3;
	printf("ms=%.3f cpu_ms=%.3f status=%d\n", t_end - t0, cpu,
	       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	return 0;
}
