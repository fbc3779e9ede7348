/* The command line, parsed and validated into a struct vm_config. Accepts kvmini's own
 * options and the common QEMU spellings. Nothing here touches /dev/kvm or files. */
#ifndef KVMINI_CONFIG_H
#define KVMINI_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"

#define KVMINI_MAX_VCPUS   64
#define KVMINI_DEFAULT_MEM (256ull << 20)
#define KVMINI_MIN_MEM	   (2ull << 20)
#define KVMINI_MAX_MEM	   (1ull << 40) /* 1 TiB: beyond this is a typo, not a VM */

enum console_mode { CONSOLE_STDIO = 0, CONSOLE_NONE, CONSOLE_FILE };

/* A character backend, as -chardev/-serial/--console describe one (QEMU's spellings:
 * stdio, null, none, file:PATH, pty, unix:PATH[,server][,nowait], mon:stdio, chardev:ID). */
enum chardev_backend {
	CHARDEV_NONE = 0, /* no device at all (-serial none) */
	CHARDEV_NULL,	  /* a device whose output is discarded and that never has input */
	CHARDEV_STDIO,
	CHARDEV_FILE,
	CHARDEV_PTY,
	CHARDEV_UNIX, /* a unix stream socket */
};

struct chardev_cfg {
	const char *id; /* -chardev id=, or a generated "serialN" */
	enum chardev_backend backend;
	const char *path; /* CHARDEV_FILE and CHARDEV_UNIX */
	bool server;	  /* CHARDEV_UNIX: listen at path (else connect to it) */
	bool wait;	  /* CHARDEV_UNIX server: wait for a client before the guest starts */
	bool mux;	  /* console multiplexed with the monitor (mon:stdio, mux=on): Ctrl-A c */
};

#define KVMINI_MAX_SERIALS 4

/* One occurrence of a keyed option (-device, -drive, -netdev, -chardev, -object, -mon) in
 * QEMU's syntax: "type,key=val,key2=val2" with ",," escaping a comma. */
struct keyed_kv {
	char *key;
	char *val; /* "on" for a bare boolean key, as QEMU reads "server" */
};
struct keyed_opts {
	const char *option; /* "device", "drive", ... */
	char *type;	    /* the leading item without '=' (the driver or backend), or NULL */
	char *id;	    /* the value of id=, or NULL */
	struct keyed_kv *kv;
	unsigned nkv;
};
struct keyed_list {
	struct keyed_opts *items;
	unsigned n;
};

enum boot_decompress { BOOT_DECOMPRESS_AUTO = 0, BOOT_DECOMPRESS_HOST, BOOT_DECOMPRESS_GUEST };

struct vm_config {
	const char *kernel_path; /* NULL: boot the built-in demo guest */
	const char *initrd_path; /* NULL: none */
	const char *cmdline;	 /* never NULL after parsing ("" if not given) */
	const char *name;	 /* never NULL after parsing ("kvmini" if not given) */
	uint64_t mem_size;	 /* bytes, a multiple of 2 MiB? no: of 4 KiB */
	unsigned ncpus;
	enum console_mode console;
	const char *console_path; /* for CONSOLE_FILE */
	/* ttyS0.. in order (0x3f8/IRQ 4, 0x2f8/IRQ 3, 0x3e8/IRQ 4, 0x2e8/IRQ 3); a
	 * CHARDEV_NONE entry leaves that port out. */
	struct chardev_cfg serial[KVMINI_MAX_SERIALS];
	unsigned nserials;
	/* Keyed options as given, for the device code to read (VirtIO comes next). */
	struct keyed_list devices, drives, netdevs, chardevs, objects;
	bool start_paused;			   /* -S: vCPUs wait for `cont` from the monitor */
	uint16_t debug_exit_port, debug_exit_size; /* -device isa-debug-exit (0xf4, 1) */
	enum boot_decompress boot_decompress;
	bool hugepages;
	bool stats; /* --stats: exits and completions at exit, on stderr */
	bool mem_prealloc;
	bool ksm;
	bool no_reboot; /* a guest reset ends kvmini (status 0) instead of rebooting the VM */
	int cpu_affinity[KVMINI_MAX_VCPUS]; /* host CPU per vCPU, -1 = not pinned */
	int verbosity;			    /* 0 default, +1 per -v, -1 for -q */
};

void config_init(struct vm_config *cfg);
/* Frees what parsing allocated (keyed options); cfg can be parsed again afterwards. */
void config_free(struct vm_config *cfg);
/* Parses the options of `kvmini run` (argv[0] is the first option, not the program name).
 * Returns 0, 1 if --help was asked for (nothing else parsed), or -EINVAL with e filled with
 * one line that names the offending option or value. */
int config_parse_run(struct vm_config *cfg, int argc, char **argv, struct errbuf *e);
/* Parses a size: "512M", "2G", "1024" (MiB when no suffix, as QEMU's -m), "4096K", "1T",
 * also "512MiB"/"2GB". Returns 0 or -EINVAL/-ERANGE. */
int config_parse_size(const char *s, uint64_t *out);
/* The `kvmini run --help` text. */
const char *config_usage(void);

#endif
