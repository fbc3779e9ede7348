#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *harness_kvmini(void)
{
	const char *p = getenv("KVMINI");
	return p && *p ? p : "build/kvmini";
}

const char *harness_guest(const char *name)
{
	static __thread char bufs[4][512];
	static __thread unsigned slot;
	const char *dir = getenv("KVMINI_GUESTS");
	char *b = bufs[slot++ % 4];
	snprintf(b, sizeof(bufs[0]), "%s/%s.elf", dir && *dir ? dir : "build/guests", name);
	return b;
}

unsigned harness_count(const char *out, const char *needle)
{
	unsigned n = 0;
	for (const char *p = out; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void append(char **buf, size_t *len, const char *data, size_t n)
{
	char *p = realloc(*buf, *len + n + 1);
	if (!p)
		abort();
	memcpy(p + *len, data, n);
	*len += n;
	p[*len] = '\0';
	*buf = p;
}

int harness_run(const char *const argv[], const struct harness_opts *o, struct harness_result *r)
{
	static const struct harness_opts defaults = {.timeout_s = 30};
	if (!o)
		o = &defaults;
	memset(r, 0, sizeof(*r));
	signal(SIGPIPE, SIG_IGN); /* kvmini may exit with input still unread */
	r->out = calloc(1, 1);
	r->err = calloc(1, 1);

	int in[2], out[2], err[2];
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
		return -1;
	double t0 = now_s();
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (o->input) {
			dup2(in[0], 0);
		} else {
			int devnull = open("/dev/null", O_RDONLY);
			dup2(devnull, 0);
		}
		dup2(out[1], 1);
		dup2(err[1], 2);
		if (o->run_as_user) {
			unsigned id = (unsigned)atoi(o->run_as_user);
			if (setgid(id) < 0 || setuid(id) < 0)
				_exit(126);
		}
		int argc = 0;
		while (argv[argc])
			argc++;
		char **args = calloc((size_t)argc + 1, sizeof(char *));
		args[0] = (char *)harness_kvmini();
		for (int i = 1; i < argc; i++)
			args[i] = (char *)argv[i];
		execv(args[0], args);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	if (!o->input) {
		close(in[1]);
		in[1] = -1;
	}
	bool input_sent = false;
	size_t input_off = 0, input_len = o->input ? strlen(o->input) : 0;
	if (in[1] >= 0)
		fcntl(in[1], F_SETFL, O_NONBLOCK); /* kvmini may read slowly: never block on it */
	bool out_open = !o->stdout_unread, err_open = true;
	bool term_sent = false;
	double deadline = t0 + (o->timeout_s > 0 ? o->timeout_s : 30);
	int status = 0;

	for (;;) {
		if (o->input && !input_sent && in[1] >= 0 &&
		    (!o->input_after || strstr(r->out, o->input_after))) {
			ssize_t w = write(in[1], o->input + input_off, input_len - input_off);
			if (w > 0)
				input_off += (size_t)w;
			else if (w < 0 && errno != EAGAIN && errno != EINTR)
				input_off = input_len; /* kvmini closed its stdin */
			if (input_off == input_len) {
				input_sent = true;
				if (!o->keep_stdin_open) {
					close(in[1]);
					in[1] = -1;
				}
			}
		}
		if (o->stop_when && !term_sent) {
			bool all = true;
			/* Only whole lines count: serial output arrives a byte at a time. */
			for (unsigned i = 0; o->stop_when[i] && all; i++) {
				const char *m = strstr(r->out, o->stop_when[i]);
				all = m && strchr(m, '\n');
			}
			if (all) {
				if (o->inspect)
					o->inspect(pid, o->inspect_arg);
				kill(pid, SIGTERM);
				term_sent = true;
				deadline = now_s() + 3;
			}
		}
		if (!out_open && !err_open) {
			if (waitpid(pid, &status, WNOHANG) == pid)
				break;
		}
		double left = deadline - now_s();
		if (left <= 0) {
			if (!term_sent) {
				r->timed_out = true;
				kill(pid, SIGTERM);
				term_sent = true;
				deadline = now_s() + 3;
				continue;
			}
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			break;
		}
		struct pollfd p[2] = {{out_open ? out[0] : -1, POLLIN, 0},
				      {err_open ? err[0] : -1, POLLIN, 0}};
		int timeout_ms = (int)(left * 1000) + 1;
		if (o->input && !input_sent && input_off > 0 && timeout_ms > 20)
			timeout_ms = 20; /* more input to push once the pipe drains */
		if (!out_open && !err_open)
			timeout_ms = 10;
		if (poll(p, 2, timeout_ms) < 0 && errno != EINTR)
			break;
		char buf[65536];
		for (int i = 0; i < 2; i++) {
			if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t n = read(p[i].fd, buf, sizeof(buf));
			if (n <= 0) {
				if (i == 0)
					out_open = false;
				else
					err_open = false;
				continue;
			}
			if (i == 0)
				append(&r->out, &r->out_len, buf, (size_t)n);
			else
				append(&r->err, &r->err_len, buf, (size_t)n);
		}
	}
	if (in[1] >= 0)
		close(in[1]);
	close(out[0]);
	close(err[0]);
	r->seconds = now_s() - t0;
	r->exited = WIFEXITED(status);
	r->exit_status = r->exited ? WEXITSTATUS(status) : -1;
	r->term_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
	return 0;
}

void harness_result_free(struct harness_result *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}
