#include "config.h"
#include "config_net.h"
#include "virtio/virtio.h"   /* virtio_find_type: -device drivers kvmini has */
#include "devices/vmgenid.h" /* vmgenid_parse */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What -device accepts, for its messages: each virtio type as NAME-pci (PCI), NAME-device
 * (MMIO) or NAME (the --virtio-transport default). */
#define KVMINI_DEVICE_LIST                                                                 \
	"isa-debug-exit, vmgenid, virtio-rng, virtio-blk, virtio-net, virtio-serial with " \
	"virtconsole "                                                                     \
	"(the virtio ones as -pci, -device or bare)"

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
	OPT_PROFILE,
	OPT_ENABLE_KVM,
	OPT_CPU,
	OPT_ACCEL,
	OPT_DEVICE,
	OPT_DRIVE,
	OPT_DISK,
	OPT_NETDEV,
	OPT_CHARDEV,
	OPT_OBJECT,
	OPT_MON,
	OPT_DISPLAY,
	OPT_MONITOR,
	OPT_NODEFAULTS,
	OPT_NO_USER_CONFIG,
	OPT_MACHINE,
	OPT_START_PAUSED,
	OPT_RESTORE,
	OPT_INCOMING,
	OPT_SNAPSHOT_DIR,
	OPT_QMP,
	OPT_VIRTIO_TRANSPORT,
	OPT_VERSION,
	OPT_NET,
	OPT_NIC,
	OPT_RNG,
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
    {"profile", OPT_PROFILE, true},
    {"enable-kvm", OPT_ENABLE_KVM, false},
    {"cpu", OPT_CPU, true},
    {"accel", OPT_ACCEL, true},
    {"device", OPT_DEVICE, true},
    {"drive", OPT_DRIVE, true},
    {"disk", OPT_DISK, true},
    {"netdev", OPT_NETDEV, true},
    {"chardev", OPT_CHARDEV, true},
    {"object", OPT_OBJECT, true},
    {"mon", OPT_MON, true},
    {"display", OPT_DISPLAY, true},
    {"monitor", OPT_MONITOR, true},
    {"nodefaults", OPT_NODEFAULTS, false},
    {"no-user-config", OPT_NO_USER_CONFIG, false},
    {"machine", OPT_MACHINE, true},
    {"M", OPT_MACHINE, true},
    {"S", OPT_START_PAUSED, false},
    {"restore", OPT_RESTORE, true},
    {"incoming", OPT_INCOMING, true},
    {"snapshot-dir", OPT_SNAPSHOT_DIR, true},
    {"qmp", OPT_QMP, true},
    {"virtio-transport", OPT_VIRTIO_TRANSPORT, true},
    {"version", OPT_VERSION, false},
    {"net", OPT_NET, true},
    {"nic", OPT_NIC, true},
    {"rng", OPT_RNG, false},
};

/* QEMU options people will try first; saying why beats a bare "unknown option". */
static const struct {
	const char *name;
	const char *why;
} unsupported_hints[] = {
    {"hda", "use --disk PATH or -drive file=PATH,format=raw,if=virtio"},
    {"cdrom", "kvmini has no CD-ROM; --disk PATH,ro gives a read-only disk"},
    {"blockdev", "use -drive if=none,id=ID,file=PATH -device virtio-blk-pci,drive=ID"},
    {"vga", "kvmini has no display; the console is the serial port"},
    {"bios", "kvmini boots the kernel directly, without firmware"},
    {"virtfs", "VirtIO devices arrive in the next version"},
    {"boot", "kvmini boots the kernel given with -kernel, without firmware"},
    {"daemonize", "kvmini runs in the foreground"},
    {"s", "kvmini has no gdb stub"},
    {"gdb", "kvmini has no gdb stub"},
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
	uint64_t v = 0, mult, frac = 0, frac_den = 1;
	bool overflow = false;
	const char *p = s;
	unsigned __int128 bytes;

	if (!s || *p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
			overflow = true;
	}
	/* QEMU takes fractions ("1.5G"); digits past the 18th cannot matter to a size. */
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		for (unsigned n = 0; *p >= '0' && *p <= '9'; p++, n++) {
			if (n < 18) {
				frac = frac * 10 + (uint64_t)(*p - '0');
				frac_den *= 10;
			}
		}
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
	if (overflow)
		return -ERANGE;
	/* A fraction of a byte is dropped, as QEMU does; -m then refuses the odd size. */
	bytes = (unsigned __int128)v * mult + (unsigned __int128)frac * mult / frac_den;
	if (bytes > UINT64_MAX)
		return -ERANGE;
	*out = (uint64_t)bytes;
	return 0;
}

void config_free(struct vm_config *cfg)
{
	keyed_list_free(&cfg->devices);
	keyed_list_free(&cfg->drives);
	keyed_list_free(&cfg->netdevs);
	keyed_list_free(&cfg->chardevs);
	keyed_list_free(&cfg->objects);
	keyed_list_free(&cfg->mons);
	free(cfg->owned_name);
	cfg->owned_name = NULL;
}

void config_init(struct vm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->cmdline = "";
	cfg->name = "kvmini";
	cfg->mem_size = KVMINI_DEFAULT_MEM;
	cfg->ncpus = 1;
	cfg->boot_decompress = BOOT_DECOMPRESS_AUTO;
	cfg->serial[0] = (struct chardev_cfg){.id = "serial0", .backend = CHARDEV_STDIO};
	cfg->nserials = 1;
	cfg->debug_exit_port = 0xf4;
	cfg->debug_exit_size = 4;
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

static const char *const serial_ids[KVMINI_MAX_SERIALS] = {"serial0", "serial1", "serial2",
							   "serial3"};

/* The options after "unix:PATH": QEMU's server[=on|off], wait[=on|off] and the older
 * nowait. Returns NULL or what is wrong. */
static const char *unix_opts(struct chardev_cfg *ch, const char *opts)
{
	bool wait_given = false;

	while (*opts) {
		const char *end = strchrnul(opts, ',');
		size_t n = (size_t)(end - opts);
		if ((n == 6 && !memcmp(opts, "server", 6)) ||
		    (n == 9 && !memcmp(opts, "server=on", 9)))
			ch->server = true;
		else if (n == 10 && !memcmp(opts, "server=off", 10))
			ch->server = false;
		else if ((n == 6 && !memcmp(opts, "nowait", 6)) ||
			 (n == 8 && !memcmp(opts, "wait=off", 8)))
			ch->wait = false, wait_given = true;
		else if ((n == 4 && !memcmp(opts, "wait", 4)) ||
			 (n == 7 && !memcmp(opts, "wait=on", 7)))
			ch->wait = true, wait_given = true;
		else
			return "unix: knows server[=on|off], wait[=on|off] and nowait";
		opts = *end ? end + 1 : end;
	}
	/* As in QEMU, a server waits for its first client unless told not to. */
	if (ch->server && !wait_given)
		ch->wait = true;
	return NULL;
}

/* One -serial/--console value: QEMU's stdio, mon:stdio, pty, null, none, file:PATH,
 * unix:PATH[,server][,nowait], or chardev:ID (resolved once every -chardev is known). */
static int parse_serial_spec(struct chardev_cfg *ch, const char *v, const char **ref,
			     const char **why)
{
	*ch = (struct chardev_cfg){0};
	*ref = NULL;
	*why = NULL;
	if (!strcmp(v, "stdio")) {
		ch->backend = CHARDEV_STDIO;
	} else if (!strcmp(v, "mon:stdio")) {
		ch->backend = CHARDEV_STDIO;
		ch->mux = true;
	} else if (!strcmp(v, "none")) {
		ch->backend = CHARDEV_NONE;
	} else if (!strcmp(v, "null")) {
		ch->backend = CHARDEV_NULL;
	} else if (!strcmp(v, "pty")) {
		ch->backend = CHARDEV_PTY;
	} else if (!strncmp(v, "file:", 5) && v[5]) {
		ch->backend = CHARDEV_FILE;
		ch->path = v + 5;
	} else if (!strncmp(v, "unix:", 5) && v[5] && v[5] != ',') {
		const char *comma = strchrnul(v + 5, ',');
		size_t n = (size_t)(comma - (v + 5));
		ch->backend = CHARDEV_UNIX;
		if (n >= sizeof(ch->path_buf)) {
			*why = "the socket path is too long (at most 107 bytes)";
			return -EINVAL;
		}
		memcpy(ch->path_buf, v + 5, n);
		ch->path_buf[n] = '\0';
		*why = unix_opts(ch, *comma ? comma + 1 : comma);
		if (*why)
			return -EINVAL;
	} else if (!strncmp(v, "chardev:", 8) && v[8]) {
		*ref = v + 8;
	} else if (!strncmp(v, "mon:", 4)) {
		*why = "kvmini multiplexes the monitor only with stdio (mon:stdio)";
		return -EINVAL;
	} else {
		*why = "must be stdio, mon:stdio, pty, null, none, file:PATH, "
		       "unix:PATH[,server][,nowait] or chardev:ID";
		return -EINVAL;
	}
	return 0;
}

/* The first -serial (or --console) replaces the default ttyS0 on stdio; each further one
 * adds the next port, as QEMU does. */
static int add_serial(struct vm_config *cfg, const struct opt_use *u, bool *serial_given,
		      const char **refs, struct errbuf *e)
{
	struct chardev_cfg ch;
	const char *ref, *why;

	if (!*serial_given) {
		cfg->nserials = 0;
		*serial_given = true;
	}
	if (cfg->nserials == KVMINI_MAX_SERIALS)
		return CFG_ERR(e, "too many %.*s: a PC has %d serial ports", u->opt_len, u->opt,
			       KVMINI_MAX_SERIALS);
	int r = parse_serial_spec(&ch, u->val, &ref, &why);
	if (r < 0)
		return CFG_ERR(e, "invalid %.*s '%s': %s", u->opt_len, u->opt, u->val, why);
	ch.id = serial_ids[cfg->nserials];
	refs[cfg->nserials] = ref;
	cfg->serial[cfg->nserials] = ch;
	/* path_buf moved with the struct: point into the copy. */
	if (ch.backend == CHARDEV_UNIX)
		cfg->serial[cfg->nserials].path = cfg->serial[cfg->nserials].path_buf;
	cfg->nserials++;
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

/* QEMU's -name [guest=]NAME[,debug-threads=on|off]; a ',' in NAME is written ",,". */
static int set_name(struct vm_config *cfg, const struct opt_use *u, struct errbuf *e)
{
	struct keyed_opts o;
	const char *name;
	bool threads;
	int r;

	if ((r = keyed_parse("name", u->val, &o, e)))
		return r;
	/* kvmini always names its vCPU threads ("vcpu N"), so debug-threads changes nothing. */
	if ((r = keyed_get_bool(&o, "debug-threads", true, &threads, e)) ||
	    (r = keyed_check_used(&o, "guest, debug-threads", e)))
		goto out;
	name = o.type ? o.type : "";
	if (!*name) {
		r = CFG_ERR(e, "invalid %.*s '%s': empty name", u->opt_len, u->opt, u->val);
		goto out;
	}
	for (const char *p = name; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			r = CFG_ERR(e, "invalid %.*s '%s': control characters are not allowed",
				    u->opt_len, u->opt, u->val);
			goto out;
		}
	}
	free(cfg->owned_name);
	cfg->owned_name = o.type;
	o.type = NULL;
	cfg->name = cfg->owned_name;
out:
	keyed_opts_free(&o);
	return r;
}

/* kvmini has one machine, so -machine/-M only checks that what it asks for is that one. */
static bool machine_type_ok(const char *t)
{
	return !strcmp(t, "pc") || !strcmp(t, "q35") || !strcmp(t, "microvm") ||
	       !strncmp(t, "pc-q35-", 7) || !strncmp(t, "pc-i440fx-", 10);
}

static int machine_off(struct keyed_opts *o, const char *key, const char *why, struct errbuf *e)
{
	bool on;
	int r = keyed_get_bool(o, key, false, &on, e);

	if (!r && on)
		return CFG_ERR(e, "invalid -machine '%s': %s=on: %s", o->spec, key, why);
	return r;
}

static int set_machine(struct vm_config *cfg, const struct opt_use *u, struct errbuf *e)
{
	struct keyed_opts o;
	const char *v;
	bool merge;
	int r;

	if ((r = keyed_parse("machine", u->val, &o, e)))
		return r;
	if (o.type && !machine_type_ok(o.type)) {
		r = CFG_ERR(e,
			    "invalid %.*s '%s': kvmini has one machine (a PC, accepted as pc, q35 "
			    "or microvm), not %s",
			    u->opt_len, u->opt, u->val, o.type);
		goto out;
	}
	/* QEMU's accel=kvm:tcg means kvm first, which kvmini always has. */
	v = keyed_get(&o, "accel");
	if (v && strcmp(v, "kvm") && strncmp(v, "kvm:", 4)) {
		r = CFG_ERR(e, "invalid %.*s '%s': accel=%s: kvmini only runs on kvm", u->opt_len,
			    u->opt, u->val, v);
		goto out;
	}
	v = keyed_get(&o, "kernel-irqchip");
	if (v && strcmp(v, "on")) {
		r = CFG_ERR(e,
			    "invalid %.*s '%s': kernel-irqchip=%s: kvmini always uses KVM's "
			    "in-kernel irqchip (on)",
			    u->opt_len, u->opt, u->val, v);
		goto out;
	}
	if ((r = machine_off(&o, "usb", "kvmini has no USB", e)) ||
	    (r = machine_off(&o, "vmport", "kvmini has no VMware I/O port", e)) ||
	    (r = machine_off(&o, "smm", "kvmini has no system management mode", e)))
		goto out;
	/* QEMU's mem-merge is what kvmini calls --ksm. */
	if ((r = keyed_get_bool(&o, "mem-merge", cfg->ksm, &merge, e)))
		goto out;
	cfg->ksm = merge;
	r = keyed_check_used(&o, "type, accel, kernel-irqchip, usb, vmport, smm, mem-merge", e);
out:
	keyed_opts_free(&o);
	return r;
}

/* QEMU's -accel [accel=]kvm[,kernel-irqchip=on]. */
static int set_accel(const struct opt_use *u, struct errbuf *e)
{
	struct keyed_opts o;
	const char *v;
	int r;

	if ((r = keyed_parse("accel", u->val, &o, e)))
		return r;
	if (!o.type || strcmp(o.type, "kvm")) {
		r = CFG_ERR(e, "invalid %.*s '%s': kvmini only runs on 'kvm'", u->opt_len, u->opt,
			    u->val);
		goto out;
	}
	v = keyed_get(&o, "kernel-irqchip");
	if (v && strcmp(v, "on")) {
		r = CFG_ERR(e,
			    "invalid %.*s '%s': kernel-irqchip=%s: kvmini always uses KVM's "
			    "in-kernel irqchip (on)",
			    u->opt_len, u->opt, u->val, v);
		goto out;
	}
	r = keyed_check_used(&o, "kernel-irqchip", e);
out:
	keyed_opts_free(&o);
	return r;
}

static int set_display(const struct opt_use *u, struct errbuf *e)
{
	if (strcmp(u->val, "none"))
		return CFG_ERR(e,
			       "invalid %.*s '%s': kvmini has no display (only -display none is "
			       "accepted; the console is the serial port)",
			       u->opt_len, u->opt, u->val);
	return 0;
}

/* --qmp/-qmp unix:PATH[,server][,wait=off|nowait]: the control socket, a listening unix
 * socket (kvmini is always the server). */
static int set_qmp(struct vm_config *cfg, const struct opt_use *u, struct errbuf *e)
{
	struct chardev_cfg ch;
	const char *ref, *why;
	if (cfg->qmp.backend != CHARDEV_NONE)
		return CFG_ERR(e, "invalid %.*s '%s': kvmini has one QMP socket", u->opt_len,
			       u->opt, u->val);
	if (strncmp(u->val, "unix:", 5))
		return CFG_ERR(e, "invalid %.*s '%s': must be unix:PATH[,server][,wait=off]",
			       u->opt_len, u->opt, u->val);
	if (parse_serial_spec(&ch, u->val, &ref, &why) < 0)
		return CFG_ERR(e, "invalid %.*s '%s': %s", u->opt_len, u->opt, u->val, why);
	/* The socket is always kvmini's to listen on; "server" only changes the default of
	 * wait, as in QEMU. */
	if (!ch.server) {
		ch.server = true;
		ch.wait = false;
	}
	ch.id = "qmp";
	ch.path = NULL;
	cfg->qmp = ch;
	cfg->qmp.path = cfg->qmp.path_buf;
	return 0;
}

static int set_monitor(struct vm_config *cfg, const struct opt_use *u, struct errbuf *e)
{
	if (!strcmp(u->val, "none"))
		cfg->monitor = (struct chardev_cfg){.backend = CHARDEV_NONE};
	else if (!strcmp(u->val, "stdio"))
		cfg->monitor = (struct chardev_cfg){.id = "monitor0", .backend = CHARDEV_STDIO};
	else
		return CFG_ERR(e, "invalid %.*s '%s': must be none or stdio", u->opt_len, u->opt,
			       u->val);
	return 0;
}

/* The I/O ports of kvmini's PC (src/devices/legacy.h, serial.h; ttyS0-3 where -serial
 * puts them), so a moved isa-debug-exit that lands on one is named here rather than failing
 * later as a bare -EEXIST from the bus. */
static const struct {
	uint16_t first, last;
	const char *what;
} pc_ports[] = {
    {0x60, 0x60, "i8042 data port"},
    {0x64, 0x64, "i8042 command port"},
    {0x70, 0x71, "CMOS RTC"},
    {0x80, 0x80, "boot-time marker port"},
    {0x2e8, 0x2ef, "serial port ttyS3"},
    {0x2f8, 0x2ff, "serial port ttyS1"},
    {0x3e8, 0x3ef, "serial port ttyS2"},
    {0x3f8, 0x3ff, "serial port ttyS0"},
    {0x600, 0x605, "ACPI PM1a registers"},
    {0x620, 0x623, "ACPI GPE0 block"},
    {0xcf8, 0xcff, "PCI configuration/reset ports"},
};

/* The one -device kvmini has: QEMU's isa-debug-exit, moved or resized. */
static int set_debug_exit(struct vm_config *cfg, struct keyed_opts *o, struct errbuf *e)
{
	uint64_t base, size;
	int r;

	/* QEMU's defaults, not kvmini's (0xf4, 4 bytes), when -device leaves them out. */
	if ((r = keyed_get_u64(o, "iobase", 0x501, 0xffff, &base, e)) ||
	    (r = keyed_get_u64(o, "iosize", 2, 0x10000, &size, e)) ||
	    (r = keyed_check_used(o, "iobase, iosize", e)))
		return r;
	if (size == 0)
		return CFG_ERR(e, "invalid -device '%s': iosize must be at least 1", o->spec);
	if (base + size > 0x10000)
		return CFG_ERR(
		    e, "invalid -device '%s': ports 0x%llx..0x%llx are outside 0..0xffff", o->spec,
		    (unsigned long long)base, (unsigned long long)(base + size - 1));
	for (size_t i = 0; i < sizeof(pc_ports) / sizeof(pc_ports[0]); i++) {
		if (base <= pc_ports[i].last && base + size - 1 >= pc_ports[i].first)
			return CFG_ERR(e,
				       "invalid -device '%s': ports 0x%llx..0x%llx overlap the %s "
				       "at 0x%x..0x%x",
				       o->spec, (unsigned long long)base,
				       (unsigned long long)(base + size - 1), pc_ports[i].what,
				       pc_ports[i].first, pc_ports[i].last);
	}
	if (cfg->debug_exit_given)
		return CFG_ERR(
		    e, "invalid -device '%s': kvmini has one isa-debug-exit, given twice", o->spec);
	cfg->debug_exit_given = true;
	cfg->debug_exit_port = (uint16_t)base;
	cfg->debug_exit_size = (uint32_t)size;
	return 0;
}

/* -device vmgenid[,guid=auto|UUID]: kvmini gives every VM one; this sets its GUID. */
static int set_vmgenid(struct vm_config *cfg, struct keyed_opts *o, struct errbuf *e)
{
	const char *guid = keyed_get(o, "guid");
	int r = keyed_check_used(o, "guid", e);
	if (r)
		return r;
	if (cfg->vmgenid_given)
		return CFG_ERR(e, "invalid -device '%s': kvmini has one vmgenid, given twice",
			       o->spec);
	cfg->vmgenid_given = true;
	if (guid && strcmp(guid, "auto")) {
		if (vmgenid_parse(guid, cfg->vmgenid_guid) < 0)
			return CFG_ERR(e,
				       "invalid -device '%s': guid must be auto or a UUID "
				       "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
				       o->spec);
		cfg->vmgenid_guid_set = true;
	}
	keyed_opts_free(o);
	cfg->devices.n--;
	return 0;
}

/* -device virtio-serial-pci|virtio-serial-device|virtio-serial is a bus whose one port
 * kvmini's virtio-console is: it only chooses the transport, and leaves the list. A
 * following -device virtconsole,chardev=ID becomes virtio-console[-pci|-device], the
 * registry's name, on that transport. */
static int add_virtio_serial(struct vm_config *cfg, struct keyed_opts *o, struct errbuf *e)
{
	const char *t = o->type;
	if (strcmp(t, "virtconsole")) {
		const char *suffix = t + 13;
		if (strcmp(suffix, "-pci") && strcmp(suffix, "-device") && *suffix)
			return CFG_ERR(e, "invalid -device '%s': kvmini has no %s device", o->spec,
				       t);
		uint64_t ports;
		int r = keyed_get_u64(o, "max_ports", 1, 31, &ports, e);
		if (!r)
			r = keyed_check_used(o, "max_ports", e);
		if (r)
			return r;
		if (cfg->virtio_serial_bus)
			return CFG_ERR(e, "invalid -device '%s': kvmini has one virtio-serial bus",
				       o->spec);
		cfg->virtio_serial_bus = !strcmp(suffix, "-pci")      ? "-pci"
					 : !strcmp(suffix, "-device") ? "-device"
								      : "";
		keyed_opts_free(o);
		cfg->devices.n--;
		return 0;
	}
	if (!cfg->virtio_serial_bus)
		return CFG_ERR(e,
			       "invalid -device '%s': virtconsole is a port of a virtio-serial bus "
			       "(give -device virtio-serial-pci or virtio-serial-device before it)",
			       o->spec);
	if (cfg->virtio_console_given)
		return CFG_ERR(e, "invalid -device '%s': kvmini has one virtio console port",
			       o->spec);
	char *type = malloc(32);
	if (!type)
		return CFG_ERR(e, "out of memory");
	snprintf(type, 32, "virtio-console%s", cfg->virtio_serial_bus);
	free(o->type);
	o->type = type;
	cfg->virtio_console_given = true;
	return 0;
}

/* --console virtio: hvc0 on stdio, as -chardev stdio,id=virtcon0 -device virtio-serial
 * -device virtconsole,chardev=virtcon0 on --virtio-transport's transport. It takes the
 * place of the default ttyS0 as --console does. */
static int add_console_virtio(struct vm_config *cfg, bool *console_given, struct errbuf *e)
{
	if (!*console_given) {
		cfg->nserials = 0;
		*console_given = true;
	}
	if (cfg->virtio_console_given)
		return CFG_ERR(e, "--console virtio: kvmini has one virtio console port");
	struct keyed_opts *o;
	int r = keyed_list_add(&cfg->chardevs, "chardev", "stdio,id=virtcon0", NULL, e);
	if (!r)
		r = keyed_list_add(&cfg->devices, "device", "virtio-console,chardev=virtcon0", &o,
				   e);
	if (!r)
		cfg->virtio_console_given = true;
	return r;
}

static int add_device(struct vm_config *cfg, const char *spec, struct errbuf *e)
{
	struct keyed_opts *o;
	int r = keyed_list_add(&cfg->devices, "device", spec, &o, e);

	if (r)
		return r;
	if (!strcmp(o->type, "isa-debug-exit"))
		return set_debug_exit(cfg, o, e);
	if (!strcmp(o->type, "vmgenid"))
		return set_vmgenid(cfg, o, e);
	if (!strncmp(o->type, "virtio-serial", 13) || !strcmp(o->type, "virtconsole"))
		return add_virtio_serial(cfg, o, e);
	if (config_is_blk_driver(o->type))
		return 0; /* checked with the -drives, once all are read */
	if (!strcmp(o->type, "help") || !strcmp(o->type, "?"))
		return CFG_ERR(e, "-device %s: kvmini's devices are " KVMINI_DEVICE_LIST, o->type);
	/* Read by virtio/attach.c when the VM is built (the type checks its own keys). */
	if (virtio_find_type(o->type))
		return 0;
	return CFG_ERR(
	    e,
	    "invalid -device '%s': kvmini has no %s device (its devices are " KVMINI_DEVICE_LIST
	    ")",
	    spec, o->type);
}

/* -nographic in QEMU only moves the serial port to stdio when no -serial says otherwise,
 * whatever the order; console_given tracks that. */
static int apply_opt(struct vm_config *cfg, enum opt_id id, const struct opt_use *u,
		     bool *console_given, const char **refs, struct errbuf *e)
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
		if (!strcmp(u->val, "virtio"))
			return add_console_virtio(cfg, console_given, e);
		return add_serial(cfg, u, console_given, refs, e);
	case OPT_NAME:
		return set_name(cfg, u, e);
	case OPT_HUGEPAGES:
		cfg->hugepages = true;
		return 0;
	case OPT_PROFILE:
		if (!*u->val)
			return errf(e, -EINVAL, "--profile needs a file name");
		cfg->profile_path = u->val;
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
		/* QEMU's -nographic puts ttyS0 and the monitor on stdio (Ctrl-A c). */
		if (!*console_given) {
			cfg->serial[0] = (struct chardev_cfg){
			    .id = "serial0", .backend = CHARDEV_STDIO, .mux = true};
			cfg->nserials = 1;
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
		return set_accel(u, e);
	case OPT_DEVICE:
		return add_device(cfg, u->val, e);
	case OPT_RNG: /* the same entry as -device virtio-rng, on the default transport */
		return add_device(cfg, "virtio-rng", e);
	case OPT_DRIVE:
		return keyed_list_add(&cfg->drives, "drive", u->val, NULL, e);
	case OPT_DISK:
		return config_add_disk(cfg, u->val, e);
	case OPT_NETDEV:
		return keyed_list_add(&cfg->netdevs, "netdev", u->val, NULL, e);
	case OPT_NET:
		return config_add_net(cfg, u->val, e);
	case OPT_NIC:
		return config_add_nic(cfg, u->val, e);
	case OPT_CHARDEV:
		return keyed_list_add(&cfg->chardevs, "chardev", u->val, NULL, e);
	case OPT_OBJECT:
		return keyed_list_add(&cfg->objects, "object", u->val, NULL, e);
	case OPT_MON:
		return keyed_list_add(&cfg->mons, "mon", u->val, NULL, e);
	case OPT_DISPLAY:
		return set_display(u, e);
	case OPT_MONITOR:
		return set_monitor(cfg, u, e);
	case OPT_NODEFAULTS:
		cfg->nodefaults = true;
		return 0;
	case OPT_NO_USER_CONFIG: /* kvmini reads no configuration files */
		return 0;
	case OPT_MACHINE:
		return set_machine(cfg, u, e);
	case OPT_QMP:
		return set_qmp(cfg, u, e);
	case OPT_START_PAUSED:
		cfg->start_paused = true;
		return 0;
	case OPT_RESTORE:
		if (!u->val[0])
			return CFG_ERR(e, "--restore needs a snapshot file");
		if (cfg->restore_path || cfg->incoming_defer)
			return CFG_ERR(e, "--restore/-incoming given twice");
		cfg->restore_path = u->val;
		return 0;
	case OPT_INCOMING:
		/* QEMU 8.2's file: URI, and defer (migrate-incoming names the file later); the
		 * others (tcp:, exec:) are live migration, not here yet. */
		if (cfg->restore_path || cfg->incoming_defer)
			return CFG_ERR(e, "--restore/-incoming given twice");
		if (!strcmp(u->val, "defer")) {
			cfg->incoming_defer = true;
			return 0;
		}
		if (strncmp(u->val, "file:", 5) || !u->val[5])
			return CFG_ERR(
			    e,
			    "-incoming %s: only file:PATH (a snapshot file) and defer are "
			    "supported",
			    u->val);
		cfg->restore_path = u->val + 5;
		return 0;
	case OPT_SNAPSHOT_DIR:
		if (!u->val[0])
			return CFG_ERR(e, "--snapshot-dir needs a directory");
		cfg->snapshot_dir = u->val;
		return 0;
	case OPT_VIRTIO_TRANSPORT:
		if (!strcmp(u->val, "pci") || !strcmp(u->val, "mmio")) {
			cfg->virtio_mmio = !strcmp(u->val, "mmio");
			return 0;
		}
		return CFG_ERR(e, "invalid %.*s '%s': the transports are pci and mmio", u->opt_len,
			       u->opt, u->val);
	case OPT_HELP:
	case OPT_VERSION:
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

/* One -chardev as a backend: QEMU's stdio, null, pty, file (path=) and socket (a unix
 * socket at path=, server=, wait=); mux=on shares a stdio backend with the monitor. */
static int chardev_from_keyed(struct keyed_opts *o, struct chardev_cfg *ch, struct errbuf *e)
{
	const char *t = o->type;
	const char *known;
	int r;

	*ch = (struct chardev_cfg){.id = o->id};
	if ((r = keyed_get_bool(o, "mux", false, &ch->mux, e)))
		return r;
	if (!strcmp(t, "stdio")) {
		bool sig;
		ch->backend = CHARDEV_STDIO;
		/* signal=off: Ctrl-C goes to the guest, which kvmini's raw terminal always does. */
		if ((r = keyed_get_bool(o, "signal", true, &sig, e)))
			return r;
		known = "id, mux, signal";
	} else if (!strcmp(t, "null")) {
		ch->backend = CHARDEV_NULL;
		known = "id, mux";
	} else if (!strcmp(t, "pty")) {
		ch->backend = CHARDEV_PTY;
		known = "id, mux";
	} else if (!strcmp(t, "file")) {
		ch->backend = CHARDEV_FILE;
		ch->path = keyed_get(o, "path");
		if (!ch->path || !*ch->path)
			return CFG_ERR(e, "invalid -chardev '%s': file needs path=", o->spec);
		known = "id, mux, path";
	} else if (!strcmp(t, "socket")) {
		ch->backend = CHARDEV_UNIX;
		ch->path = keyed_get(o, "path");
		if (keyed_get(o, "host") || keyed_get(o, "port"))
			return CFG_ERR(e,
				       "invalid -chardev '%s': kvmini's sockets are unix sockets "
				       "(path=), not TCP",
				       o->spec);
		if (!ch->path || !*ch->path)
			return CFG_ERR(e, "invalid -chardev '%s': socket needs path=", o->spec);
		if (strlen(ch->path) >= sizeof(ch->path_buf))
			return CFG_ERR(e, "invalid -chardev '%s': the socket path is too long",
				       o->spec);
		if ((r = keyed_get_bool(o, "server", false, &ch->server, e)) ||
		    (r = keyed_get_bool(o, "wait", ch->server, &ch->wait, e)))
			return r;
		known = "id, mux, path, server, wait";
	} else {
		return CFG_ERR(
		    e,
		    "invalid -chardev '%s': kvmini's backends are stdio, null, pty, file "
		    "and socket",
		    o->spec);
	}
	return keyed_check_used(o, known, e);
}

/* -serial chardev:ID, -mon chardev=ID and -monitor stdio, once every -chardev is known. */
static int resolve_chardevs(struct vm_config *cfg, const char **refs, struct errbuf *e)
{
	struct chardev_cfg defs[16];
	unsigned ndefs = cfg->chardevs.n < 16 ? cfg->chardevs.n : 16;
	bool used[16] = {0};
	int r;

	if (cfg->chardevs.n > 16)
		return CFG_ERR(e, "too many -chardev (kvmini takes up to 16)");
	for (unsigned i = 0; i < ndefs; i++)
		if ((r = chardev_from_keyed(&cfg->chardevs.items[i], &defs[i], e)))
			return r;
	for (unsigned s = 0; s < cfg->nserials; s++) {
		if (!refs[s])
			continue;
		unsigned i;
		for (i = 0; i < ndefs; i++)
			if (!strcmp(defs[i].id, refs[s]))
				break;
		if (i == ndefs)
			continue; /* check_serials names it */
		if (used[i])
			return CFG_ERR(e, "-chardev id=%s is used by two serial ports", refs[s]);
		used[i] = true;
		struct chardev_cfg *ch = &cfg->serial[s];
		*ch = defs[i];
		ch->id = cfg->chardevs.items[i].id; /* the label QEMU prints for a pty */
		if (ch->backend == CHARDEV_UNIX) {
			snprintf(ch->path_buf, sizeof(ch->path_buf), "%s", ch->path);
			ch->path = ch->path_buf;
		}
		refs[s] = NULL;
	}
	for (unsigned m = 0; m < cfg->mons.n; m++) {
		struct keyed_opts *o = &cfg->mons.items[m];
		const char *id = o->type;
		const char *mode = keyed_get(o, "mode");
		bool pretty;
		if ((r = keyed_get_bool(o, "pretty", false, &pretty, e)) ||
		    (r = keyed_check_used(o, "chardev, mode, pretty", e)))
			return r;
		if (mode && !strcmp(mode, "control")) {
			unsigned i;
			for (i = 0; i < ndefs; i++)
				if (!strcmp(defs[i].id, id))
					break;
			if (i == ndefs || defs[i].backend != CHARDEV_UNIX || !defs[i].server)
				return CFG_ERR(e,
					       "invalid -mon '%s': QMP needs a listening unix "
					       "socket (-chardev socket,id=%s,path=PATH,server=on,"
					       "wait=off)",
					       o->spec, id);
			if (cfg->qmp.backend != CHARDEV_NONE)
				return CFG_ERR(e, "invalid -mon '%s': kvmini has one QMP socket",
					       o->spec);
			cfg->qmp = defs[i];
			snprintf(cfg->qmp.path_buf, sizeof(cfg->qmp.path_buf), "%s", defs[i].path);
			cfg->qmp.path = cfg->qmp.path_buf;
			continue;
		}
		if (mode && strcmp(mode, "readline"))
			return CFG_ERR(e, "invalid -mon '%s': mode must be readline or control",
				       o->spec);
		unsigned s;
		for (s = 0; s < cfg->nserials; s++)
			if (cfg->serial[s].id && !strcmp(cfg->serial[s].id, id))
				break;
		if (s == cfg->nserials || cfg->serial[s].backend != CHARDEV_STDIO)
			return CFG_ERR(
			    e,
			    "invalid -mon '%s': kvmini's monitor shares the stdio serial "
			    "port (-chardev stdio,id=%s,mux=on -serial chardev:%s)",
			    o->spec, id, id);
		cfg->serial[s].mux = true;
	}
	if (cfg->monitor.backend == CHARDEV_STDIO) {
		/* QEMU gives -monitor stdio its own stdio; kvmini has one terminal, so the
		 * monitor shares it with the stdio serial port, as mon:stdio. */
		unsigned s;
		for (s = 0; s < cfg->nserials; s++)
			if (cfg->serial[s].backend == CHARDEV_STDIO)
				break;
		if (s == cfg->nserials)
			return CFG_ERR(e, "invalid -monitor 'stdio': kvmini's monitor shares the "
					  "stdio serial port (use -serial mon:stdio)");
		cfg->serial[s].mux = true;
	}
	return 0;
}

int config_chardev_lookup(const struct vm_config *cfg, const char *id, struct chardev_cfg *out,
			  struct errbuf *e)
{
	struct keyed_opts *o = keyed_list_find(&cfg->chardevs, id);
	if (!o)
		return CFG_ERR(e, "no -chardev with id=%s", id);
	for (unsigned s = 0; s < cfg->nserials; s++)
		if (cfg->serial[s].id && !strcmp(cfg->serial[s].id, id))
			return CFG_ERR(
			    e, "-chardev id=%s is used by a serial port and a virtconsole", id);
	int r = chardev_from_keyed(o, out, e);
	if (r)
		return r;
	if (out->mux)
		return CFG_ERR(e,
			       "-chardev id=%s: kvmini multiplexes the monitor only with a "
			       "serial port",
			       id);
	if (out->backend == CHARDEV_UNIX) {
		snprintf(out->path_buf, sizeof(out->path_buf), "%s", out->path);
		out->path = out->path_buf;
	}
	return 0;
}

/* A virtconsole's chardev exists, is not a serial port's, and stdio has one user. */
static int check_virtio_console(const struct vm_config *cfg, struct errbuf *e)
{
	for (unsigned i = 0; i < cfg->devices.n; i++) {
		struct keyed_opts *o = &cfg->devices.items[i];
		if (!o->type || strncmp(o->type, "virtio-console", 14))
			continue;
		const char *id = NULL;
		for (unsigned k = 0; k < o->nkv; k++)
			if (!strcmp(o->kv[k].key, "chardev"))
				id = o->kv[k].val;
		if (!id)
			return CFG_ERR(e, "invalid -device '%s': virtconsole needs chardev=ID",
				       o->spec);
		struct chardev_cfg cc;
		struct errbuf why;
		if (config_chardev_lookup(cfg, id, &cc, &why))
			return CFG_ERR(e, "invalid -device '%s': %s", o->spec, why.msg);
		for (unsigned s = 0; s < cfg->nserials; s++)
			if (cc.backend == CHARDEV_STDIO && cfg->serial[s].backend == CHARDEV_STDIO)
				return CFG_ERR(e, "stdio is used by a serial port and the virtio "
						  "console: only one can have it (give the serial "
						  "port another backend, or -serial none)");
	}
	return 0;
}

/* The keyed options parse into lists for the devices and backends that will read them;
 * until one does, running without what the user asked for would be a silent lie. */
static int refuse_unread_keyed(struct vm_config *cfg, struct errbuf *e)
{
	int r = config_finish_disks(cfg, e);
	if (r)
		return one_line(e, r);
	for (unsigned i = 0; i < cfg->objects.n; i++) {
		struct keyed_opts *o = &cfg->objects.items[i];
		/* Entropy sources for virtio-rng: kvmini reads getrandom(2) for both. */
		if (!strcmp(o->type, "rng-random")) {
			keyed_get(o, "filename");
			if (keyed_check_used(o, "filename", e) < 0)
				return -EINVAL;
			continue;
		}
		if (!strcmp(o->type, "rng-builtin")) {
			if (keyed_check_used(o, NULL, e) < 0)
				return -EINVAL;
			continue;
		}
		return CFG_ERR(e, "invalid -object '%s': kvmini has no %s object", o->spec,
			       o->type);
	}
	return 0;
}

/* Affinity may come before --cpus or -smp, so it can only be checked against the final
 * vCPU count. */
static int check_serials(struct vm_config *cfg, const char **refs, struct errbuf *e)
{
	bool stdio = false;
	for (unsigned i = 0; i < cfg->nserials; i++) {
		if (refs[i])
			return CFG_ERR(e, "invalid -serial 'chardev:%s': no -chardev with id=%s",
				       refs[i], refs[i]);
		if (cfg->serial[i].mux && cfg->serial[i].backend != CHARDEV_STDIO)
			return CFG_ERR(e,
				       "%s: kvmini multiplexes the monitor only on stdio (mux=on "
				       "with -chardev stdio)",
				       cfg->serial[i].id);
		if (cfg->serial[i].backend != CHARDEV_STDIO)
			continue;
		if (stdio)
			return CFG_ERR(e, "stdio is used by two serial ports: only one can have it "
					  "(as in QEMU)");
		stdio = true;
	}
	return 0;
}

/* vectors=N on a virtio -device (QEMU's virtio-pci property): the MSI-X table's size, 0
 * for no MSI-X at all (INTx only). Checked here, before the devices' own key checks, so
 * they accept it; virtio/attach.c reads it again. */
static int check_virtio_vectors(struct vm_config *cfg, struct errbuf *e)
{
	for (unsigned i = 0; i < cfg->devices.n; i++) {
		struct keyed_opts *o = &cfg->devices.items[i];
		if (!o->type || strncmp(o->type, "virtio-", 7) || !keyed_get(o, "vectors"))
			continue;
		size_t n = strlen(o->type);
		bool pci = n > 4 && !strcmp(o->type + n - 4, "-pci");
		bool mmio =
		    (n > 7 && !strcmp(o->type + n - 7, "-device")) || (!pci && cfg->virtio_mmio);
		if (mmio)
			return CFG_ERR(e,
				       "invalid -device '%s': vectors= is a virtio-pci property "
				       "(a virtio-mmio device has one interrupt line)",
				       o->spec);
		uint64_t v;
		struct errbuf tmp;
		if (keyed_get_u64(o, "vectors", 0, CONFIG_VIRTIO_MAX_VECTORS, &v, &tmp) < 0)
			return CFG_ERR(
			    e,
			    "invalid -device '%s': vectors must be 0 (no MSI-X, INTx only) "
			    "to %u",
			    o->spec, CONFIG_VIRTIO_MAX_VECTORS);
	}
	return 0;
}

static int check_final(struct vm_config *cfg, const char **refs, struct errbuf *e)
{
	int r = check_virtio_vectors(cfg, e);
	if (!r)
		r = resolve_chardevs(cfg, refs, e);
	if (!r)
		r = check_serials(cfg, refs, e);
	if (!r)
		r = check_virtio_console(cfg, e);
	if (!r)
		r = refuse_unread_keyed(cfg, e);
	if (!r)
		r = config_check_net(cfg, e);
	if (r)
		return r;
	for (unsigned v = cfg->ncpus; v < KVMINI_MAX_VCPUS; v++) {
		if (cfg->cpu_affinity[v] >= 0)
			return CFG_ERR(e,
				       "invalid --cpu-affinity: vCPU %u is pinned but the VM has "
				       "only %u vCPU%s",
				       v, cfg->ncpus, cfg->ncpus == 1 ? "" : "s");
	}
	return 0;
}

static int parse_run(struct vm_config *cfg, int argc, char **argv, struct errbuf *e)
{
	bool console_given = false;
	const char *serial_refs[KVMINI_MAX_SERIALS] = {0};

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
		if (o->id == OPT_VERSION)
			return 2;
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
		r = apply_opt(cfg, o->id, &u, &console_given, serial_refs, e);
		if (r)
			return r;
	}
	/* As in QEMU, -nodefaults drops the default serial port whatever the order, unless a
	 * -serial (or --console) asks for one. */
	if (cfg->nodefaults && !console_given)
		cfg->nserials = 0;
	return check_final(cfg, serial_refs, e);
}

int config_parse_run(struct vm_config *cfg, int argc, char **argv, struct errbuf *e)
{
	int r = parse_run(cfg, argc, argv, e);

	/* Nothing to free for the caller unless the VM is going to run. */
	if (r)
		config_free(cfg);
	return r;
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
	       "  --console SPEC          a serial port's backend (default: stdio); given again,\n"
	       "                          the next port (ttyS0 0x3f8 IRQ 4, ttyS1 0x2f8 IRQ 3,\n"
	       "                          ttyS2 0x3e8 IRQ 4, ttyS3 0x2e8 IRQ 3). SPEC is one of\n"
	       "                          stdio, mon:stdio (console and monitor: Ctrl-A c),\n"
	       "                          pty (path printed on stderr), null (output dropped),\n"
	       "                          none (no port), file:PATH, chardev:ID,\n"
	       "                          unix:PATH[,server[,nowait]] (a unix stream socket:\n"
	       "                          connect, or listen and wait for the first client);\n"
	       "                          on stdio, Ctrl-A h lists the keys (x quits);\n"
	       "                          virtio: hvc0, a virtio-console port on stdio instead\n"
	       "                          of ttyS0 (the guest's console= is left to you:\n"
	       "                          console=hvc0)\n"
	       "  --virtio-transport pci|mmio   where virtio devices whose name does not say go\n"
	       "                          (--rng, --console virtio; default: pci); mmio devices\n"
	       "                          are added to the kernel command line as\n"
	       "                          virtio_mmio.device=4K@0xfe000000+4K*n:GSI (GSI 5, 6,\n"
	       "                          7, 10-15, then 16-23)\n"
	       "  --name NAME             name of the VM (default: kvmini)\n"
	       "  --hugepages             back guest RAM with huge pages (default: off)\n"
	       "  --mem-prealloc          allocate all guest RAM at start-up (default: off)\n"
	       "  --ksm                   let KSM merge identical guest pages (default: off)\n"
	       "  --cpu-affinity LIST     pin vCPUs to host CPUs, VCPU=HOSTCPU pairs such as\n"
	       "                          0=2,1=3; host CPUs 0 to 1023 (default: not pinned)\n"
	       "  --boot-decompress MODE  who unpacks the compressed kernel: host (kvmini), guest\n"
	       "                          (the kernel's own decompressor) or auto (default: auto)\n"
	       "  --rng                   a virtio-rng device (host getrandom(2) for the guest's\n"
	       "                          hwrng), on PCI\n"
	       "  --disk PATH[,ro][,id=NAME][,cache=none|writeback][,queues=N]\n"
	       "                          a virtio-blk disk on a raw image or block device\n"
	       "                          (repeatable); ro: read-only; NAME: the serial the\n"
	       "                          guest reads (default: disk0, disk1, ...); cache=none:\n"
	       "                          O_DIRECT; N queues (1 to 64, default 1). I/O goes\n"
	       "                          through io_uring; the image is locked against a\n"
	       "                          second kvmini; qcow2 and other formats are refused\n"
	       "  --net tap=IFNAME[,mac=XX:XX:XX:XX:XX:XX][,queues=N]   a virtio-net NIC on the\n"
	       "                          tap IFNAME (created if missing; needs CAP_NET_ADMIN\n"
	       "                          or a tap owned by the user); MAC generated as\n"
	       "                          06:6b:76:xx:xx:xx when not given; queues 1 to 16 (1).\n"
	       "                          Repeatable. kvmini runs no scripts: set the tap up\n"
	       "                          beforehand. `kvmini info` says which data path\n"
	       "                          (user space or vhost-net) a VM gets\n"
	       "  --stats                 at exit, print exits and completed instructions\n"
	       "  --profile FILE          write each vCPU's guest RIP 50 times a second to FILE\n"
	       "                          (\"MS VCPU RIP\" lines; scripts/profile-report names\n"
	       "                          them with a System.map)\n"
	       "  -v, --verbose           more diagnostics; repeat for more (-v -v or -vv)\n"
	       "  -q, --quiet             fewer diagnostics\n"
	       "  -h, --help              print this help\n"
	       "\n"
	       "SIZE is a number with an optional suffix K, M, G or T (or KiB, KB, MiB, MB, ...;\n"
	       "all powers of 1024), with a fraction if wanted (1.5G); a bare number means MiB,\n"
	       "as in QEMU.\n"
	       "\n"
	       "QEMU spellings, mapped onto the options above:\n"
	       "  -kernel, -initrd, -append, -mem-prealloc   same as the -- forms\n"
	       "  -m SIZE | size=SIZE     same as --mem\n"
	       "  -smp N | cpus=N[,maxcpus=N][,sockets=S][,cores=C][,threads=T]\n"
	       "                          same as --cpus; maxcpus must equal cpus, and the\n"
	       "                          topology must fit cpus (checked only: the guest sees\n"
	       "                          one socket of N single-thread cores)\n"
	       "  -name [guest=]NAME[,debug-threads=on|off]   same as --name (write a ',' in\n"
	       "                          NAME as ',,'); vCPU threads are always named 'vcpu N'\n"
	       "  -serial SPEC            same as --console\n"
	       "  -chardev stdio|null|pty|file|socket,id=ID[,mux=on][,path=P][,server=on]\n"
	       "          [,wait=off]     a backend for -serial chardev:ID (socket: a unix\n"
	       "                          socket at path=P)\n"
	       "  -mon chardev=ID[,mode=readline|control]   the monitor on that stdio chardev\n"
	       "                          (with mux=on: Ctrl-A c switches); mode=control: QMP\n"
	       "                          on that listening socket chardev\n"
	       "  -nographic              ttyS0 and the monitor on stdio (mon:stdio) unless\n"
	       "                          -serial/--console says otherwise\n"
	       "  -nodefaults             no serial port unless -serial/--console asks for one\n"
	       "  -no-reboot, --no-reboot a guest reset ends kvmini with status 0 instead of\n"
	       "                          rebooting the VM\n"
	       "  -S                      start with the vCPUs paused, until `cont` from the\n"
	       "                          monitor or QMP\n"
	       "  --qmp, -qmp unix:PATH[,server][,wait=off|nowait]   the QMP control socket\n"
	       "                          (kvmini listens at PATH; with server and without\n"
	       "                          wait=off the guest starts once a client connects);\n"
	       "                          also -chardev socket,id=ID,path=PATH,server=on,\n"
	       "                          wait=off -mon chardev=ID,mode=control. Talk to it\n"
	       "                          with `kvmini ctl PATH COMMAND [JSON]`\n"
	       "  --restore PATH, -incoming file:PATH   start from a snapshot (QMP migrate to\n"
	       "                          file:PATH) instead of booting; give the options it was\n"
	       "                          taken with (memory, CPUs, serial ports): a difference\n"
	       "                          is refused and named. Memory is mapped copy-on-write\n"
	       "                          from the file, so many clones can share one snapshot\n"
	       "  -incoming defer         wait, paused (status inmigrate), for QMP\n"
	       "                          migrate-incoming {\"uri\": \"file:PATH\"}; the VM then\n"
	       "                          runs from the snapshot (stays paused with -S)\n"
	       "  --snapshot-dir DIR      where the monitor's savevm/loadvm/delvm keep named\n"
	       "                          snapshots, DIR/TAG.kvmini (default: the directory of\n"
	       "                          the first disk; without either, savevm says so)\n"
	       "  -device vmgenid[,guid=auto|UUID]   the VM generation ID's GUID (default:\n"
	       "                          random; each restore draws a new one)\n"
	       "  -device isa-debug-exit[,iobase=PORT][,iosize=N]   move the debug-exit port: a\n"
	       "                          write of V to any of PORT..PORT+N-1 ends kvmini with\n"
	       "                          status (V << 1) | 1 (default without -device: 0xf4,\n"
	       "                          4 ports; with it, QEMU's iobase=0x501, iosize=2)\n"
	       "  -device virtio-serial-pci|virtio-serial-device -device virtconsole,chardev=ID\n"
	       "                          hvc0 on the -chardev ID, over PCI or MMIO\n"
	       "  -device virtio-XXX-device   virtio-XXX on virtio-mmio (virtio-rng-device, ...)\n"
	       "  -device virtio-rng-pci[,rng=ID]   same as --rng; ID names an -object\n"
	       "                          rng-random,id=ID[,filename=PATH] or rng-builtin,id=ID\n"
	       "                          (kvmini reads getrandom(2) for either)\n"
	       "  -drive file=PATH[,format=raw][,if=virtio][,readonly=on][,cache=none][,id=ID]\n"
	       "                          same as --disk (if= defaults to virtio: kvmini has no\n"
	       "                          IDE; aio= is accepted, io_uring is always used)\n"
	       "  -drive if=none,id=ID,file=PATH,... -device virtio-blk-pci,drive=ID\n"
	       "                          [,num-queues=N][,serial=S]   the same disk in two parts\n"
	       "                          (S: up to 20 bytes; default: the drive's id)\n"
	       "  -netdev tap,id=ID,ifname=IF[,script=no][,downscript=no][,queues=N][,vhost=off]\n"
	       "    -device virtio-net-pci,netdev=ID[,mac=MAC][,mq=on]   same as --net tap=IF\n"
	       "                          (mq=on for several queue pairs, as QEMU; script and\n"
	       "                          downscript other than no are refused: kvmini runs no\n"
	       "                          scripts; vhost=on is refused)\n"
	       "  -nic tap,ifname=IF[,script=no][,downscript=no][,model=virtio-net-pci]\n"
	       "                          [,mac=MAC][,queues=N]   same as --net; -nic none adds\n"
	       "                          nothing\n"
	       "  -machine, -M [type=]pc|q35|microvm[,accel=kvm]   accepted: kvmini has one\n"
	       "                          machine (a PC booted without firmware) whatever the\n"
	       "                          type (also pc-q35-*, pc-i440fx-*); kernel-irqchip=on,\n"
	       "                          usb=off, vmport=off,\n"
	       "                          smm=off, and mem-merge=on|off (same as --ksm)\n"
	       "  -monitor none|stdio     no monitor, or the monitor on the stdio serial port\n"
	       "                          (as mon:stdio: Ctrl-A c)\n"
	       "  -display none, -no-user-config   accepted: kvmini has no display and reads no\n"
	       "                          configuration files\n"
	       "  -enable-kvm, -accel kvm, -cpu host   accepted and ignored: kvmini always uses\n"
	       "                          KVM and the host CPU\n"
	       "  -version                print the version and exit\n"
	       "\n"
	       "Keyed values follow QEMU's syntax: TYPE,key=value,... with ',,' for a comma in a\n"
	       "value, a bare key for key=on and noKEY for key=off. -netdev other than tap, other\n"
	       "-object types and -device with any other driver are parsed and then refused,\n"
	       "naming what kvmini lacks. Other QEMU options are rejected by name.\n";
}
