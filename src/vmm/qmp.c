#include "vmm/qmp.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "util/log.h"
#include "version.h"
#include "vmm/hmp.h"

/* The QEMU version kvmini's QMP corresponds to (what clients check features against). */
#define QMP_QEMU_MAJOR 8
#define QMP_QEMU_MINOR 2

struct qmp_client {
	struct qmp_client *next;
	int fd;
	int out_fd; /* a dup of fd, watched for EPOLLOUT while output is pending */
	bool out_watched, watched;
	bool negotiated;
	bool dead;
	/* the input scanner: one JSON value at a time */
	char *msg;
	size_t msg_len, msg_cap;
	unsigned depth;
	bool in_value, in_string, escape, scalar, oversized;
	/* unsent output */
	char *out;
	size_t out_len, out_cap;
};

struct qmp_error {
	const char *cls;
	char desc[256];
};

static int qmp_err(struct qmp_error *err, const char *cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int qmp_err(struct qmp_error *err, const char *cls, const char *fmt, ...)
{
	va_list ap;
	err->cls = cls;
	va_start(ap, fmt);
	vsnprintf(err->desc, sizeof(err->desc), fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- output ---- */

static void client_drop(struct qmp_client *c, const char *why)
{
	if (!c->dead)
		log_info("qmp: dropping a client: %s", why);
	c->dead = true;
}

static void client_arm_output(struct qmp_server *s, struct qmp_client *c);
static void reap_dead(struct qmp_server *s);

/* The server pointer sits right after each client (see qmp_client_attach), so the loop
 * callbacks need only the client. */
static struct qmp_server *server_of(struct qmp_client *c)
{
	return *(struct qmp_server **)(c + 1);
}

static void client_flush(struct qmp_server *s, struct qmp_client *c)
{
	(void)s;
	while (c->out_len && !c->dead) {
		ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			client_drop(c, "write failed");
			return;
		}
		memmove(c->out, c->out + n, c->out_len - (size_t)n);
		c->out_len -= (size_t)n;
	}
}

static void client_on_output(void *opaque, int fd, uint32_t events)
{
	struct qmp_client *c = opaque;
	struct qmp_server *s = server_of(c);
	client_flush(s, c);
	client_arm_output(s, c);
	if (!s->dispatching)
		reap_dead(s);
}

static void client_arm_output(struct qmp_server *s, struct qmp_client *c)
{
	if (!s->loop || c->dead || c->out_fd < 0)
		return;
	bool want = c->out_len > 0;
	if (want == c->out_watched)
		return;
	int ret = want ? loop_add_fd(s->loop, c->out_fd, EPOLLOUT, client_on_output, c)
		       : loop_del_fd(s->loop, c->out_fd);
	if (ret == 0)
		c->out_watched = want;
}

static void client_send(struct qmp_server *s, struct qmp_client *c, cJSON *msg)
{
	if (c->dead)
		return;
	char *text = cJSON_PrintUnformatted(msg);
	if (!text) {
		client_drop(c, "out of memory");
		return;
	}
	size_t n = strlen(text);
	if (c->out_len + n + 2 > QMP_OUT_MAX) {
		free(text);
		client_drop(c, "it does not read its replies (output buffer full)");
		return;
	}
	if (c->out_len + n + 2 > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		while (cap < c->out_len + n + 2)
			cap *= 2;
		char *p = realloc(c->out, cap);
		if (!p) {
			free(text);
			client_drop(c, "out of memory");
			return;
		}
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, text, n);
	memcpy(c->out + c->out_len + n, "\r\n", 2);
	c->out_len += n + 2;
	free(text);
	client_flush(s, c);
	client_arm_output(s, c);
}

/* ---- commands ---- */

typedef cJSON *(*qmp_cmd_fn)(struct qmp_server *s, struct qmp_client *c, cJSON *args,
			     struct qmp_error *err);

/* An argument: name, its JSON type ('s' string, 'i' integer, 'b' bool, 'a' array, 'o'
 * object, '*' any) and whether it must be there. */
struct qmp_arg {
	const char *name;
	char type;
	bool required;
};

struct qmp_cmd {
	const char *name;
	qmp_cmd_fn fn;
	const struct qmp_arg *args; /* NULL-name terminated; NULL for none */
};

static cJSON *ok(void)
{
	return cJSON_CreateObject();
}

static cJSON *cmd_capabilities(struct qmp_server *s, struct qmp_client *c, cJSON *args,
			       struct qmp_error *err)
{
	cJSON *en = args ? cJSON_GetObjectItemCaseSensitive(args, "enable") : NULL;
	cJSON *cap;
	cJSON_ArrayForEach(cap, en)
	{
		if (!cJSON_IsString(cap)) {
			qmp_err(err, "GenericError",
				"Invalid parameter type for 'enable', expected: string");
			return NULL;
		}
		qmp_err(err, "GenericError", "Capability '%s' not available", cap->valuestring);
		return NULL;
	}
	c->negotiated = true;
	return ok();
}

static enum vm_run_status vm_status(struct qmp_server *s)
{
	const struct vm_control *ctl = s->vm.control;
	return ctl && ctl->ops && ctl->ops->status ? ctl->ops->status(ctl->opaque)
						   : VM_STATUS_RUNNING;
}

static cJSON *cmd_query_status(struct qmp_server *s, struct qmp_client *c, cJSON *args,
			       struct qmp_error *err)
{
	enum vm_run_status st = vm_status(s);
	cJSON *r = cJSON_CreateObject();
	cJSON_AddBoolToObject(r, "running", st == VM_STATUS_RUNNING);
	cJSON_AddBoolToObject(r, "singlestep", false);
	cJSON_AddStringToObject(r, "status", vm_run_status_name(st));
	return r;
}

static cJSON *run_pause_op(struct qmp_server *s, bool stop, struct qmp_error *err)
{
	const struct vm_control *ctl = s->vm.control;
	int (*op)(void *) = ctl && ctl->ops ? (stop ? ctl->ops->pause : ctl->ops->resume) : NULL;
	int ret = op ? op(ctl->opaque) : -ENOTSUP;
	if (ret < 0) {
		qmp_err(err, "GenericError", "%s failed: %s", stop ? "stop" : "cont",
			ret == -ESHUTDOWN ? "the VM is shutting down" : strerror(-ret));
		return NULL;
	}
	return ok();
}

static cJSON *cmd_stop(struct qmp_server *s, struct qmp_client *c, cJSON *args,
		       struct qmp_error *err)
{
	return run_pause_op(s, true, err);
}

static cJSON *cmd_cont(struct qmp_server *s, struct qmp_client *c, cJSON *args,
		       struct qmp_error *err)
{
	return run_pause_op(s, false, err);
}

static cJSON *cmd_system_reset(struct qmp_server *s, struct qmp_client *c, cJSON *args,
			       struct qmp_error *err)
{
	const struct vm_control *ctl = s->vm.control;
	if (!ctl || !ctl->ops || !ctl->ops->reset) {
		qmp_err(err, "GenericError", "system_reset is not available");
		return NULL;
	}
	ctl->ops->reset(ctl->opaque);
	return ok();
}

static cJSON *cmd_system_powerdown(struct qmp_server *s, struct qmp_client *c, cJSON *args,
				   struct qmp_error *err)
{
	const struct vm_control *ctl = s->vm.control;
	int ret =
	    ctl && ctl->ops && ctl->ops->powerdown ? ctl->ops->powerdown(ctl->opaque) : -ENOTSUP;
	if (ret < 0) {
		qmp_err(err, "GenericError", "system_powerdown failed: %s",
			ret == -ESHUTDOWN ? "the VM is shutting down" : strerror(-ret));
		return NULL;
	}
	return ok();
}

static cJSON *cmd_query_vm_generation_id(struct qmp_server *s, struct qmp_client *c, cJSON *args,
					 struct qmp_error *err)
{
	const struct vm_control *ctl = s->vm.control;
	char guid[37];
	int ret = ctl && ctl->ops && ctl->ops->generation_id
		      ? ctl->ops->generation_id(ctl->opaque, guid)
		      : -ENODEV;
	if (ret < 0) {
		qmp_err(err, "GenericError", "VM Generation ID device not found");
		return NULL;
	}
	cJSON *r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "guid", guid);
	return r;
}

static cJSON *cmd_quit(struct qmp_server *s, struct qmp_client *c, cJSON *args,
		       struct qmp_error *err)
{
	const struct vm_control *ctl = s->vm.control;
	if (ctl && ctl->ops && ctl->ops->quit)
		ctl->ops->quit(ctl->opaque);
	else if (s->vm.power)
		power_request_stop(s->vm.power, STOP_QUIT, 0);
	return ok();
}

static cJSON *cmd_query_version(struct qmp_server *s, struct qmp_client *c, cJSON *args,
				struct qmp_error *err)
{
	cJSON *r = cJSON_CreateObject();
	cJSON *q = cJSON_AddObjectToObject(r, "qemu");
	cJSON_AddNumberToObject(q, "micro", 0);
	cJSON_AddNumberToObject(q, "minor", QMP_QEMU_MINOR);
	cJSON_AddNumberToObject(q, "major", QMP_QEMU_MAJOR);
	cJSON_AddStringToObject(r, "package", "kvmini " KVMINI_VERSION);
	return r;
}

static cJSON *cmd_query_commands(struct qmp_server *s, struct qmp_client *c, cJSON *args,
				 struct qmp_error *err);

static cJSON *cmd_query_name(struct qmp_server *s, struct qmp_client *c, cJSON *args,
			     struct qmp_error *err)
{
	cJSON *r = cJSON_CreateObject();
	if (s->vm.cfg && s->vm.cfg->name)
		cJSON_AddStringToObject(r, "name", s->vm.cfg->name);
	return r;
}

static cJSON *cmd_query_kvm(struct qmp_server *s, struct qmp_client *c, cJSON *args,
			    struct qmp_error *err)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddBoolToObject(r, "enabled", true);
	cJSON_AddBoolToObject(r, "present", true);
	return r;
}

static void qom_path(char *buf, size_t n, unsigned i)
{
	snprintf(buf, n, "/machine/unattached/device[%u]", i);
}

static cJSON *cmd_query_cpus_fast(struct qmp_server *s, struct qmp_client *c, cJSON *args,
				  struct qmp_error *err)
{
	cJSON *r = cJSON_CreateArray();
	for (unsigned i = 0; i < s->vm.nvcpus; i++) {
		char path[64];
		cJSON *cpu = cJSON_CreateObject();
		qom_path(path, sizeof(path), i);
		cJSON_AddNumberToObject(cpu, "cpu-index", i);
		cJSON_AddStringToObject(cpu, "qom-path", path);
		cJSON_AddNumberToObject(cpu, "thread-id", atomic_load(&s->vm.vcpus[i].tid));
		cJSON *props = cJSON_AddObjectToObject(cpu, "props");
		cJSON_AddNumberToObject(props, "core-id", i);
		cJSON_AddNumberToObject(props, "thread-id", 0);
		cJSON_AddNumberToObject(props, "socket-id", 0);
		cJSON_AddStringToObject(cpu, "target", "x86_64");
		cJSON_AddItemToArray(r, cpu);
	}
	return r;
}

/* KVM's binary statistics (Documentation/virt/kvm/api.rst, "KVM_GET_STATS_FD"): a header,
 * descriptors of name_size-byte names, and the data, read with pread at their offsets. A
 * statistic of one value becomes a number, a histogram a list. Returns an array or NULL
 * with errno set. */
static cJSON *read_kvm_stats(int fd)
{
	if (fd < 0)
		return NULL;
	struct kvm_stats_header h;
	cJSON *stats = NULL;
	char *descs = NULL;
	uint64_t *vals = NULL;
	if (pread(fd, &h, sizeof(h), 0) != sizeof(h) || h.num_desc > 4096 || h.name_size > 4096) {
		errno = EIO;
		goto out;
	}
	size_t dsize = sizeof(struct kvm_stats_desc) + h.name_size;
	descs = calloc(h.num_desc ? h.num_desc : 1, dsize);
	if (!descs)
		goto out;
	if (pread(fd, descs, dsize * h.num_desc, h.desc_offset) != (ssize_t)(dsize * h.num_desc)) {
		errno = EIO;
		goto out;
	}
	stats = cJSON_CreateArray();
	for (uint32_t i = 0; i < h.num_desc; i++) {
		struct kvm_stats_desc *d = (struct kvm_stats_desc *)(descs + i * dsize);
		if (d->size == 0 || d->size > 1024)
			continue;
		vals = realloc(vals, d->size * sizeof(uint64_t));
		if (!vals)
			break;
		size_t len = d->size * sizeof(uint64_t);
		if (pread(fd, vals, len, h.data_offset + d->offset) != (ssize_t)len)
			continue;
		char name[257];
		size_t nl = h.name_size < 256 ? h.name_size : 256;
		memcpy(name, d->name, nl);
		name[nl] = '\0';
		cJSON *st = cJSON_CreateObject();
		cJSON_AddStringToObject(st, "name", name);
		if (d->size == 1) {
			cJSON_AddNumberToObject(st, "value", (double)vals[0]);
		} else {
			cJSON *list = cJSON_AddArrayToObject(st, "value");
			for (uint32_t k = 0; k < d->size; k++)
				cJSON_AddItemToArray(list, cJSON_CreateNumber((double)vals[k]));
		}
		cJSON_AddItemToArray(stats, st);
	}
out:
	free(vals);
	free(descs);
	return stats;
}

/* The exits kvmini counts itself (provider "kvmini"), given beside KVM's: where KVM has no
 * statistics fd (KVM_CAP_BINARY_STATS_FD, Linux 5.14), and where its counters stay 0. */
static cJSON *own_vcpu_stats(const struct vcpu *v)
{
	const struct vcpu_stats *st = &v->stats;
	unsigned long io = atomic_load(&st->exits_io), mmio = atomic_load(&st->exits_mmio),
		      other = atomic_load(&st->exits_other), rec = atomic_load(&st->recovered);
	const struct {
		const char *name;
		unsigned long v;
	} items[] = {{"exits", io + mmio + other},
		     {"io_exits", io},
		     {"mmio_exits", mmio},
		     {"other_exits", other},
		     {"emulation_recovered", rec}};
	cJSON *stats = cJSON_CreateArray();
	for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", items[i].name);
		cJSON_AddNumberToObject(o, "value", (double)items[i].v);
		cJSON_AddItemToArray(stats, o);
	}
	return stats;
}

static cJSON *provider(const char *name, cJSON *stats)
{
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "provider", name);
	cJSON_AddItemToObject(p, "stats", stats);
	return p;
}

static bool vcpu_wanted(cJSON *vcpus, const char *path)
{
	if (!vcpus)
		return true;
	cJSON *it;
	cJSON_ArrayForEach(it, vcpus) if (cJSON_IsString(it) &&
					  !strcmp(it->valuestring, path)) return true;
	return false;
}

static cJSON *cmd_query_stats(struct qmp_server *s, struct qmp_client *c, cJSON *args,
			      struct qmp_error *err)
{
	const char *target = cJSON_GetObjectItemCaseSensitive(args, "target")->valuestring;
	cJSON *vcpus = cJSON_GetObjectItemCaseSensitive(args, "vcpus");
	cJSON *r;
	if (!strcmp(target, "vm")) {
		/* No VM statistics fd: an empty list, as QEMU gives for no provider. */
		cJSON *stats = read_kvm_stats(s->vm_stats_fd);
		r = cJSON_CreateArray();
		if (stats) {
			cJSON *e = cJSON_CreateObject();
			cJSON *pl = cJSON_AddArrayToObject(e, "providers");
			cJSON_AddItemToArray(pl, provider("kvm", stats));
			cJSON_AddItemToArray(r, e);
		}
		return r;
	}
	if (strcmp(target, "vcpu")) {
		qmp_err(err, "GenericError",
			"Parameter 'target' does not accept value '%s' (vm or vcpu)", target);
		return NULL;
	}
	r = cJSON_CreateArray();
	for (unsigned i = 0; i < s->vm.nvcpus; i++) {
		char path[64];
		qom_path(path, sizeof(path), i);
		if (!vcpu_wanted(vcpus, path))
			continue;
		cJSON *stats = read_kvm_stats(s->vcpu_stats_fd[i]);
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "qom-path", path);
		cJSON *pl = cJSON_AddArrayToObject(e, "providers");
		/* KVM's figures, and kvmini's own exit counts beside them: PVM has the
		 * statistics fd but leaves its exit counters at 0. */
		if (stats)
			cJSON_AddItemToArray(pl, provider("kvm", stats));
		cJSON_AddItemToArray(pl, provider("kvmini", own_vcpu_stats(&s->vm.vcpus[i])));
		cJSON_AddItemToArray(r, e);
	}
	return r;
}

static const char *chardev_filename(const struct chardev_cfg *ch, char *buf, size_t n)
{
	switch (ch->backend) {
	case CHARDEV_STDIO:
		return "stdio";
	case CHARDEV_NULL:
		return "null";
	case CHARDEV_PTY:
		return "pty";
	case CHARDEV_FILE:
		snprintf(buf, n, "file:%s", ch->path ? ch->path : "");
		return buf;
	case CHARDEV_UNIX:
		snprintf(buf, n, "unix:%s%s", ch->path ? ch->path : "",
			 ch->server ? ",server=on" : "");
		return buf;
	default:
		return "none";
	}
}

static cJSON *cmd_query_chardev(struct qmp_server *s, struct qmp_client *c, cJSON *args,
				struct qmp_error *err)
{
	cJSON *r = cJSON_CreateArray();
	const struct vm_config *cfg = s->vm.cfg;
	char buf[160];
	for (unsigned i = 0; cfg && i < cfg->nserials; i++) {
		const struct chardev_cfg *ch = &cfg->serial[i];
		if (ch->backend == CHARDEV_NONE)
			continue;
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "label", ch->id ? ch->id : "serial");
		cJSON_AddStringToObject(o, "filename", chardev_filename(ch, buf, sizeof(buf)));
		cJSON_AddBoolToObject(o, "frontend-open", true);
		cJSON_AddItemToArray(r, o);
	}
	cJSON *o = cJSON_CreateObject();
	snprintf(buf, sizeof(buf), "unix:%s,server=on", s->path);
	cJSON_AddStringToObject(o, "label", cfg && cfg->qmp.id ? cfg->qmp.id : "qmp");
	cJSON_AddStringToObject(o, "filename", buf);
	cJSON_AddBoolToObject(o, "frontend-open", true);
	cJSON_AddItemToArray(r, o);
	return r;
}

static unsigned cfg16(const struct pci_function *f, unsigned off)
{
	return f->cfg[off] | (unsigned)f->cfg[off + 1] << 8;
}

/* QEMU's shape: one bus, its functions with IDs, class and memory BARs, read from config
 * space under the host's lock. */
static cJSON *cmd_query_pci(struct qmp_server *s, struct qmp_client *c, cJSON *args,
			    struct qmp_error *err)
{
	cJSON *r = cJSON_CreateArray();
	struct pci_host *h = s->vm.pci;
	if (!h)
		return r;
	cJSON *bus = cJSON_CreateObject();
	cJSON_AddNumberToObject(bus, "bus", 0);
	cJSON *devs = cJSON_AddArrayToObject(bus, "devices");
	pthread_mutex_lock(&h->lock);
	for (unsigned slot = 0; slot < PCI_MAX_DEVICES; slot++) {
		const struct pci_function *f = h->fns[slot];
		if (!f)
			continue;
		cJSON *d = cJSON_CreateObject();
		cJSON_AddNumberToObject(d, "bus", 0);
		cJSON_AddNumberToObject(d, "slot", f->devfn >> 3);
		cJSON_AddNumberToObject(d, "function", f->devfn & 7);
		cJSON *ci = cJSON_AddObjectToObject(d, "class_info");
		cJSON_AddNumberToObject(ci, "class", cfg16(f, 0x0a));
		cJSON *id = cJSON_AddObjectToObject(d, "id");
		cJSON_AddNumberToObject(id, "vendor", cfg16(f, 0x00));
		cJSON_AddNumberToObject(id, "device", cfg16(f, 0x02));
		cJSON_AddNumberToObject(id, "subsystem-vendor", cfg16(f, 0x2c));
		cJSON_AddNumberToObject(id, "subsystem", cfg16(f, 0x2e));
		cJSON_AddStringToObject(d, "qdev_id", "");
		cJSON *regions = cJSON_AddArrayToObject(d, "regions");
		for (unsigned b = 0; b < PCI_MAX_BARS; b++) {
			const struct pci_bar *bar = &f->bars[b];
			if (!bar->size)
				continue;
			cJSON *reg = cJSON_CreateObject();
			cJSON_AddNumberToObject(reg, "bar", b);
			cJSON_AddStringToObject(reg, "type", "memory");
			cJSON_AddNumberToObject(reg, "address", (double)bar->addr);
			cJSON_AddNumberToObject(reg, "size", (double)bar->size);
			cJSON_AddBoolToObject(reg, "prefetch", bar->prefetchable);
			cJSON_AddBoolToObject(reg, "mem_type_64", bar->is_64);
			cJSON_AddItemToArray(regions, reg);
		}
		cJSON_AddItemToArray(devs, d);
	}
	pthread_mutex_unlock(&h->lock);
	cJSON_AddItemToArray(r, bus);
	return r;
}

/* --- device counters: query-blockstats and x-query-virtio-stats --- */

#define QMP_STATS_DEVICES 64

/* The VM's device counters (malloc'd, *n entries; NULL with *n 0 if there are none). */
static struct vm_device_stats *qmp_device_stats(struct qmp_server *s, unsigned *n)
{
	const struct vm_control *ctl = s->vm.control;
	*n = 0;
	if (!ctl || !ctl->ops->device_stats)
		return NULL;
	struct vm_device_stats *st = malloc(QMP_STATS_DEVICES * sizeof(*st));
	if (!st)
		return NULL;
	unsigned got = ctl->ops->device_stats(ctl->opaque, st, QMP_STATS_DEVICES);
	*n = got < QMP_STATS_DEVICES ? got : QMP_STATS_DEVICES;
	return st;
}

/* QEMU's BlockStats for every disk: "device" is the -drive's id, "qdev" the device's QOM
 * path, "stats" a BlockDeviceStats (qapi/block-core.json) with kvmini's counters; times,
 * merges and zoned appends are not measured and read 0. query-nodes gives the same list
 * (kvmini has one node per drive). */
static cJSON *cmd_query_blockstats(struct qmp_server *s, struct qmp_client *c, cJSON *args,
				   struct qmp_error *err)
{
	static const char *const unmeasured[] = {
	    "zap_bytes",
	    "zap_operations",
	    "rd_total_time_ns",
	    "wr_total_time_ns",
	    "zap_total_time_ns",
	    "flush_total_time_ns",
	    "unmap_total_time_ns",
	    "rd_merged",
	    "wr_merged",
	    "zap_merged",
	    "unmap_merged",
	    "failed_zap_operations",
	    "invalid_zap_operations",
	};
	cJSON *r = cJSON_CreateArray();
	unsigned n;
	struct vm_device_stats *st = qmp_device_stats(s, &n);
	for (unsigned i = 0; i < n; i++) {
		const struct vm_device_stats *d = &st[i];
		if (!d->drive)
			continue;
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "device", d->drive);
		cJSON_AddStringToObject(e, "qdev", d->qdev);
		cJSON *o = cJSON_AddObjectToObject(e, "stats");
		for (unsigned k = 0; k < d->nblock; k++)
			cJSON_AddNumberToObject(o, d->block[k].name, (double)d->block[k].value);
		for (unsigned k = 0; k < sizeof(unmeasured) / sizeof(unmeasured[0]); k++)
			cJSON_AddNumberToObject(o, unmeasured[k], 0);
		cJSON_AddBoolToObject(o, "account_invalid", true);
		cJSON_AddBoolToObject(o, "account_failed", true);
		cJSON_AddArrayToObject(o, "timed_stats");
		cJSON_AddItemToArray(r, e);
	}
	free(st);
	return r;
}

/* kvmini's own (QEMU has x-query-virtio-status for the negotiation state): every virtio
 * device with its transport, address, QOM path and counters. */
static cJSON *cmd_x_query_virtio_stats(struct qmp_server *s, struct qmp_client *c, cJSON *args,
				       struct qmp_error *err)
{
	cJSON *r = cJSON_CreateArray();
	unsigned n;
	struct vm_device_stats *st = qmp_device_stats(s, &n);
	for (unsigned i = 0; i < n; i++) {
		const struct vm_device_stats *d = &st[i];
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "name", d->name);
		cJSON_AddStringToObject(e, "qdev", d->qdev);
		cJSON_AddStringToObject(e, "transport", d->transport);
		cJSON_AddStringToObject(e, "address", d->address);
		cJSON *o = cJSON_AddObjectToObject(e, "stats");
		for (unsigned k = 0; k < d->nstats; k++)
			cJSON_AddNumberToObject(o, d->stats[k].name, (double)d->stats[k].value);
		cJSON_AddItemToArray(r, e);
	}
	free(st);
	return r;
}

/* Every -drive/--disk (the virtio-blk backends), in QEMU's shape: raw images only. */
static cJSON *cmd_query_block(struct qmp_server *s, struct qmp_client *c, cJSON *args,
			      struct qmp_error *err)
{
	cJSON *r = cJSON_CreateArray();
	const struct vm_config *cfg = s->vm.cfg;
	for (unsigned i = 0; cfg && i < cfg->drives.n; i++) {
		struct keyed_opts *d = (struct keyed_opts *)&cfg->drives.items[i];
		const char *file = keyed_get(d, "file");
		struct errbuf e = {{0}};
		bool ro = false;
		if (keyed_get_bool(d, "readonly", false, &ro, &e) < 0)
			ro = false;
		cJSON *b = cJSON_CreateObject();
		cJSON_AddStringToObject(b, "device", d->id ? d->id : "");
		cJSON_AddStringToObject(b, "qdev", "");
		cJSON_AddBoolToObject(b, "removable", false);
		cJSON_AddBoolToObject(b, "locked", false);
		cJSON_AddStringToObject(b, "type", "unknown");
		if (file) {
			struct stat st;
			cJSON *ins = cJSON_AddObjectToObject(b, "inserted");
			cJSON_AddStringToObject(ins, "file", file);
			cJSON_AddBoolToObject(ins, "ro", ro);
			cJSON_AddStringToObject(ins, "drv", "raw");
			cJSON_AddBoolToObject(ins, "encrypted", false);
			cJSON_AddNumberToObject(ins, "backing_file_depth", 0);
			cJSON *img = cJSON_AddObjectToObject(ins, "image");
			cJSON_AddStringToObject(img, "filename", file);
			cJSON_AddStringToObject(img, "format", "raw");
			cJSON_AddNumberToObject(img, "virtual-size",
						stat(file, &st) == 0 ? (double)st.st_size : 0);
		}
		cJSON_AddItemToArray(r, b);
	}
	return r;
}

static cJSON *cmd_query_migrate(struct qmp_server *s, struct qmp_client *c, cJSON *args,
				struct qmp_error *err)
{
	cJSON *r = ok();
	const struct vm_control *ctl = s->vm.control;
	if (ctl && ctl->migration && ctl->migration->status)
		cJSON_AddStringToObject(r, "status", ctl->migration->status);
	return r;
}

/* migrate to "file:PATH" (QEMU 8.2's spelling) writes a snapshot; the VM is paused for it
 * and resumed after (QEMU leaves it paused). Other URIs are live migration, which comes
 * later. The write runs on the loop thread: consoles wait for it. */
static cJSON *cmd_migrate(struct qmp_server *s, struct qmp_client *c, cJSON *args,
			  struct qmp_error *err)
{
	const char *uri = cJSON_GetObjectItemCaseSensitive(args, "uri")->valuestring;
	const struct vm_control *ctl = s->vm.control;
	if (strncmp(uri, "file:", 5) || !uri[5]) {
		qmp_err(err, "GenericError",
			"only file:PATH is supported (live migration over TCP comes later)");
		return NULL;
	}
	if (!ctl || !ctl->ops->snapshot_save) {
		qmp_err(err, "GenericError", "snapshots are not available in this build");
		return NULL;
	}
	struct errbuf e = {{0}};
	int r = ctl->ops->snapshot_save(ctl->opaque, uri + 5, &e);
	vm_migration_done(ctl, r == 0);
	if (r < 0) {
		qmp_err(err, "GenericError", "%s", e.msg);
		return NULL;
	}
	return ok();
}

/* migrate-incoming {"uri": "file:PATH"}, only with -incoming defer (status inmigrate): the
 * snapshot is loaded and the VM runs, unless -S (or a stop since) keeps it paused, as
 * QEMU's autostart. A file that fails its checks changes nothing: the VM still waits. */
static cJSON *cmd_migrate_incoming(struct qmp_server *s, struct qmp_client *c, cJSON *args,
				   struct qmp_error *err)
{
	const char *uri = cJSON_GetObjectItemCaseSensitive(args, "uri")->valuestring;
	const struct vm_control *ctl = s->vm.control;
	if (!ctl || !ctl->ops->incoming) {
		qmp_err(err, "GenericError", "incoming migration is not available in this build");
		return NULL;
	}
	if (!ctl->ops->status || ctl->ops->status(ctl->opaque) != VM_STATUS_INMIGRATE) {
		qmp_err(err, "GenericError",
			"migrate-incoming is only allowed with -incoming defer, before the "
			"migration has arrived");
		return NULL;
	}
	if (strncmp(uri, "file:", 5) || !uri[5]) {
		qmp_err(err, "GenericError",
			"only file:PATH is supported (live migration over TCP comes later)");
		return NULL;
	}
	struct errbuf e = {{0}};
	int r = ctl->ops->incoming(ctl->opaque, uri + 5, &e);
	vm_migration_done(ctl, r == 0);
	if (r < 0) {
		qmp_err(err, "GenericError", "%s", e.msg);
		return NULL;
	}
	return ok();
}

static cJSON *cmd_hmp(struct qmp_server *s, struct qmp_client *c, cJSON *args,
		      struct qmp_error *err)
{
	const char *line = cJSON_GetObjectItemCaseSensitive(args, "command-line")->valuestring;
	struct hmp_env env = {s->vm.control, s->vm.power, s->vm.vcpus, s->vm.nvcpus};
	struct hmp_out *out = malloc(sizeof(*out));
	if (!out) {
		qmp_err(err, "GenericError", "out of memory");
		return NULL;
	}
	out->len = 0;
	hmp_run(&env, line, out);
	out->buf[out->len] = '\0';
	cJSON *r = cJSON_CreateString(out->buf);
	free(out);
	return r;
}

static const struct qmp_arg args_capabilities[] = {{"enable", 'a', false}, {NULL, 0, false}};
static const struct qmp_arg args_stats[] = {
    {"target", 's', true}, {"providers", 'a', false}, {"vcpus", 'a', false}, {NULL, 0, false}};
static const struct qmp_arg args_hmp[] = {
    {"command-line", 's', true}, {"cpu-index", 'i', false}, {NULL, 0, false}};
static const struct qmp_arg args_migrate[] = {{"uri", 's', true},     {"detach", 'b', false},
					      {"blk", 'b', false},    {"inc", 'b', false},
					      {"resume", 'b', false}, {NULL, 0, false}};
static const struct qmp_arg args_blockstats[] = {{"query-nodes", 'b', false}, {NULL, 0, false}};
static const struct qmp_arg args_incoming[] = {{"uri", 's', true}, {NULL, 0, false}};

static const struct qmp_cmd qmp_cmds[] = {
    {"qmp_capabilities", cmd_capabilities, args_capabilities},
    {"query-status", cmd_query_status, NULL},
    {"stop", cmd_stop, NULL},
    {"cont", cmd_cont, NULL},
    {"system_reset", cmd_system_reset, NULL},
    {"system_powerdown", cmd_system_powerdown, NULL},
    {"quit", cmd_quit, NULL},
    {"query-version", cmd_query_version, NULL},
    {"query-commands", cmd_query_commands, NULL},
    {"query-name", cmd_query_name, NULL},
    {"query-kvm", cmd_query_kvm, NULL},
    {"query-cpus-fast", cmd_query_cpus_fast, NULL},
    {"query-stats", cmd_query_stats, args_stats},
    {"query-chardev", cmd_query_chardev, NULL},
    {"query-block", cmd_query_block, NULL},
    {"query-pci", cmd_query_pci, NULL},
    {"query-blockstats", cmd_query_blockstats, args_blockstats},
    {"x-query-virtio-stats", cmd_x_query_virtio_stats, NULL},
    {"query-migrate", cmd_query_migrate, NULL},
    {"query-vm-generation-id", cmd_query_vm_generation_id, NULL},
    {"migrate", cmd_migrate, args_migrate},
    {"migrate-incoming", cmd_migrate_incoming, args_incoming},
    {"human-monitor-command", cmd_hmp, args_hmp},
};

#define NCMDS (sizeof(qmp_cmds) / sizeof(qmp_cmds[0]))

static cJSON *cmd_query_commands(struct qmp_server *s, struct qmp_client *c, cJSON *args,
				 struct qmp_error *err)
{
	cJSON *r = cJSON_CreateArray();
	for (size_t i = 0; i < NCMDS; i++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", qmp_cmds[i].name);
		cJSON_AddItemToArray(r, o);
	}
	return r;
}

static const char *type_name(char t)
{
	switch (t) {
	case 's':
		return "string";
	case 'i':
		return "integer";
	case 'b':
		return "boolean";
	case 'a':
		return "array";
	case 'o':
		return "object";
	}
	return "any";
}

static bool type_ok(const cJSON *v, char t)
{
	switch (t) {
	case 's':
		return cJSON_IsString(v);
	case 'i':
		return cJSON_IsNumber(v) && v->valuedouble == (double)(long long)v->valuedouble;
	case 'b':
		return cJSON_IsBool(v);
	case 'a':
		return cJSON_IsArray(v);
	case 'o':
		return cJSON_IsObject(v);
	}
	return true;
}

static int check_args(const struct qmp_cmd *cmd, cJSON *args, struct qmp_error *err)
{
	cJSON *a;
	cJSON_ArrayForEach(a, args)
	{
		const struct qmp_arg *spec = cmd->args;
		while (spec && spec->name && strcmp(spec->name, a->string))
			spec++;
		if (!spec || !spec->name)
			return qmp_err(err, "GenericError", "Parameter '%.64s' is unexpected",
				       a->string);
		if (!type_ok(a, spec->type))
			return qmp_err(err, "GenericError",
				       "Invalid parameter type for '%s', expected: %s", spec->name,
				       type_name(spec->type));
	}
	for (const struct qmp_arg *spec = cmd->args; spec && spec->name; spec++)
		if (spec->required && !cJSON_GetObjectItemCaseSensitive(args, spec->name))
			return qmp_err(err, "GenericError", "Parameter '%s' is missing",
				       spec->name);
	return 0;
}

/* One request, as qmp-spec.rst describes: an object with "execute" (a string), optional
 * "arguments" (an object) and "id" (any value, echoed). */
static cJSON *dispatch(struct qmp_server *s, struct qmp_client *c, cJSON *req,
		       struct qmp_error *err)
{
	if (!cJSON_IsObject(req)) {
		qmp_err(err, "GenericError", "QMP input must be a JSON object");
		return NULL;
	}
	cJSON *exec = NULL, *args = NULL, *m;
	cJSON_ArrayForEach(m, req)
	{
		if (!strcmp(m->string, "execute"))
			exec = m;
		else if (!strcmp(m->string, "arguments"))
			args = m;
		else if (strcmp(m->string, "id")) {
			qmp_err(err, "GenericError", "QMP input member '%.64s' is unexpected",
				m->string);
			return NULL;
		}
	}
	if (!exec) {
		qmp_err(err, "GenericError", "QMP input lacks member 'execute'");
		return NULL;
	}
	if (!cJSON_IsString(exec)) {
		qmp_err(err, "GenericError", "QMP input member 'execute' must be a string");
		return NULL;
	}
	if (args && !cJSON_IsObject(args)) {
		qmp_err(err, "GenericError", "QMP input member 'arguments' must be an object");
		return NULL;
	}
	const char *name = exec->valuestring;
	bool caps = !strcmp(name, "qmp_capabilities");
	if (!c->negotiated && !caps) {
		qmp_err(err, "CommandNotFound",
			"Expecting capabilities negotiation with 'qmp_capabilities'");
		return NULL;
	}
	if (c->negotiated && caps) {
		qmp_err(err, "CommandNotFound",
			"Capabilities negotiation is already complete, command ignored");
		return NULL;
	}
	const struct qmp_cmd *cmd = NULL;
	for (size_t i = 0; i < NCMDS; i++)
		if (!strcmp(qmp_cmds[i].name, name))
			cmd = &qmp_cmds[i];
	if (!cmd) {
		qmp_err(err, "CommandNotFound", "The command %.64s has not been found", name);
		return NULL;
	}
	if (check_args(cmd, args, err) < 0)
		return NULL;
	return cmd->fn(s, c, args, err);
}

static void send_error(struct qmp_server *s, struct qmp_client *c, const struct qmp_error *err,
		       cJSON *id)
{
	cJSON *msg = cJSON_CreateObject();
	cJSON *e = cJSON_AddObjectToObject(msg, "error");
	cJSON_AddStringToObject(e, "class", err->cls);
	cJSON_AddStringToObject(e, "desc", err->desc);
	if (id)
		cJSON_AddItemToObject(msg, "id", cJSON_Duplicate(id, true));
	client_send(s, c, msg);
	cJSON_Delete(msg);
}

static void handle_message(struct qmp_server *s, struct qmp_client *c, const char *text, size_t len)
{
	struct qmp_error err = {0};
	cJSON *req = cJSON_ParseWithLength(text, len);
	if (!req) {
		qmp_err(&err, "GenericError", "JSON parse error");
		send_error(s, c, &err, NULL);
		return;
	}
	cJSON *id = cJSON_IsObject(req) ? cJSON_GetObjectItemCaseSensitive(req, "id") : NULL;
	cJSON *ret = dispatch(s, c, req, &err);
	if (!ret) {
		send_error(s, c, &err, id);
	} else {
		cJSON *msg = cJSON_CreateObject();
		cJSON_AddItemToObject(msg, "return", ret);
		if (id)
			cJSON_AddItemToObject(msg, "id", cJSON_Duplicate(id, true));
		client_send(s, c, msg);
		cJSON_Delete(msg);
	}
	cJSON_Delete(req);
}

/* ---- input: one JSON value at a time, split by nesting depth outside strings ---- */

static void msg_put(struct qmp_client *c, char ch)
{
	if (c->oversized)
		return;
	if (c->msg_len >= QMP_MSG_MAX) {
		c->oversized = true;
		return;
	}
	if (c->msg_len + 1 > c->msg_cap) {
		size_t cap = c->msg_cap ? c->msg_cap * 2 : 1024;
		char *p = realloc(c->msg, cap);
		if (!p) {
			c->oversized = true;
			return;
		}
		c->msg = p;
		c->msg_cap = cap;
	}
	c->msg[c->msg_len++] = ch;
}

static void msg_done(struct qmp_server *s, struct qmp_client *c)
{
	if (c->oversized) {
		struct qmp_error err;
		qmp_err(&err, "GenericError", "QMP message too large (the limit is %u bytes)",
			QMP_MSG_MAX);
		send_error(s, c, &err, NULL);
	} else {
		handle_message(s, c, c->msg, c->msg_len);
	}
	c->msg_len = 0;
	c->depth = 0;
	c->in_value = c->in_string = c->escape = c->scalar = c->oversized = false;
	/* A huge message's buffer is not kept for the next one. */
	if (c->msg_cap > 65536) {
		free(c->msg);
		c->msg = NULL;
		c->msg_cap = 0;
	}
}

static bool is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

void qmp_client_feed(struct qmp_server *s, struct qmp_client *c, const char *buf, size_t len)
{
	for (size_t i = 0; i < len && !c->dead; i++) {
		char ch = buf[i];
		if (!c->in_value) {
			if (is_space(ch))
				continue;
			c->in_value = true;
			c->scalar = ch != '{' && ch != '[';
		}
		if (c->scalar) {
			/* A bare number, literal or string: an error once it ends. */
			if (c->in_string) {
				msg_put(c, ch);
				if (c->escape)
					c->escape = false;
				else if (ch == '\\')
					c->escape = true;
				else if (ch == '"')
					msg_done(s, c);
				continue;
			}
			if (ch == '"' && c->msg_len == 0) {
				c->in_string = true;
				msg_put(c, ch);
				continue;
			}
			if (is_space(ch) || ch == '{' || ch == '[' || ch == '}' || ch == ']' ||
			    ch == ',' || ch == ':') {
				if (c->msg_len == 0)
					msg_put(c, ch);
				msg_done(s, c);
				if (ch == '{' || ch == '[') {
					c->in_value = true;
					c->scalar = false;
				} else {
					continue;
				}
			} else {
				msg_put(c, ch);
				continue;
			}
		}
		msg_put(c, ch);
		if (c->in_string) {
			if (c->escape)
				c->escape = false;
			else if (ch == '\\')
				c->escape = true;
			else if (ch == '"')
				c->in_string = false;
			continue;
		}
		if (ch == '"') {
			c->in_string = true;
		} else if (ch == '{' || ch == '[') {
			if (c->depth < 1024)
				c->depth++;
			else
				c->oversized = true;
		} else if (ch == '}' || ch == ']') {
			if (--c->depth == 0)
				msg_done(s, c);
		}
	}
}

/* ---- clients ---- */

static void send_greeting(struct qmp_server *s, struct qmp_client *c)
{
	cJSON *msg = cJSON_CreateObject();
	cJSON *q = cJSON_AddObjectToObject(msg, "QMP");
	cJSON *v = cmd_query_version(s, c, NULL, NULL);
	cJSON_AddItemToObject(q, "version", v);
	cJSON_AddArrayToObject(q, "capabilities");
	client_send(s, c, msg);
	cJSON_Delete(msg);
}

static void client_free(struct qmp_server *s, struct qmp_client *c)
{
	if (s->loop) {
		if (c->watched)
			loop_del_fd(s->loop, c->fd);
		if (c->out_watched)
			loop_del_fd(s->loop, c->out_fd);
	}
	if (c->out_fd >= 0)
		close(c->out_fd);
	close(c->fd);
	free(c->msg);
	free(c->out);
	free(c);
}

static void reap_dead(struct qmp_server *s)
{
	struct qmp_client **pp = &s->clients;
	while (*pp) {
		struct qmp_client *c = *pp;
		if (c->dead) {
			*pp = c->next;
			client_free(s, c);
		} else {
			pp = &c->next;
		}
	}
}

static void client_on_input(void *opaque, int fd, uint32_t events)
{
	struct qmp_client *c = opaque;
	struct qmp_server *s = server_of(c);
	char buf[4096];
	s->dispatching++;
	for (int rounds = 0; rounds < 16 && !c->dead; rounds++) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			/* Gone, perhaps mid-message: what it half sent is dropped. */
			c->dead = true;
			break;
		}
		qmp_client_feed(s, c, buf, (size_t)n);
	}
	s->dispatching--;
	if (!s->dispatching)
		reap_dead(s);
}

struct qmp_client *qmp_client_attach(struct qmp_server *s, int fd)
{
	/* The server pointer sits right after the client, for the loop callbacks. */
	struct qmp_client *c = calloc(1, sizeof(*c) + sizeof(struct qmp_server *));
	if (!c)
		return NULL;
	*(struct qmp_server **)(c + 1) = s;
	c->fd = fd;
	c->out_fd = -1;
	c->next = s->clients;
	s->clients = c;
	send_greeting(s, c);
	return c;
}

static void accept_client(struct qmp_server *s, int fd)
{
	struct qmp_client *c = qmp_client_attach(s, fd);
	if (!c) {
		close(fd);
		return;
	}
	c->out_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (loop_add_fd(s->loop, fd, EPOLLIN, client_on_input, c) == 0)
		c->watched = true;
	else
		c->dead = true;
	client_arm_output(s, c);
	log_info("qmp: client connected");
}

static void server_on_accept(void *opaque, int fd, uint32_t events)
{
	struct qmp_server *s = opaque;
	for (int i = 0; i < 16; i++) {
		int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (cfd < 0)
			break;
		accept_client(s, cfd);
	}
	if (!s->dispatching)
		reap_dead(s);
}

void qmp_server_init(struct qmp_server *s)
{
	memset(s, 0, sizeof(*s));
	s->listen_fd = -1;
	s->vm_stats_fd = -1;
	for (unsigned i = 0; i < KVMINI_MAX_VCPUS; i++)
		s->vcpu_stats_fd[i] = -1;
}

int qmp_server_open(struct qmp_server *s, const struct chardev_cfg *cfg, struct errbuf *e)
{
	qmp_server_init(s);
	if (!cfg->path || strlen(cfg->path) >= sizeof(s->path))
		return errf(e, -EINVAL, "the QMP socket path is too long");
	snprintf(s->path, sizeof(s->path), "%s", cfg->path);
	s->wait = cfg->wait;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return errf(e, -errno, "QMP socket: %s", strerror(errno));
	/* Bound under a temporary name and renamed once listening, so a client that sees the
	 * path can connect at once. */
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s.%d", s->path, (int)getpid());
	bool renamed = n > 0 && (size_t)n < sizeof(sa.sun_path);
	if (!renamed)
		memcpy(sa.sun_path, s->path, strlen(s->path) + 1);
	/* An old socket is replaced; any other file is left alone (bind fails on it). */
	struct stat st;
	if (lstat(sa.sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(sa.sun_path);
	if (lstat(s->path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(s->path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0 ||
	    (renamed && rename(sa.sun_path, s->path) < 0)) {
		int err = errno;
		if (renamed)
			unlink(sa.sun_path);
		close(fd);
		return errf(e, -err, "cannot listen for QMP at %s: %s", s->path, strerror(err));
	}
	s->listen_fd = fd;
	return 0;
}

int qmp_server_start(struct qmp_server *s, struct event_loop *loop, const struct qmp_vm *vm,
		     struct errbuf *e)
{
	s->loop = loop;
	s->vm = *vm;
	s->vm_stats_fd = ioctl(vm->vm_fd, KVM_GET_STATS_FD, NULL);
	for (unsigned i = 0; i < vm->nvcpus && i < KVMINI_MAX_VCPUS; i++)
		s->vcpu_stats_fd[i] = ioctl(vm->vcpus[i].fd, KVM_GET_STATS_FD, NULL);
	if (s->wait) {
		log_warn("QEMU waiting for connection on: unix:%s,server=on", s->path);
		struct pollfd p = {.fd = s->listen_fd, .events = POLLIN};
		while (poll(&p, 1, -1) < 0 && errno == EINTR)
			;
		int cfd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (cfd >= 0)
			accept_client(s, cfd);
	}
	int ret = loop_add_fd(loop, s->listen_fd, EPOLLIN, server_on_accept, s);
	if (ret < 0)
		return errf(e, ret, "cannot watch the QMP socket: %s", strerror(-ret));
	return 0;
}

void qmp_server_event(struct qmp_server *s, const char *name, const char *data_json)
{
	if (!s || s->listen_fd < 0)
		return;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	cJSON *msg = cJSON_CreateObject();
	cJSON_AddStringToObject(msg, "event", name);
	cJSON *data = data_json ? cJSON_Parse(data_json) : NULL;
	if (data)
		cJSON_AddItemToObject(msg, "data", data);
	cJSON *ts = cJSON_AddObjectToObject(msg, "timestamp");
	cJSON_AddNumberToObject(ts, "seconds", (double)tv.tv_sec);
	cJSON_AddNumberToObject(ts, "microseconds", (double)tv.tv_usec);
	for (struct qmp_client *c = s->clients; c; c = c->next)
		if (c->negotiated)
			client_send(s, c, msg);
	cJSON_Delete(msg);
	if (!s->dispatching)
		reap_dead(s);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void qmp_server_close(struct qmp_server *s, int flush_ms)
{
	int64_t deadline = now_ms() + flush_ms;
	for (struct qmp_client *c = s->clients; c; c = c->next) {
		while (c->out_len && !c->dead) {
			int64_t left = deadline - now_ms();
			if (left <= 0)
				break;
			struct pollfd p = {.fd = c->fd, .events = POLLOUT};
			if (poll(&p, 1, (int)left) <= 0)
				break;
			client_flush(s, c);
		}
		c->dead = true;
	}
	reap_dead(s);
	if (s->listen_fd >= 0) {
		if (s->loop)
			loop_del_fd(s->loop, s->listen_fd);
		close(s->listen_fd);
		s->listen_fd = -1;
		unlink(s->path);
	}
	if (s->vm_stats_fd >= 0)
		close(s->vm_stats_fd);
	s->vm_stats_fd = -1;
	for (unsigned i = 0; i < KVMINI_MAX_VCPUS; i++) {
		if (s->vcpu_stats_fd[i] >= 0)
			close(s->vcpu_stats_fd[i]);
		s->vcpu_stats_fd[i] = -1;
	}
}
