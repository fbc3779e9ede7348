#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum opt_id {
	OPT_KERNEL,
	OPT_INITRD,
	OPT_APPEND,
	OPT_MEM,
	OPT_QEMU_M,
	OPT_CPUS,
	OPT_SMP,
	OPT_CONSOLE,
	OPT_NAME,
	OPT_HUGEPAGES,
	OPT_MEM_PREALLOC,
	OPT_KSM,
	OPT_CPU_AFFINITY,
	OPT_BOOT_DECOMPRESS,
	OPT_VERBOSE,
	OPT_QUIET,
	OPT_HELP,
	OPT_NOGRAPHIC,
	OPT_NO_REBOOT,
	OPT_STATS,
	OPT_ENABLE_KVM,
	OPT_CPU,
	OPT_ACCEL,
};

struct opt_def {
	const char *name; /* without dashes: QEMU accepts one or two, and so do we */
	enum opt_id id;
	bool has_value;
};

static const struct opt_def opt_table[] = {
    {"kernel", OPT_KERNEL, true},
    {"initrd", OPT_INITRD, true},
    {"append", OPT_APPEND, true},
    {"cmdline", OPT_APPEND, true},
    {"mem", OPT_MEM, true},
    {"m", OPT_QEMU_M, true},
    {"cpus", OPT_CPUS, true},
    {"smp", OPT_SMP, true},
    {"console", OPT_CONSOLE, true},
    {"serial", OPT_CONSOLE, true},
    {"name", OPT_NAME, true},
    {"hugepages", OPT_HUGEPAGES, false},
    {"mem-prealloc", OPT_MEM_PREALLOC, false},
    {"ksm", OPT_KSM, false},
    {"cpu-affinity", OPT_CPU_AFFINITY, true},
    {"boot-decompress", OPT_BOOT_DECOMPRESS, true},
    {"v", OPT_VERBOSE, false},
    {"verbose", OPT_VERBOSE, false},
    {"q", OPT_QUIET, false},
    {"quiet", OPT_QUIET, false},
    {"h", OPT_HELP, false},
    {"help", OPT_HELP, false},
    {"nographic", OPT_NOGRAPHIC, false},
    {"no-reboot", OPT_NO_REBOOT, false},
    {"stats", OPT_STATS, false},
    {"enable-kvm", OPT_ENABLE_KVM, false},
    {"cpu", OPT_CPU, true},
    {"accel", OPT_ACCEL, true},
};

/* QEMU options people will try first; saying why beats a bare "unknown option". */
static const struct {
	const char *name;
	const char *why;
} unsupported_hints[] = {
    {"drive", "virtio block devices arrive in a later version"},
    {"hda", "virtio block devices arrive in a later version"},
    {"cdrom", "virtio block devices arrive in a later version"},
    {"blockdev", "virtio block devices arrive in a later version"},
    {"display", "kvmini has no display; the console is the serial port"},
    {"vga", "kvmini has no display; the console is the serial port"},
    {"machine", "kvmini has one fixed machine type and always uses KVM"},
    {"M", "kvmini has one fixed machine type and always uses KVM"},
    {"bios", "kvmini boots the kernel directly, without firmware"},
};

/* One option occurrence, as the user typed it, for the error messages. */
struct opt_use {
	const char *opt; /* points at the dashes; only opt_len bytes belong to the option */
	int opt_len;
	const char *val; /* NULL for flags */
};

/* Values are echoed into messages, and a newline or escape in one would break the
 * one-line promise (or the user's terminal). */
static int one_line(struct errbuf *e, int code)
{
	if (e) {
		for (char *p = e->msg; *p; p++) {
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
		}
	}
	return code;
}

#define CFG_ERR(e, ...) one_line((e), errf((e), -EINVAL, __VA_ARGS__))

/* Digits only: strtoul() would take " +7" and turn "-1" into a huge number. max must stay
 * well below UINT64_MAX / 10 so the loop cannot overflow. */
static bool parse_dec(const char *s, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > max)
			return false;
	}
	*out = v;
	return true;
}

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

int config_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0, mult;
	bool overflow = false;
	const char *p = s;

	if (!s || *p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
			overflow = true;
	}
	switch (lower(*p)) {
	case '\0':
		mult = 1ull << 20; /* QEMU's -m reads a bare number as MiB */
		break;
	case 'k':
		mult = 1ull << 10;
		break;
	case 'm':
		mult = 1ull << 20;
		break;
	case 'g':
		mult = 1ull << 30;
		break;
	case 't':
		mult = 1ull << 40;
		break;
	default:
		return -EINVAL;
	}
	if (*p) {
		p++;
		/* "KB" means 1024 here as it does for RAM sizes in QEMU and in shops. */
		if (lower(*p) == 'i' && lower(p[1]) == 'b')
			p += 2;
		else if (lower(*p) == 'b')
			p++;
		if (*p)
			return -EINVAL;
	}
	if (overflow || __builtin_mul_overflow(v, mult, &v))
		return -ERANGE;
	*out = v;
	return 0;
}

static void keyed_list_free(struct keyed_list *l)
{
	for (unsigned i = 0; i < l->n; i++) {
		struct keyed_opts *o = &l->items[i];
		for (unsigned k = 0; k < o->nkv; k++) {
			free(o->kv[k].key);
			free(o->kv[k].val);
		}
		free(o->kv);
		free(o->type);
		free(o->id);
	}
	free(l->items);
	l->items = NULL;
	l->n = 0;
}

void config_free(struct vm_config *cfg)
{
	keyed_list_free(&cfg->devices);
	keyed_list_free(&cfg->drives);
	keyed_list_free(&cfg->netdevs);
	keyed_list_free(&cfg->chardevs);
	keyed_list_free(&cfg->objects);
}

void config_init(struct vm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->cmdline = "";
	cfg->name = "kvmini";
	cfg->mem_size = KVMINI_DEFAULT_MEM;
	cfg->ncpus = 1;
	cfg->console = CONSOLE_STDIO;
	cfg->boot_decompress = BOOT_DECOMPRESS_AUTO;
	cfg->serial[0] = (struct chardev_cfg){.id = "serial0", .backend = CHARDEV_STDIO};
	cfg->nserials = 1;
	cfg->debug_exit_port = 0xf4;
	cfg->debug_exit_size = 1;
	for (unsigned i = 0; i < KVMINI_MAX_VCPUS; i++)
		cfg->cpu_affinity[i] = -1;
}

/* s[0..n) is the size; whole is what the user wrote, for the message. */
static int set_mem(struct vm_config *cfg, const struct opt_use *u, const char *s, size_t n,
		   struct errbuf *e)
{
	char buf[64];
	uint64_t size;
	int r;

	if (n >= sizeof(buf))
		return CFG_ERR(e, "invalid %.*s '%s': too long to be a size", u->opt_len, u->opt,
			       u->val);
	memcpy(buf, s, n);
	buf[n] = '\0';
	r = config_parse_size(buf, &size);
	if (r == -EINVAL)
		return CFG_ERR(e,
			       "invalid %.*s '%s': expected a size such as 512M, 2G or 1024 (MiB)",
			       u->opt_len, u->opt, u->val);
	if (r == -ERANGE || size < KVMINI_MIN_MEM || size > KVMINI_MAX_MEM)
		return CFG_ERR(e, "invalid %.*s '%s': must be 2M to 1T", u->opt_len, u->opt,
			       u->val);
	/* Rounding would hand the guest a different size than was asked for, silently. */
	if (size % 4096)
		return CFG_ERR(e, "invalid %.*s '%s': must be a multiple of 4K", u->opt_len, u->opt,
			       u->val);
	cfg->mem_size = size;
	return 0;
}

/* Calls fn for each comma-separated item of s; stops at the first nonzero return. */
static int for_each_item(const char *s, int (*fn)(const char *item, size_t len, void *ctx),
			 void *ctx)
{
	for (;;) {
		const char *end = strchrnul(s, ',');
		int r = fn(s, (size_t)(end - s), ctx);
		if (r || !*end)
			return r;
		s = end + 1;
	}
}

struct qemu_m_ctx {
	const char *size;
	size_t size_len;
	bool first;
	const char *bad_key; /* set when an unsupported key= was seen */
	size_t bad_len;
};

static int qemu_m_item(const char *item, size_t len, void *ctx)
{
	struct qemu_m_ctx *c = ctx;
	const char *eq = memchr(item, '=', len);
	bool first = c->first;

	c->first = false;
	if (!eq && first) {
		c->size = item;
		c->size_len = len;
		return 0;
	}
	if (eq && (size_t)(eq - item) == 4 && !memcmp(item, "size", 4)) {
		c->size = eq + 1;
		c->size_len = len - 5;
		return 0;
	}
	c->bad_key = item;
	c->bad_len = eq ? (size_t)(eq - item) : len;
	return -1;
}

/* QEMU's -m: "1024", "1G" or "size=1G"; slots/maxmem are memory hotplug, which kvmini
 * lacks. */
static int set_qemu_m(struct vm_config *cfg, const struct opt_use *u, struct errbuf *e)
{
	struct qemu_m_ctx c = {.first = true};

	if (for_each_item(u->val, qemu_m_item, &c))
		return CFG_ERR(e, "invalid %.*s '%s': unknown key '%.*s' (only size= is supported)",
			       u->opt_len, u->opt, u->val, (int)c.bad_len, c.bad_key);
	if (!c.size)
		c.size = "";
	return set_mem(cfg, u, c.size, c.size_len, e);
}

static int set_cpus(struct vm_config *cfg, const struct opt_use *u, struct errbuf *e)
{
	uint64_t n;

	if (!parse_dec(u->val, strlen(u->val), 1000000, &n) || n < 1 || n > KVMINI_MAX_VCPUS)
		return CFG_ERR(e, "invalid %.*s '%s': must be 1 to %d", u->opt_len, u->opt, u->val,
			       KVMINI_MAX_VCPUS);
	cfg->ncpus = (unsigned)n;
	return 0;
}

enum smp_key { SMP_CPUS, SMP_MAXCPUS, SMP_SOCKETS, SMP_CORES, SMP_THREADS, SMP_NKEYS };
static const char *const smp_key_names[SMP_NKEYS] = {"cpus", "maxcpus", "sockets", "cores",
						     "threads"};

struct smp_ctx {
	uint64_t val[SMP_NKEYS]; /* 0 = not given (0 is never a valid value) */
	bool first;
	const char *bad; /* the offending item */
	size_t bad_len;
	const char *why;
};

static int smp_item(const char *item, size_t len, void *ctx)
{
	struct smp_ctx *c = ctx;
	const char *eq = memchr(item, '=', len);
	const char *v = item;
	size_t vlen = len, klen;
	int key = SMP_CPUS;
	bool first = c->first;

	c->first = false;
	c->bad = item;
	c->bad_len = len;
	if (len == 0) {
		c->why = "empty item";
		return -1;
	}
	if (eq) {
		klen = (size_t)(eq - item);
		for (key = 0; key < SMP_NKEYS; key++) {
			if (strlen(smp_key_names[key]) == klen &&
			    !memcmp(item, smp_key_names[key], klen))
				break;
		}
		if (key == SMP_NKEYS) {
			c->bad_len = klen;
			c->why =
			    "unknown key (kvmini knows cpus, maxcpus, sockets, cores, threads)";
			return -1;
		}
		v = eq + 1;
		vlen = len - klen - 1;
	} else if (!first) {
		/* QEMU only lets the first item omit its key (it means cpus=). */
		c->why = "needs a key such as cores=";
		return -1;
	}
	if (!parse_dec(v, vlen, 1000000, &c->val[key]) || c->val[key] < 1 ||
	    c->val[key] > KVMINI_MAX_VCPUS) {
		c->why = "must be 1 to 64";
		return -1;
	}
	return 0;
}

/* kvmini shows the guest ncpus independent CPUs, so the topology keys are only checked for
 * consistency, the way QEMU would, so that a command line that works here means the same
 * there. */
static int set_smp(struct vm_config *cfg, const struct opt_use *u, struct errbuf *e)
{
	struct smp_ctx c = {.first = true};
	uint64_t cpus, topo = 1;
	bool all_topo = true;

	if (for_each_item(u->val, smp_item, &c)) {
		if (!c.bad_len)
			return CFG_ERR(e, "invalid %.*s '%s': %s", u->opt_len, u->opt, u->val,
				       c.why);
		return CFG_ERR(e, "invalid %.*s '%s': '%.*s' %s", u->opt_len, u->opt, u->val,
			       (int)c.bad_len, c.bad, c.why);
	}
	for (int k = SMP_SOCKETS; k <= SMP_THREADS; k++) {
		if (c.val[k])
			topo *= c.val[k];
		else
			all_topo = false;
	}
	cpus = c.val[SMP_CPUS];
	if (!cpus)
		cpus = c.val[SMP_MAXCPUS] ? c.val[SMP_MAXCPUS] : topo;
	if (cpus > KVMINI_MAX_VCPUS)
		return CFG_ERR(e, "invalid %.*s '%s': %llu CPUs, must be 1 to %d", u->opt_len,
			       u->opt, u->val, (unsigned long long)cpus, KVMINI_MAX_VCPUS);
	if (c.val[SMP_MAXCPUS] && c.val[SMP_MAXCPUS] != cpus)
		return CFG_ERR(e, "invalid %.*s '%s': maxcpus must equal cpus (no CPU hotplug)",
			       u->opt_len, u->opt, u->val);
	/* As in QEMU, missing topology keys are filled in, so they only have to divide. */
	if (all_topo ? topo != cpus : cpus % topo != 0)
		return CFG_ERR(e,
			       "invalid %.*s '%s': sockets*cores*threads (%llu) does not match "
			       "%llu CPUs",
			       u->opt_len, u->opt, u->val, (unsigned long long)topo,
			       (unsigned long long)cpus);
	cfg->ncpus = (unsigned)cpus;
	return 0;
}

static int set_console(struct vm_config *cfg, const struct opt_use *u, struct errbuf *e)
{
	if (!strcmp(u->val, "stdio")) {
		cfg->console = CONSOLE_STDIO;
		cfg->console_path = NULL;
	} else if (!strcmp(u->val, "none")) {
		cfg->console = CONSOLE_NONE;
		cfg->console_path = NULL;
	} else if (!strncmp(u->val, "file:", 5) && u->val[5]) {
		cfg->console = CONSOLE_FILE;
		cfg->console_path = u->val + 5;
	} else {
		return CFG_ERR(e, "invalid %.*s '%s': must be stdio, none or file:PATH", u->opt_len,
			       u->opt, u->val);
	}
	return 0;
}

struct affinity_ctx {
	struct vm_config *cfg;
	const char *what; /* "vCPU" or "host CPU", NULL when the form itself is wrong */
	unsigned long long num;
	const char *why;
};

static int affinity_item(const char *item, size_t len, void *ctx)
{
	struct affinity_ctx *c = ctx;
	const char *eq = memchr(item, '=', len);
	uint64_t vcpu, host;

	if (!eq || !parse_dec(item, (size_t)(eq - item), 1000000, &vcpu) ||
	    !parse_dec(eq + 1, len - (size_t)(eq - item) - 1, 1000000, &host)) {
		c->why = "expected VCPU=HOSTCPU pairs such as 0=2,1=3";
		return -1;
	}
	c->what = "vCPU";
	c->num = vcpu;
	if (vcpu >= KVMINI_MAX_VCPUS) {
		c->why = "out of range (at most 64 vCPUs)";
		return -1;
	}
	/* Two host CPUs for one vCPU is a typo, not a request for a CPU set. */
	if (c->cfg->cpu_affinity[vcpu] >= 0) {
		c->why = "is pinned twice";
		return -1;
	}
	if (host > 1023) {
		c->what = "host CPU";
		c->num = host;
		c->why = "out of range 0 to 1023";
		return -1;
	}
	c->cfg->cpu_affinity[vcpu] = (int)host;
	return 0;
}

static int set_cpu_affinity(struct vm_config *cfg, const struct opt_use *u, struct errbuf *e)
{
	struct affinity_ctx c = {.cfg = cfg};

	if (!for_each_item(u->val, affinity_item, &c))
		return 0;
	if (!c.what)
		return CFG_ERR(e, "invalid %.*s '%s': %s", u->opt_len, u->opt, u->val, c.why);
	return CFG_ERR(e, "invalid %.*s '%s': %s %llu %s", u->opt_len, u->opt, u->val, c.what,
		       c.num, c.why);
}

static int set_boot_decompress(struct vm_config *cfg, const struct opt_use *u, struct errbuf *e)
{
	if (!strcmp(u->val, "auto"))
		cfg->boot_decompress = BOOT_DECOMPRESS_AUTO;
	else if (!strcmp(u->val, "host"))
		cfg->boot_decompress = BOOT_DECOMPRESS_HOST;
	else if (!strcmp(u->val, "guest"))
		cfg->boot_decompress = BOOT_DECOMPRESS_GUEST;
	else
		return CFG_ERR(e, "invalid %.*s '%s': must be auto, host or guest", u->opt_len,
			       u->opt, u->val);
	return 0;
}

static int set_path(const char **dst, const struct opt_use *u, struct errbuf *e)
{
	if (!*u->val)
		return CFG_ERR(e, "invalid %.*s '': empty path", u->opt_len, u->opt);
	*dst = u->val;
	return 0;
}

static int set_name(struct vm_config *cfg, const struct opt_use *u, struct errbuf *e)
{
	if (!*u->val)
		return CFG_ERR(e, "invalid %.*s '': empty name", u->opt_len, u->opt);
	for (const char *p = u->val; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return CFG_ERR(e, "invalid %.*s '%s': control characters are not allowed",
				       u->opt_len, u->opt, u->val);
	}
	cfg->name = u->val;
	return 0;
}

/* -nographic in QEMU only moves the serial port to stdio when no -serial says otherwise,
 * whatever the order; console_given tracks that. */
static int apply_opt(struct vm_config *cfg, enum opt_id id, const struct opt_use *u,
		     bool *console_given, struct errbuf *e)
{
	switch (id) {
	case OPT_KERNEL:
		return set_path(&cfg->kernel_path, u, e);
	case OPT_INITRD:
		return set_path(&cfg->initrd_path, u, e);
	case OPT_APPEND:
		cfg->cmdline = u->val;
		return 0;
	case OPT_MEM:
		return set_mem(cfg, u, u->val, strlen(u->val), e);
	case OPT_QEMU_M:
		return set_qemu_m(cfg, u, e);
	case OPT_CPUS:
		return set_cpus(cfg, u, e);
	case OPT_SMP:
		return set_smp(cfg, u, e);
	case OPT_CONSOLE:
		*console_given = true;
		return set_console(cfg, u, e);
	case OPT_NAME:
		return set_name(cfg, u, e);
	case OPT_HUGEPAGES:
		cfg->hugepages = true;
		return 0;
	case OPT_STATS:
		cfg->stats = true;
		return 0;
	case OPT_MEM_PREALLOC:
		cfg->mem_prealloc = true;
		return 0;
	case OPT_KSM:
		cfg->ksm = true;
		return 0;
	case OPT_CPU_AFFINITY:
		return set_cpu_affinity(cfg, u, e);
	case OPT_BOOT_DECOMPRESS:
		return set_boot_decompress(cfg, u, e);
	case OPT_VERBOSE:
		cfg->verbosity++;
		return 0;
	case OPT_QUIET:
		cfg->verbosity = -1;
		return 0;
	case OPT_NOGRAPHIC:
		if (!*console_given) {
			cfg->console = CONSOLE_STDIO;
			cfg->console_path = NULL;
		}
		return 0;
	case OPT_NO_REBOOT:
		cfg->no_reboot = true;
		return 0;
	case OPT_ENABLE_KVM:
		return 0;
	case OPT_CPU:
		if (strcmp(u->val, "host"))
			return CFG_ERR(e,
				       "invalid %.*s '%s': kvmini only offers 'host' (the host CPU "
				       "as KVM exposes it)",
				       u->opt_len, u->opt, u->val);
		return 0;
	case OPT_ACCEL:
		if (strcmp(u->val, "kvm"))
			return CFG_ERR(e, "invalid %.*s '%s': kvmini only runs on 'kvm'",
				       u->opt_len, u->opt, u->val);
		return 0;
	case OPT_HELP:
		break; /* handled by the caller before any value is looked at */
	}
	return 0;
}

static const struct opt_def *find_opt(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(opt_table) / sizeof(opt_table[0]); i++) {
		if (strlen(opt_table[i].name) == len && !memcmp(opt_table[i].name, name, len))
			return &opt_table[i];
	}
	return NULL;
}

static int unknown_option(const char *arg, int arg_len, const char *name, size_t len,
			  struct errbuf *e)
{
	for (size_t i = 0; i < sizeof(unsupported_hints) / sizeof(unsupported_hints[0]); i++) {
		if (strlen(unsupported_hints[i].name) == len &&
		    !memcmp(unsupported_hints[i].name, name, len))
			return CFG_ERR(e,
				       "unknown option '%.*s' (kvmini does not support it yet; %s)",
				       arg_len, arg, unsupported_hints[i].why);
	}
	return CFG_ERR(e, "unknown option '%.*s' (kvmini does not support it yet)", arg_len, arg);
}

/* "-vv" and "-vvv" as a shorthand for repeated -v. */
static int count_vs(const char *arg)
{
	int n = 0;

	if (arg[0] != '-')
		return 0;
	for (arg++; *arg == 'v'; arg++)
		n++;
	return *arg ? 0 : n;
}

static bool looks_like_option(const char *s)
{
	return s[0] == '-' && s[1] != '\0';
}

/* Affinity may come before --cpus or -smp, so it can only be checked against the final
 * vCPU count. */
static int check_final(const struct vm_config *cfg, struct errbuf *e)
{
	for (unsigned v = cfg->ncpus; v < KVMINI_MAX_VCPUS; v++) {
		if (cfg->cpu_affinity[v] >= 0)
			return CFG_ERR(e,
				       "invalid --cpu-affinity: vCPU %u is pinned but the VM has "
				       "only %u vCPU%s",
				       v, cfg->ncpus, cfg->ncpus == 1 ? "" : "s");
	}
	return 0;
}

int config_parse_run(struct vm_config *cfg, int argc, char **argv, struct errbuf *e)
{
	bool console_given = false;

	/* The result depends on argv alone, whatever the caller left in cfg. */
	config_init(cfg);
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i];
		const char *name, *eq;
		const struct opt_def *o;
		struct opt_use u = {.opt = arg};
		size_t name_len;
		int r, nv;

		if (!looks_like_option(arg) || !strcmp(arg, "--"))
			return CFG_ERR(e,
				       "unexpected argument '%s': kvmini run takes only options "
				       "(see kvmini run --help)",
				       arg);
		name = arg + (arg[1] == '-' ? 2 : 1);
		eq = strchr(name, '=');
		name_len = eq ? (size_t)(eq - name) : strlen(name);
		u.opt_len = (int)(name - arg + (ptrdiff_t)name_len);
		o = find_opt(name, name_len);
		if (!o) {
			nv = count_vs(arg);
			if (nv > 1) {
				cfg->verbosity += nv;
				continue;
			}
			return unknown_option(arg, u.opt_len, name, name_len, e);
		}
		if (o->id == OPT_HELP)
			return 1;
		if (o->has_value) {
			if (eq) {
				u.val = eq + 1;
			} else if (i + 1 >= argc) {
				return CFG_ERR(e, "option '%s' needs a value", arg);
			} else if (looks_like_option(argv[i + 1])) {
				/* Taking "--mem" as the kernel's path would only defer the
				 * confusion; a value that really starts with '-' can use '='. */
				return CFG_ERR(
				    e,
				    "option '%s' needs a value (the next argument, '%s', "
				    "is an option)",
				    arg, argv[i + 1]);
			} else {
				u.val = argv[++i];
			}
		} else if (eq) {
			return CFG_ERR(e, "option '%.*s' takes no value (got '%s')", u.opt_len, arg,
				       eq + 1);
		}
		r = apply_opt(cfg, o->id, &u, &console_given, e);
		if (r)
			return r;
	}
	return check_final(cfg, e);
}

const char *config_usage(void)
{
	return "Usage: kvmini run [options]\n"
	       "\n"
	       "Boots a Linux kernel in a KVM virtual machine; without --kernel, boots kvmini's\n"
	       "built-in demo guest. Options take one dash or two, and their value either as the\n"
	       "next argument or after '=' (--mem=1G).\n"
	       "\n"
	       "Options:\n"
	       "  --kernel PATH           kernel to boot: a Linux bzImage, an ELF vmlinux or an\n"
	       "                          ELF with a PVH note (default: the built-in demo guest)\n"
	       "  --initrd PATH           initial ramdisk (default: none)\n"
	       "  --append STR            kernel command line (default: empty); alias --cmdline\n"
	       "  --mem SIZE              guest RAM, 2M to 1T, a multiple of 4K (default: 256M)\n"
	       "  --cpus N                number of vCPUs, 1 to 64 (default: 1)\n"
	       "  --console MODE          serial console: stdio, none or file:PATH (default: "
	       "stdio)\n"
	       "  --name NAME             name of the VM (default: kvmini)\n"
	       "  --hugepages             back guest RAM with huge pages (default: off)\n"
	       "  --mem-prealloc          allocate all guest RAM at start-up (default: off)\n"
	       "  --ksm                   let KSM merge identical guest pages (default: off)\n"
	       "  --cpu-affinity LIST     pin vCPUs to host CPUs, VCPU=HOSTCPU pairs such as\n"
	       "                          0=2,1=3; host CPUs 0 to 1023 (default: not pinned)\n"
	       "  --boot-decompress MODE  who unpacks the compressed kernel: host (kvmini), guest\n"
	       "                          (the kernel's own decompressor) or auto (default: auto)\n"
	       "  --stats                 at exit, print exits and completed instructions\n"
	       "  -v, --verbose           more diagnostics; repeat for more (-v -v or -vv)\n"
	       "  -q, --quiet             fewer diagnostics\n"
	       "  -h, --help              print this help\n"
	       "\n"
	       "SIZE is a number with an optional suffix K, M, G or T (or KiB, KB, MiB, MB, ...;\n"
	       "all powers of 1024); a bare number means MiB, as in QEMU.\n"
	       "\n"
	       "QEMU spellings, mapped onto the options above:\n"
	       "  -kernel, -initrd, -append, -name, -mem-prealloc   same as the -- forms\n"
	       "  -m SIZE | size=SIZE     same as --mem\n"
	       "  -smp N | cpus=N[,maxcpus=N][,sockets=S][,cores=C][,threads=T]\n"
	       "                          same as --cpus; maxcpus must equal cpus, and the\n"
	       "                          topology must fit cpus (checked only: the guest sees\n"
	       "                          one socket of N single-thread cores)\n"
	       "  -serial stdio|none|file:PATH   same as --console\n"
	       "  -nographic              console on stdio unless -serial/--console says "
	       "otherwise\n"
	       "  -no-reboot              accepted: kvmini always exits when the guest resets\n"
	       "  -enable-kvm, -accel kvm, -cpu host   accepted and ignored: kvmini always uses\n"
	       "                          KVM and the host CPU\n"
	       "Other QEMU options (-drive, -netdev, -device, ...) are rejected.\n";
}
