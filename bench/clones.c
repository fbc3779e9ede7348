/* clones: starts K copies of one command at once and times each until its first output
 * byte and its first newline, for bench/snapshot's clones per second.
 *
 *   clones K -- CMD [ARGS...]
 *       Spawns K copies back to back (posix_spawn, stdin /dev/null, stdout a pipe each),
 *       polling the pipes already open between spawns so no output waits for the loop.
 *       Each copy is SIGKILLed as soon as its first newline has arrived (so it stops
 *       competing for the CPU) and reaped at the end. Times are from just before the
 *       first spawn.
 *       Prints: ok=<copies that showed a line> spawn_ms=<the K spawns> byte_ms=<last
 *       first byte> line_ms=<last first line> cpu_ms=<all copies' CPU time, user + sys>
 *       then one "clone i byte_ms=.. line_ms=.." line per copy.
 * Gives up on copies without a line after 60 s. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAXK 512

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static struct pollfd pfd[MAXK];
static pid_t pids[MAXK];
static double byte_at[MAXK], line_at[MAXK];
static int left;

static void drain(int n, double t0, int timeout_ms)
{
	if (poll(pfd, (nfds_t)n, timeout_ms) <= 0)
		return;
	double t = now_ms() - t0;
	for (int i = 0; i < n; i++) {
		if (pfd[i].fd < 0 || !pfd[i].revents)
			continue;
		char buf[4096];
		ssize_t r = read(pfd[i].fd, buf, sizeof(buf));
		if (r > 0 && byte_at[i] < 0)
			byte_at[i] = t;
		if (r > 0 && !memchr(buf, '\n', (size_t)r))
			continue;
		if (r > 0)
			line_at[i] = t;
		kill(pids[i], SIGKILL);
		close(pfd[i].fd);
		pfd[i].fd = -1;
		left--;
	}
}

int main(int argc, char **argv)
{
	if (argc < 4 || strcmp(argv[2], "--")) {
		fputs("usage: clones K -- CMD [ARGS...]\n", stderr);
		return 2;
	}
	int k = atoi(argv[1]);
	if (k < 1 || k > MAXK) {
		fprintf(stderr, "clones: K must be 1..%d\n", MAXK);
		return 2;
	}
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	double t0 = now_ms();
	for (int i = 0; i < k; i++) {
		int p[2];
		if (pipe2(p, O_CLOEXEC) < 0) {
			perror("clones: pipe");
			return 1;
		}
		posix_spawn_file_actions_t fa;
		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_adddup2(&fa, null, 0);
		posix_spawn_file_actions_adddup2(&fa, p[1], 1);
		int err = posix_spawnp(&pids[i], argv[3], &fa, NULL, argv + 3, environ);
		posix_spawn_file_actions_destroy(&fa);
		close(p[1]);
		if (err) {
			fprintf(stderr, "clones: %s: %s\n", argv[3], strerror(err));
			return 1;
		}
		pfd[i] = (struct pollfd){.fd = p[0], .events = POLLIN};
		byte_at[i] = line_at[i] = -1;
		left++;
		drain(i + 1, t0, 0);
	}
	double spawn_ms = now_ms() - t0;
	while (left > 0 && now_ms() - t0 < 60000)
		drain(k, t0, 100);
	int ok = 0;
	double last_byte = 0, last_line = 0;
	struct rusage ru;
	double cpu = 0;
	for (int i = 0; i < k; i++) {
		if (pfd[i].fd >= 0) {
			kill(pids[i], SIGKILL);
			close(pfd[i].fd);
		}
		int st;
		wait4(pids[i], &st, 0, &ru);
		cpu += ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 +
		       ru.ru_stime.tv_sec * 1e3 + ru.ru_stime.tv_usec / 1e3;
		if (line_at[i] >= 0) {
			ok++;
			if (line_at[i] > last_line)
				last_line = line_at[i];
			if (byte_at[i] > last_byte)
				last_byte = byte_at[i];
		}
	}
	printf("ok=%d spawn_ms=%.2f byte_ms=%.2f line_ms=%.2f cpu_ms=%.1f\n", ok, spawn_ms,
	       last_byte, last_line, cpu);
	for (int i = 0; i < k; i++)
		printf("clone %d byte_ms=%.2f line_ms=%.2f\n", i, byte_at[i], line_at[i]);
	return 0;
}
