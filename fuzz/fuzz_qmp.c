/* libFuzzer target for the QMP input path (src/vmm/qmp.c): the scanner that splits the byte
 * stream into JSON values, the JSON parser, request checking, argument checking and every
 * command's handler, against a fake VM (a control table that only records its run state, no
 * vCPUs). The input is fed to one negotiated client in two pieces split at its first byte's
 * value, so messages cut across reads are covered; replies go to a socketpair drained after
 * each piece. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmm/qmp.h"

struct fake_vm {
	enum vm_run_status status;
};

static int fake_pause(void *o)
{
	((struct fake_vm *)o)->status = VM_STATUS_PAUSED;
	return 0;
}

static int fake_resume(void *o)
{
	((struct fake_vm *)o)->status = VM_STATUS_RUNNING;
	return 0;
}

static void fake_reset(void *o)
{
}

static void fake_quit(void *o)
{
	((struct fake_vm *)o)->status = VM_STATUS_SHUTDOWN;
}

static enum vm_run_status fake_status(void *o)
{
	return ((struct fake_vm *)o)->status;
}

static const struct vm_control_ops fake_ops = {
    .pause = fake_pause,
    .resume = fake_resume,
    .reset = fake_reset,
    .quit = fake_quit,
    .status = fake_status,
};

static void drain(int fd)
{
	char buf[65536];
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
		return 0;
	struct fake_vm fvm = {VM_STATUS_RUNNING};
	struct vm_migration mig = {0};
	struct vm_control ctl = {.ops = &fake_ops, .opaque = &fvm, .migration = &mig};
	struct vm_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.name = "fuzz";
	struct qmp_server s;
	qmp_server_init(&s);
	s.vm = (struct qmp_vm){.cfg = &cfg, .control = &ctl, .vm_fd = -1};
	struct qmp_client *c = qmp_client_attach(&s, sv[0]);
	if (!c) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	static const char caps[] = "{\"execute\":\"qmp_capabilities\"}";
	qmp_client_feed(&s, c, caps, sizeof(caps) - 1);
	drain(sv[1]);
	size_t cut = size ? data[0] % (size + 1) : 0;
	qmp_client_feed(&s, c, (const char *)data, cut);
	drain(sv[1]);
	qmp_client_feed(&s, c, (const char *)data + cut, size - cut);
	drain(sv[1]);
	qmp_server_close(&s, 0); /* closes sv[0] */
	close(sv[1]);
	return 0;
}
