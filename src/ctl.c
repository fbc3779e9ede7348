#include "ctl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

/* Connects to path, reads the greeting and negotiates; 0, 1 (no VM there, or not QMP) or
 * CTL_USAGE (the path cannot be a socket's), with the reason logged under who. */
static int ctl_connect(struct ctl_conn *c, const char *path, const char *who)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_error("%s: the socket path is too long", who);
		return CTL_USAGE;
	}
	strcpy(sa.sun_path, path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		log_error("%s: cannot connect to %s: %s", who, path, strerror(errno));
		return 1;
	}
	cJSON *greeting = ctl_read(c, NULL);
	if (!greeting || !cJSON_GetObjectItemCaseSensitive(greeting, "QMP")) {
		cJSON_Delete(greeting);
		log_error("%s: %s did not greet with QMP", who, path);
		return 1;
	}
	cJSON_Delete(greeting);
	cJSON *caps = cJSON_CreateObject();
	cJSON_AddStringToObject(caps, "execute", "qmp_capabilities");
	int status = ctl_exchange(c, caps, false);
	cJSON_Delete(caps);
	if (status)
		log_error("%s: %s refused qmp_capabilities", who, path);
	return status;
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
	if ((status = ctl_connect(c, path, "ctl")) != 0)
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

/* ---- kvmini snapshot SOCKET PATH ---- */

static const char snapshot_usage[] =
    "usage: kvmini snapshot SOCKET PATH\n"
    "  Writes a snapshot of the VM whose QMP socket is SOCKET (--qmp unix:SOCKET,server) to\n"
    "  PATH: QMP migrate to file:PATH, which pauses the VM for the write and lets it run on\n"
    "  after; waits until query-migrate says completed and prints one line. A relative\n"
    "  PATH is taken from the current directory. Restore it with\n"
    "  kvmini run --restore PATH and the options the VM was started with.\n"
    "  Exit status: 0 written, 1 failed (one line says why), 2 usage error.\n";

/* Sends req (consumed) and returns the reply (events skipped), or NULL with the reason
 * logged. */
static cJSON *ctl_call(struct ctl_conn *c, cJSON *req, const char *who)
{
	char *text = cJSON_PrintUnformatted(req);
	cJSON_Delete(req);
	if (!text || ctl_send(c, text) < 0) {
		free(text);
		log_error("%s: the connection to the VM was lost", who);
		return NULL;
	}
	free(text);
	for (;;) {
		cJSON *m = ctl_read(c, NULL);
		if (!m) {
			log_error("%s: the connection closed before the reply", who);
			return NULL;
		}
		if (!cJSON_GetObjectItemCaseSensitive(m, "event"))
			return m;
		cJSON_Delete(m);
	}
}

static const char *reply_error(const cJSON *m)
{
	const cJSON *err = cJSON_GetObjectItemCaseSensitive(m, "error");
	const cJSON *desc = cJSON_GetObjectItemCaseSensitive(err, "desc");
	if (cJSON_IsString(desc))
		return desc->valuestring;
	return cJSON_GetObjectItemCaseSensitive(m, "return") ? NULL : "a malformed reply";
}

/* Polls query-migrate until the migration is over (kvmini's completes within migrate;
 * QEMU's runs on after it returns). 0 completed, 1 failed (logged). */
static int snapshot_wait(struct ctl_conn *c)
{
	for (;;) {
		cJSON *req = cJSON_CreateObject();
		cJSON_AddStringToObject(req, "execute", "query-migrate");
		cJSON *m = ctl_call(c, req, "snapshot");
		if (!m)
			return 1;
		const char *bad = reply_error(m);
		if (bad) {
			log_error("snapshot: query-migrate failed: %s", bad);
			cJSON_Delete(m);
			return 1;
		}
		const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "return");
		const cJSON *st = cJSON_GetObjectItemCaseSensitive(r, "status");
		const cJSON *desc = cJSON_GetObjectItemCaseSensitive(r, "error-desc");
		int ret = -1;
		if (!cJSON_IsString(st)) {
			log_error("snapshot: the VM reports no migration after migrate");
			ret = 1;
		} else if (!strcmp(st->valuestring, "completed")) {
			ret = 0;
		} else if (!strcmp(st->valuestring, "failed") ||
			   !strcmp(st->valuestring, "cancelled")) {
			log_error("snapshot: the migration %s%s%s", st->valuestring,
				  cJSON_IsString(desc) ? ": " : "",
				  cJSON_IsString(desc) ? desc->valuestring : "");
			ret = 1;
		}
		cJSON_Delete(m);
		if (ret >= 0)
			return ret;
		usleep(20 * 1000);
	}
}

int snapshot_main(int argc, char **argv)
{
	if (argc == 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
		fputs(snapshot_usage, stdout);
		return 0;
	}
	if (argc != 2 || !argv[0][0] || !argv[1][0]) {
		fputs(snapshot_usage, stderr);
		return CTL_USAGE;
	}
	const char *sock = argv[0], *path = argv[1];
	/* The VM resolves the path against its own working directory, not ours. */
	char abs[4096];
	if (path[0] != '/') {
		char cwd[4096];
		if (!getcwd(cwd, sizeof(cwd)) ||
		    snprintf(abs, sizeof(abs), "%s/%s", cwd, path) >= (int)sizeof(abs)) {
			log_error("snapshot: cannot make %s an absolute path", path);
			return 1;
		}
		path = abs;
	}
	struct ctl_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return 1;
	c->fd = -1;
	int status = ctl_connect(c, sock, "snapshot");
	if (status)
		goto out;
	size_t ulen = strlen(path) + 6;
	char *uri = malloc(ulen);
	if (!uri) {
		status = 1;
		goto out;
	}
	snprintf(uri, ulen, "file:%s", path);
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "execute", "migrate");
	cJSON *args = cJSON_AddObjectToObject(req, "arguments");
	cJSON_AddStringToObject(args, "uri", uri);
	free(uri);
	cJSON *m = ctl_call(c, req, "snapshot");
	const char *bad = m ? reply_error(m) : NULL;
	if (!m || bad) {
		if (bad)
			log_error("snapshot: %s", bad);
		cJSON_Delete(m);
		status = 1;
		goto out;
	}
	cJSON_Delete(m);
	if ((status = snapshot_wait(c)) != 0)
		goto out;
	struct stat st;
	if (stat(path, &st) == 0)
		printf("snapshot written to %s (%.1f MiB on disk)\n", path,
		       (double)st.st_blocks * 512 / (1 << 20));
	else
		printf("snapshot written to %s\n", path);
out:
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	return status;
}
