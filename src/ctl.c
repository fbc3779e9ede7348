#include "ctl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/log.h"

#define CTL_USAGE 2

static const char ctl_usage[] =
    "usage: kvmini ctl [--raw] SOCKET [COMMAND [JSON-ARGUMENTS]]\n"
    "  Sends one QMP command to the VM listening at SOCKET (--qmp unix:SOCKET,server) and\n"
    "  prints the reply (pretty, or as received with --raw). Without COMMAND, reads one\n"
    "  command a line from stdin (\"COMMAND [JSON]\" or a whole {\"execute\":...} object).\n"
    "  Exit status: 0 every reply was a return, 1 an error reply, 2 a usage error.\n"
    "  example: kvmini ctl /tmp/vm.sock human-monitor-command '{\"command-line\":\"info cpus\"}'\n";

struct ctl_conn {
	int fd;
	char buf[1 << 16];
	size_t len;
	bool raw;
};

/* One line (one JSON message) from the server; returns a parsed object or NULL. */
static cJSON *ctl_read(struct ctl_conn *c, char **text)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (nl) {
			size_t n = (size_t)(nl - c->buf) + 1;
			cJSON *j = cJSON_ParseWithLength(c->buf, n);
			if (text) {
				*text = strndup(c->buf, n);
			}
			memmove(c->buf, c->buf + n, c->len - n);
			c->len -= n;
			return j ? j : cJSON_CreateNull();
		}
		if (c->len == sizeof(c->buf))
			return NULL; /* a line longer than 64 KiB: not supported here */
		ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return NULL;
		c->len += (size_t)r;
	}
}

static int ctl_send(struct ctl_conn *c, const char *s)
{
	size_t len = strlen(s);
	while (len) {
		ssize_t w = send(c->fd, s, len, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		s += w;
		len -= (size_t)w;
	}
	return send(c->fd, "\n", 1, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

/* Sends req and prints its reply (events that come first are printed too, to stderr);
 * returns 0 for a return, 1 otherwise. */
static int ctl_exchange(struct ctl_conn *c, cJSON *req, bool print)
{
	char *text = cJSON_PrintUnformatted(req);
	if (!text || ctl_send(c, text) < 0) {
		free(text);
		log_error("ctl: the connection to the VM was lost");
		return 1;
	}
	free(text);
	for (;;) {
		char *line = NULL;
		cJSON *m = ctl_read(c, &line);
		if (!m) {
			free(line);
			log_error("ctl: the connection closed before the reply");
			return 1;
		}
		bool is_event = cJSON_GetObjectItemCaseSensitive(m, "event") != NULL;
		bool is_ret = cJSON_GetObjectItemCaseSensitive(m, "return") != NULL;
		if (print || is_event) {
			FILE *out = is_event ? stderr : stdout;
			if (c->raw) {
				fputs(line, out);
			} else {
				cJSON *shown =
				    is_ret ? cJSON_GetObjectItemCaseSensitive(m, "return") : m;
				char *p = cJSON_Print(shown);
				if (p)
					fprintf(out, "%s\n", p);
				free(p);
			}
		}
		free(line);
		cJSON_Delete(m);
		if (!is_event)
			return is_ret ? 0 : 1;
	}
}

static cJSON *ctl_request(const char *cmd, const char *args, const char **why)
{
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "execute", cmd);
	if (args && *args) {
		cJSON *a = cJSON_Parse(args);
		if (!a || !cJSON_IsObject(a)) {
			cJSON_Delete(a);
			cJSON_Delete(req);
			*why = "the arguments must be a JSON object";
			return NULL;
		}
		cJSON_AddItemToObject(req, "arguments", a);
	}
	return req;
}

int ctl_main(int argc, char **argv)
{
	struct ctl_conn *c = calloc(1, sizeof(*c));
	int i = 0, status = 0;
	if (!c)
		return 1;
	c->fd = -1;
	if (i < argc && !strcmp(argv[i], "--raw"))
		c->raw = true, i++;
	if (i < argc && (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))) {
		fputs(ctl_usage, stdout);
		free(c);
		return 0;
	}
	if (i >= argc || argc - i > 3) {
		fputs(ctl_usage, stderr);
		free(c);
		return CTL_USAGE;
	}
	const char *path = argv[i];
	const char *cmd = i + 1 < argc ? argv[i + 1] : NULL;
	const char *args = i + 2 < argc ? argv[i + 2] : NULL;
	const char *why = NULL;
	cJSON *one = NULL;
	if (cmd && !(one = ctl_request(cmd, args, &why))) {
		log_error("ctl: %s (got '%s')", why, args);
		free(c);
		return CTL_USAGE;
	}
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_error("ctl: the socket path is too long");
		status = CTL_USAGE;
		goto out;
	}
	strcpy(sa.sun_path, path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		log_error("ctl: cannot connect to %s: %s", path, strerror(errno));
		status = 1;
		goto out;
	}
	cJSON *greeting = ctl_read(c, NULL);
	if (!greeting || !cJSON_GetObjectItemCaseSensitive(greeting, "QMP")) {
		cJSON_Delete(greeting);
		log_error("ctl: %s did not greet with QMP", path);
		status = 1;
		goto out;
	}
	cJSON_Delete(greeting);
	cJSON *caps = ctl_request("qmp_capabilities", NULL, &why);
	status = ctl_exchange(c, caps, false);
	cJSON_Delete(caps);
	if (status)
		goto out;
	if (one) {
		status = ctl_exchange(c, one, true);
		goto out;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, stdin)) > 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		char *p = line + strspn(line, " \t");
		if (!*p || *p == '#')
			continue;
		cJSON *req;
		if (*p == '{') {
			req = cJSON_Parse(p);
			why = "not JSON";
		} else {
			char *sp = p + strcspn(p, " \t");
			char *a = NULL;
			if (*sp) {
				*sp = '\0';
				a = sp + 1;
			}
			req = ctl_request(p, a, &why);
		}
		if (!req) {
			log_error("ctl: %s: '%s'", why, p);
			status = 1;
			continue;
		}
		if (ctl_exchange(c, req, true))
			status = 1;
		cJSON_Delete(req);
	}
	free(line);
out:
	cJSON_Delete(one);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	return status;
}
