#include "vmm/hmp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "vmm/snapdir.h"

static void out_printf(struct hmp_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void out_printf(struct hmp_out *o, const char *fmt, ...)
{
	if (o->len + 1 >= sizeof(o->buf))
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(o->buf + o->len, sizeof(o->buf) - o->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	o->len += (size_t)n;
	if (o->len >= sizeof(o->buf))
		o->len = sizeof(o->buf) - 1;
}

static const struct vm_control_ops *ops_of(const struct hmp_env *env)
{
	return env->control ? env->control->ops : NULL;
}

static enum vm_run_status env_status(const struct hmp_env *env)
{
	const struct vm_control_ops *ops = ops_of(env);
	return ops && ops->status ? ops->status(env->control->opaque) : VM_STATUS_RUNNING;
}

static void hmp_help(const struct hmp_env *env, const char *arg, struct hmp_out *o);
static void hmp_info_snapshots(const struct hmp_env *env, struct hmp_out *o);

static void hmp_info_status(const struct hmp_env *env, struct hmp_out *o)
{
	enum vm_run_status st = env_status(env);
	/* QEMU's wording: a -S VM that never ran is "paused (prelaunch)". */
	if (st == VM_STATUS_PRELAUNCH)
		out_printf(o, "VM status: paused (prelaunch)\n");
	else if (st == VM_STATUS_INMIGRATE)
		out_printf(o, "VM status: paused (inmigrate)\n");
	else
		out_printf(o, "VM status: %s\n", vm_run_status_name(st));
}

static void hmp_info_cpus(const struct hmp_env *env, struct hmp_out *o)
{
	for (unsigned i = 0; i < env->nvcpus; i++)
		out_printf(o, "%s CPU #%u: thread_id=%d\n", i == 0 ? "*" : " ", i,
			   atomic_load(&env->vcpus[i].tid));
}

static void hmp_info_kvm(const struct hmp_env *env, struct hmp_out *o)
{
	(void)env;
	out_printf(o, "kvm support: enabled\n");
}

static void print_seg(struct hmp_out *o, const char *name, const struct kvm_segment *s)
{
	out_printf(o, "%-3s=%04x %016llx %08x %02x\n", name, s->selector,
		   (unsigned long long)s->base, s->limit, s->type);
}

/* KVM_GET_REGS/SREGS need the vCPU out of KVM_RUN: the VM is paused for the read (and
 * resumed after if it was running). */
static void hmp_info_registers(const struct hmp_env *env, struct hmp_out *o)
{
	const struct vm_control_ops *ops = ops_of(env);
	bool was_running = env_status(env) == VM_STATUS_RUNNING;
	if (!env->vcpus || !env->nvcpus) {
		out_printf(o, "no vCPUs\n");
		return;
	}
	if (was_running) {
		int ret = ops && ops->pause ? ops->pause(env->control->opaque) : -ENOTSUP;
		if (ret < 0) {
			out_printf(o, "cannot pause the VM to read its registers: %s\n",
				   strerror(-ret));
			return;
		}
	}
	for (unsigned i = 0; i < env->nvcpus; i++) {
		struct kvm_regs r;
		struct kvm_sregs s;
		if (ioctl(env->vcpus[i].fd, KVM_GET_REGS, &r) < 0 ||
		    ioctl(env->vcpus[i].fd, KVM_GET_SREGS, &s) < 0) {
			out_printf(o, "CPU#%u: cannot read the registers: %s\n", i,
				   strerror(errno));
			continue;
		}
		out_printf(o, "CPU#%u\n", i);
		out_printf(o, "RAX=%016llx RBX=%016llx RCX=%016llx RDX=%016llx\n", r.rax, r.rbx,
			   r.rcx, r.rdx);
		out_printf(o, "RSI=%016llx RDI=%016llx RBP=%016llx RSP=%016llx\n", r.rsi, r.rdi,
			   r.rbp, r.rsp);
		out_printf(o, "R8 =%016llx R9 =%016llx R10=%016llx R11=%016llx\n", r.r8, r.r9,
			   r.r10, r.r11);
		out_printf(o, "R12=%016llx R13=%016llx R14=%016llx R15=%016llx\n", r.r12, r.r13,
			   r.r14, r.r15);
		out_printf(o, "RIP=%016llx RFL=%08llx\n", r.rip, r.rflags);
		print_seg(o, "ES", &s.es);
		print_seg(o, "CS", &s.cs);
		print_seg(o, "SS", &s.ss);
		print_seg(o, "DS", &s.ds);
		print_seg(o, "FS", &s.fs);
		print_seg(o, "GS", &s.gs);
		out_printf(o, "GDT=     %016llx %08x\n", (unsigned long long)s.gdt.base,
			   s.gdt.limit);
		out_printf(o, "IDT=     %016llx %08x\n", (unsigned long long)s.idt.base,
			   s.idt.limit);
		out_printf(o, "CR0=%08llx CR2=%016llx CR3=%016llx CR4=%08llx\n", s.cr0, s.cr2,
			   s.cr3, s.cr4);
		out_printf(o, "EFER=%016llx\n", s.efer);
	}
	if (was_running && ops && ops->resume)
		ops->resume(env->control->opaque);
}

#define HMP_STATS_DEVICES 64

/* The VM's device counters (malloc'd, *n entries; NULL with *n 0 if there are none). */
static struct vm_device_stats *env_device_stats(const struct hmp_env *env, unsigned *n)
{
	const struct vm_control_ops *ops = ops_of(env);
	*n = 0;
	if (!ops || !ops->device_stats)
		return NULL;
	struct vm_device_stats *st = malloc(HMP_STATS_DEVICES * sizeof(*st));
	if (!st)
		return NULL;
	unsigned got = ops->device_stats(env->control->opaque, st, HMP_STATS_DEVICES);
	*n = got < HMP_STATS_DEVICES ? got : HMP_STATS_DEVICES;
	return st;
}

/* QEMU's one line per drive ("ID: rd_bytes=N wr_bytes=N ..."), with kvmini's counters. */
static void hmp_info_blockstats(const struct hmp_env *env, struct hmp_out *o)
{
	unsigned n;
	struct vm_device_stats *st = env_device_stats(env, &n);
	for (unsigned i = 0; i < n; i++) {
		if (!st[i].drive)
			continue;
		out_printf(o, "%s:", st[i].drive);
		for (unsigned k = 0; k < st[i].nblock; k++)
			out_printf(o, " %s=%llu", st[i].block[k].name,
				   (unsigned long long)st[i].block[k].value);
		out_printf(o, "\n");
	}
	free(st);
}

/* kvmini's: every virtio device and its counters (x-query-virtio-stats as text). */
static void hmp_info_virtio_stats(const struct hmp_env *env, struct hmp_out *o)
{
	unsigned n;
	struct vm_device_stats *st = env_device_stats(env, &n);
	for (unsigned i = 0; i < n; i++) {
		out_printf(o, "%s %s %s:", st[i].name, st[i].transport, st[i].address);
		for (unsigned k = 0; k < st[i].nstats; k++)
			out_printf(o, " %s=%llu", st[i].stats[k].name,
				   (unsigned long long)st[i].stats[k].value);
		out_printf(o, "\n");
	}
	free(st);
}

static void hmp_info(const struct hmp_env *env, const char *arg, struct hmp_out *o)
{
	if (!strcmp(arg, "status"))
		hmp_info_status(env, o);
	else if (!strcmp(arg, "cpus"))
		hmp_info_cpus(env, o);
	else if (!strcmp(arg, "kvm"))
		hmp_info_kvm(env, o);
	else if (!strcmp(arg, "registers"))
		hmp_info_registers(env, o);
	else if (!strcmp(arg, "blockstats"))
		hmp_info_blockstats(env, o);
	else if (!strcmp(arg, "virtio-stats"))
		hmp_info_virtio_stats(env, o);
	else if (!strcmp(arg, "snapshots"))
		hmp_info_snapshots(env, o);
	else {
		out_printf(o, "info blockstats -- show each disk's I/O counters\n"
			      "info cpus -- show the vCPUs and their host threads\n"
			      "info kvm -- show KVM information\n"
			      "info registers -- show every vCPU's registers\n"
			      "info snapshots -- list the named snapshots (savevm)\n"
			      "info status -- show the VM's run state\n"
			      "info virtio-stats -- show every virtio device's counters\n");
		if (arg[0])
			out_printf(o, "unknown info item: '%s'\n", arg);
	}
}

static void hmp_quit(const struct hmp_env *env, const char *arg, struct hmp_out *o)
{
	const struct vm_control_ops *ops = ops_of(env);
	if (ops && ops->quit)
		ops->quit(env->control->opaque);
	else if (env->power)
		power_request_stop(env->power, STOP_SIGNAL, 0);
}

static void hmp_reset(const struct hmp_env *env, const char *arg, struct hmp_out *o)
{
	const struct vm_control_ops *ops = ops_of(env);
	if (ops && ops->reset)
		ops->reset(env->control->opaque);
	else
		out_printf(o, "system_reset is not available\n");
}

static void hmp_powerdown(const struct hmp_env *env, const char *arg, struct hmp_out *o)
{
	const struct vm_control_ops *ops = ops_of(env);
	int ret = ops && ops->powerdown ? ops->powerdown(env->control->opaque) : -ENOTSUP;
	if (ret < 0)
		out_printf(o, "system_powerdown failed: %s\n", strerror(-ret));
}

static void hmp_stop_cont(const struct hmp_env *env, bool stop, struct hmp_out *o)
{
	const struct vm_control_ops *ops = ops_of(env);
	int (*op)(void *) = ops ? (stop ? ops->pause : ops->resume) : NULL;
	int ret = op ? op(env->control->opaque) : -ENOTSUP;
	const char *cmd = stop ? "stop" : "cont";
	if (ret == -ENOTSUP)
		out_printf(o, "%s is not supported by this kvmini yet\n", cmd);
	else if (ret < 0)
		out_printf(o, "%s failed: %s\n", cmd, strerror(-ret));
}

static void hmp_stop(const struct hmp_env *env, const char *arg, struct hmp_out *o)
{
	hmp_stop_cont(env, true, o);
}

static void hmp_cont(const struct hmp_env *env, const char *arg, struct hmp_out *o)
{
	hmp_stop_cont(env, false, o);
}

/* ---- named snapshots: DIR/TAG.kvmini (vmm/snapdir.h) ---- */

/* The path of tag's snapshot, or false with the reason printed. */
static bool snapshot_path(const struct hmp_env *env, const char *cmd, const char *tag, char *buf,
			  size_t len, struct hmp_out *o)
{
	const char *dir = env->control ? env->control->snapshot_dir : NULL;
	struct errbuf e = {{0}};
	if (!dir) {
		out_printf(o,
			   "Error: %s needs a snapshot directory: start kvmini with "
			   "--snapshot-dir DIR (or with a disk, whose directory is the "
			   "default)\n",
			   cmd);
		return false;
	}
	if (snapdir_path(dir, tag, buf, len, &e) < 0) {
		out_printf(o, "Error: %s\n", e.msg);
		return false;
	}
	return true;
}

static bool snapshot_exists(const char *path, const char *tag, const struct hmp_env *env,
			    struct hmp_out *o)
{
	struct stat st;
	if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
		return true;
	out_printf(o, "Error: snapshot '%s' does not exist in %s\n", tag,
		   env->control->snapshot_dir);
	return false;
}

/* savevm [TAG]: without a tag, one from the date, as QEMU names them (vm-YYYYMMDDHHMMSS).
 * A snapshot of the same tag is replaced. The VM runs on after, as in QEMU. */
static void hmp_savevm(const struct hmp_env *env, const char *arg, struct hmp_out *o)
{
	const struct vm_control_ops *ops = ops_of(env);
	char tag[64], path[4096];
	if (!arg[0]) {
		time_t now = time(NULL);
		struct tm tm;
		localtime_r(&now, &tm);
		strftime(tag, sizeof(tag), "vm-%Y%m%d%H%M%S", &tm);
		arg = tag;
	}
	if (!snapshot_path(env, "savevm", arg, path, sizeof(path), o))
		return;
	struct errbuf e = {{0}};
	int ret = ops && ops->snapshot_save ? ops->snapshot_save(env->control->opaque, path, &e)
					    : errf(&e, -ENOTSUP, "snapshots are not available");
	if (ret < 0)
		out_printf(o, "Error: savevm %s: %s\n", arg, e.msg);
}

/* loadvm TAG: the VM goes back to the snapshot in this process (running on from there if
 * it was running). A file that fails the checks changes nothing. */
static void hmp_loadvm(const struct hmp_env *env, const char *arg, struct hmp_out *o)
{
	const struct vm_control_ops *ops = ops_of(env);
	char path[4096];
	if (!arg[0]) {
		out_printf(o, "Error: loadvm needs a snapshot tag (see info snapshots)\n");
		return;
	}
	if (!snapshot_path(env, "loadvm", arg, path, sizeof(path), o) ||
	    !snapshot_exists(path, arg, env, o))
		return;
	struct errbuf e = {{0}};
	int ret = ops && ops->snapshot_load ? ops->snapshot_load(env->control->opaque, path, &e)
					    : errf(&e, -ENOTSUP, "snapshots are not available");
	if (ret < 0)
		out_printf(o, "Error: loadvm %s: %s\n", arg, e.msg);
}

static void hmp_delvm(const struct hmp_env *env, const char *arg, struct hmp_out *o)
{
	char path[4096];
	if (!arg[0]) {
		out_printf(o, "Error: delvm needs a snapshot tag (see info snapshots)\n");
		return;
	}
	if (!snapshot_path(env, "delvm", arg, path, sizeof(path), o) ||
	    !snapshot_exists(path, arg, env, o))
		return;
	if (unlink(path) < 0)
		out_printf(o, "Error: delvm %s: cannot remove %s: %s\n", arg, path,
			   strerror(errno));
}

/* migrate_incoming file:PATH (QEMU's HMP spelling of migrate-incoming), for a VM started
 * with -incoming defer and only a stdio monitor. */
static void hmp_migrate_incoming(const struct hmp_env *env, const char *arg, struct hmp_out *o)
{
	const struct vm_control_ops *ops = ops_of(env);
	if (strncmp(arg, "file:", 5) || !arg[5]) {
		out_printf(o, "Error: migrate_incoming needs file:PATH (a snapshot file)\n");
		return;
	}
	if (!ops || !ops->incoming || !ops->status ||
	    ops->status(env->control->opaque) != VM_STATUS_INMIGRATE) {
		out_printf(o, "Error: migrate_incoming is only allowed with -incoming defer, "
			      "before the migration has arrived\n");
		return;
	}
	struct errbuf e = {{0}};
	int r = ops->incoming(env->control->opaque, arg + 5, &e);
	vm_migration_done(env->control, r == 0);
	if (r < 0)
		out_printf(o, "Error: %s\n", e.msg);
}

/* QEMU's table (ID, TAG, VM SIZE, DATE, VM CLOCK, ICOUNT), one row per snapshot in the
 * directory, oldest first; the ID is the row's number. A file that is not a usable
 * snapshot is named after the table with the reason. */
static void hmp_info_snapshots(const struct hmp_env *env, struct hmp_out *o)
{
	const struct vm_control_ops *ops = ops_of(env);
	const char *dir = env->control ? env->control->snapshot_dir : NULL;
	if (!dir) {
		out_printf(o, "No snapshot directory: start kvmini with --snapshot-dir DIR (or "
			      "with a disk, whose directory is the default)\n");
		return;
	}
	struct snapdir_entry *v;
	size_t n;
	struct errbuf e = {{0}};
	if (snapdir_list(dir, &v, &n, &e) < 0) {
		out_printf(o, "Error: %s\n", e.msg);
		return;
	}
	bool *bad = calloc(n ? n : 1, sizeof(*bad));
	uint64_t *clock = calloc(n ? n : 1, sizeof(*clock));
	struct errbuf *why = calloc(n ? n : 1, sizeof(*why));
	size_t good = 0;
	if (!bad || !clock || !why) {
		out_printf(o, "Error: out of memory\n");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		if (snapdir_path(dir, v[i].tag, path, sizeof(path), &why[i]) < 0 || !ops ||
		    !ops->snapshot_clock ||
		    ops->snapshot_clock(env->control->opaque, path, &clock[i], &why[i]) < 0) {
			bad[i] = true;
			if (!why[i].msg[0])
				errf(&why[i], -ENOTSUP, "cannot read it");
		} else {
			good++;
		}
	}
	if (!good) {
		out_printf(o, "There is no snapshot available.\n");
	} else {
		out_printf(o, "List of snapshots present in %s:\n", dir);
		out_printf(o, "%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE",
			   "VM CLOCK", "ICOUNT");
		unsigned id = 0;
		for (size_t i = 0; i < n; i++) {
			if (bad[i])
				continue;
			char size[16], clk[32], date[32], num[16];
			struct tm tm;
			snapdir_format_size(v[i].bytes, size);
			snapdir_format_clock(clock[i], clk);
			localtime_r(&v[i].mtime, &tm);
			strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
			snprintf(num, sizeof(num), "%u", ++id);
			out_printf(o, "%-9s %-16s %8s%20s%13s%11s\n", num, v[i].tag, size, date,
				   clk, "");
		}
	}
	for (size_t i = 0; i < n; i++)
		if (bad[i])
			out_printf(o, "%s%s is not a usable snapshot: %s\n", v[i].tag,
				   SNAPDIR_SUFFIX, why[i].msg);
out:
	free(bad);
	free(clock);
	free(why);
	free(v);
}

struct hmp_cmd {
	const char *name, *alias, *args, *help;
	void (*fn)(const struct hmp_env *env, const char *arg, struct hmp_out *o);
};

static const struct hmp_cmd hmp_cmds[] = {
    {"cont", "c", NULL, "resume the VM", hmp_cont},
    {"delvm", NULL, "TAG", "delete the named snapshot TAG", hmp_delvm},
    {"help", "?", NULL, "list these commands", hmp_help},
    {"info", NULL, "status|cpus|kvm|registers|snapshots|blockstats|virtio-stats",
     "show the VM's state", hmp_info},
    {"loadvm", NULL, "TAG", "restore the VM to the named snapshot TAG", hmp_loadvm},
    {"migrate_incoming", NULL, "file:PATH",
     "load the snapshot PATH into a VM started with -incoming defer", hmp_migrate_incoming},
    {"quit", "q", NULL, "quit kvmini", hmp_quit},
    {"savevm", NULL, "[TAG]", "save the VM as the named snapshot TAG (replacing one)", hmp_savevm},
    {"stop", NULL, NULL, "pause the VM", hmp_stop},
    {"system_powerdown", NULL, NULL, "press the ACPI power button", hmp_powerdown},
    {"system_reset", NULL, NULL, "reset the VM", hmp_reset},
};

static void hmp_help(const struct hmp_env *env, const char *arg, struct hmp_out *o)
{
	for (size_t i = 0; i < sizeof(hmp_cmds) / sizeof(hmp_cmds[0]); i++) {
		const struct hmp_cmd *c = &hmp_cmds[i];
		out_printf(o, "%s%s%s%s%s -- %s\n", c->name, c->alias ? "|" : "",
			   c->alias ? c->alias : "", c->args ? " " : "", c->args ? c->args : "",
			   c->help);
	}
}

void hmp_run(const struct hmp_env *env, const char *line, struct hmp_out *out)
{
	char cmd[256], arg[256];
	cmd[0] = arg[0] = '\0';
	if (sscanf(line, "%255s %255s", cmd, arg) <= 0)
		return;
	for (size_t i = 0; i < sizeof(hmp_cmds) / sizeof(hmp_cmds[0]); i++) {
		const struct hmp_cmd *c = &hmp_cmds[i];
		if (!strcmp(cmd, c->name) || (c->alias && !strcmp(cmd, c->alias))) {
			c->fn(env, arg, out);
			return;
		}
	}
	out_printf(out, "unknown command: '%s' (try 'help')\n", cmd);
}
