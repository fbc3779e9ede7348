/* The QMP control socket (QEMU's docs/interop/qmp-spec.rst): a listening unix socket on the
 * event loop, any number of clients, each with its own capabilities negotiation, input
 * parser and bounded output buffer. Commands reach the VM only through struct vm_control
 * (and read the vCPUs for thread ids, registers and statistics); events go to every
 * negotiated client. Everything runs on the loop thread. */
#ifndef KVMINI_VMM_QMP_H
#define KVMINI_VMM_QMP_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "core/control.h"
#include "core/loop.h"
#include "core/power.h"
#include "devices/pci.h"
#include "util/err.h"
#include "vmm/vcpu.h"

#define QMP_MSG_MAX (1u << 20) /* one request; larger ones get an error */
#define QMP_OUT_MAX (1u << 20) /* a client's unsent replies; past it the client is dropped */

/* What the commands read; owned by the VM. */
struct qmp_vm {
	const struct vm_config *cfg;
	const struct vm_control *control;
	struct vm_power *power;
	struct vcpu *vcpus;
	unsigned nvcpus;
	int vm_fd;
	struct pci_host *pci; /* query-pci; NULL: no PCI bus */
};

struct qmp_client;

struct qmp_server {
	int listen_fd; /* -1: none */
	char path[108];
	bool wait;
	struct event_loop *loop; /* NULL until started (and in the fuzzer) */
	struct qmp_vm vm;
	struct qmp_client *clients;
	/* KVM's binary statistics fds, opened before the vCPUs run: a vCPU ioctl waits for
	 * KVM_RUN to return, the fd's read does not. -1 where KVM has none. */
	int vm_stats_fd;
	int vcpu_stats_fd[KVMINI_MAX_VCPUS];
	int dispatching; /* inside a client's callback: dead clients are reaped after it */
};

/* Listens at cfg->path (an old socket file there is replaced). */
int qmp_server_open(struct qmp_server *s, const struct chardev_cfg *cfg, struct errbuf *e);
/* Watches the socket on loop; with wait, first blocks until one client connects. */
int qmp_server_start(struct qmp_server *s, struct event_loop *loop, const struct qmp_vm *vm,
		     struct errbuf *e);
/* Sends {"event": name, "data": data_json, "timestamp": ...} to every negotiated client;
 * data_json is a JSON object's text or NULL. */
void qmp_server_event(struct qmp_server *s, const char *name, const char *data_json);
/* Writes what is buffered (waiting at most flush_ms in all), closes every client and the
 * socket, and removes the socket file. */
void qmp_server_close(struct qmp_server *s, int flush_ms);

/* For the fuzzer and unit tests: a server with no socket (qmp_server_close frees it), its
 * vm set by the caller; a client over fd (not watched by any loop) and its input
 * path; the greeting is queued. */
void qmp_server_init(struct qmp_server *s);
struct qmp_client *qmp_client_attach(struct qmp_server *s, int fd);
void qmp_client_feed(struct qmp_server *s, struct qmp_client *c, const char *buf, size_t len);

#endif
