/* The command line, parsed and validated into a struct vm_config. Accepts kvmini's own
 * options and the common QEMU spellings. Nothing here touches /dev/kvm or files. */
#ifndef KVMINI_CONFIG_H
#define KVMINI_CONFIG_H

/* -device virtio-*-pci,vectors=N: 0 (no MSI-X capability, INTx only) to the MSI-X table's
 * room in the BAR (4 KiB of 16-byte entries). */
#define CONFIG_VIRTIO_MAX_VECTORS 256

#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"

#define KVMINI_MAX_VCPUS   64
#define KVMINI_DEFAULT_MEM (256ull << 20)
#define KVMINI_MIN_MEM	   (2ull << 20)
#define KVMINI_MAX_MEM	   (1ull << 40) /* 1 TiB: beyond this is a typo, not a VM */

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
	const char *path;   /* CHARDEV_FILE and CHARDEV_UNIX */
	char path_buf[108]; /* holds path when it had to be cut out of a longer value */
	bool server;	    /* CHARDEV_UNIX: listen at path (else connect to it) */
	bool wait;	    /* CHARDEV_UNIX server: wait for a client before the guest starts */
	bool mux;	    /* console multiplexed with the monitor (mon:stdio, mux=on): Ctrl-A c */
};

#define KVMINI_MAX_SERIALS 4

/* One occurrence of a keyed option (-device, -drive, -netdev, -chardev, -object, -mon) in
 * QEMU's syntax: "type,key=val,key2=val2" with ",," escaping a comma. */
struct keyed_kv {
	char *key;
	char *val;    /* "on" for a bare boolean key, as QEMU reads "server" */
	bool negated; /* given as a bare "noKEY" (val is "off"), as QEMU reads "nowait" */
	bool used;    /* looked up by keyed_get*(): what is left is an unknown key */
};
struct keyed_opts {
	const char *option; /* "device", "drive", ... (a literal; messages print -device) */
	char *spec;	    /* the value as the user typed it, for messages */
	char *type;	    /* the leading item without '=' (the driver or backend), or NULL */
	char *id;	    /* the value of id=, or NULL */
	struct keyed_kv *kv;
	unsigned nkv;
};
struct keyed_list {
	struct keyed_opts *items;
	unsigned n;
};

/* Parses s, the value of -OPTION, into out. Items are ','-separated and ",," is a comma in
 * a value. The first item, when it has no '=', is the type: -device's driver, -netdev's
 * type, -chardev's backend, -object's qom-type, -mon's chardev, -machine's type, -name's
 * guest (that key may also be written out, driver=...); -drive has none, so there it is a
 * boolean key. id= goes to out->id (QEMU's rules: a letter, then letters, digits, -._).
 * A bare KEY reads as KEY=on and a bare noKEY as KEY=off, as QEMU does. A key given twice,
 * an empty or malformed key, a missing type (-device, -netdev, -chardev, -object, -mon)
 * and a missing id (-netdev, -chardev, -object) are errors. Returns 0, -EINVAL or -ENOMEM
 * with e filled (one line naming the option and the value); on error out holds nothing. */
int keyed_parse(const char *option, const char *s, struct keyed_opts *out, struct errbuf *e);
void keyed_opts_free(struct keyed_opts *o);
/* The value of key, or NULL; marks it as used. */
const char *keyed_get(struct keyed_opts *o, const char *key);
/* *out = dflt if key is absent; else on/off/yes/no/true/false. 0 or -EINVAL. */
int keyed_get_bool(struct keyed_opts *o, const char *key, bool dflt, bool *out, struct errbuf *e);
/* *out = dflt if key is absent; else a number (0x hex, leading-0 octal, as QEMU) <= max. */
int keyed_get_u64(struct keyed_opts *o, const char *key, uint64_t dflt, uint64_t max, uint64_t *out,
		  struct errbuf *e);
/* -EINVAL naming the first key no keyed_get*() asked for; known (e.g. "iobase, iosize")
 * is added to the message when not NULL. */
int keyed_check_used(const struct keyed_opts *o, const char *known, struct errbuf *e);
/* Parses s and appends it to l; an id already in l is an error. *added (if not NULL)
 * points at the new entry until the next add. */
int keyed_list_add(struct keyed_list *l, const char *option, const char *s,
		   struct keyed_opts **added, struct errbuf *e);
struct keyed_opts *keyed_list_find(const struct keyed_list *l, const char *id);
void keyed_list_free(struct keyed_list *l);
/* on/yes/true -> true, off/no/false -> false; 0 or -EINVAL. */
int config_parse_bool(const char *s, bool *out);

enum boot_decompress { BOOT_DECOMPRESS_AUTO = 0, BOOT_DECOMPRESS_HOST, BOOT_DECOMPRESS_GUEST };

struct vm_config {
	const char *kernel_path; /* NULL: boot the built-in demo guest */
	const char *initrd_path; /* NULL: none */
	const char *cmdline;	 /* never NULL after parsing ("" if not given) */
	const char *name;	 /* never NULL after parsing ("kvmini" if not given) */
	uint64_t mem_size;	 /* bytes, a multiple of 2 MiB? no: of 4 KiB */
	unsigned ncpus;
	/* ttyS0.. in order (0x3f8/IRQ 4, 0x2f8/IRQ 3, 0x3e8/IRQ 4, 0x2e8/IRQ 3); a
	 * CHARDEV_NONE entry leaves that port out. */
	struct chardev_cfg serial[KVMINI_MAX_SERIALS];
	unsigned nserials;
	/* Keyed options as given, for the device code to read (VirtIO comes next). */
	struct keyed_list devices, drives, netdevs, chardevs, objects, mons;
	/* -monitor: CHARDEV_NONE (the default, and -monitor none) or CHARDEV_STDIO (-monitor
	 * stdio: the monitor's prompt on stdin/stdout). */
	struct chardev_cfg monitor;
	/* The QMP control socket (--qmp unix:PATH,server[,wait=off], -mon mode=control):
	 * CHARDEV_NONE, or CHARDEV_UNIX with server set. */
	struct chardev_cfg qmp;
	bool nodefaults;   /* -nodefaults: no serial port unless -serial/--console names one */
	bool start_paused; /* -S: vCPUs wait for `cont` from the monitor */
	const char *restore_path; /* --restore / -incoming file:PATH, NULL for a fresh boot */
	/* -incoming defer: the VM waits, paused (status inmigrate), for QMP migrate-incoming. */
	bool incoming_defer;
	/* --snapshot-dir: where HMP savevm keeps named snapshots (NULL: the first disk's
	 * directory, if there is a disk). */
	const char *snapshot_dir;
	/* The isa-debug-exit ports: kvmini's default is 0xf4..0xf7; -device isa-debug-exit moves
	 * them (iobase=, default 0x501; iosize=, default 2, as QEMU). */
	uint16_t debug_exit_port;
	uint32_t debug_exit_size; /* 1 to 0x10000 */
	bool debug_exit_given;
	/* The VM generation ID (devices/vmgenid.h) every VM has: -device vmgenid,guid=UUID
	 * fixes the first generation's GUID (guid=auto or none: random). */
	bool vmgenid_given, vmgenid_guid_set;
	uint8_t vmgenid_guid[16];
	enum boot_decompress boot_decompress;
	bool hugepages;
	bool stats; /* --stats: exits and completions at exit, on stderr */
	/* --profile FILE: every vCPU's guest RIP, 50 times a second, a line each */
	const char *profile_path;
	bool mem_prealloc;
	bool ksm;
	bool no_reboot; /* a guest reset ends kvmini (status 0) instead of rebooting the VM */
	int cpu_affinity[KVMINI_MAX_VCPUS]; /* host CPU per vCPU, -1 = not pinned */
	int verbosity;			    /* 0 default, +1 per -v, -1 for -q */
	char *owned_name;		    /* what name points at after -name/--name */
	/* --virtio-transport mmio: virtio devices whose driver name does not say (--rng,
	 * virtio-rng, --console virtio) go on virtio-mmio rather than PCI. */
	bool virtio_mmio;
	/* -device virtio-serial-pci (-pci), virtio-serial-device (-device) or virtio-serial
	 * (""): the transport of the virtconsole after it; NULL when none was given. */
	const char *virtio_serial_bus;
	bool virtio_console_given; /* one virtio-console port at most */
};

void config_init(struct vm_config *cfg);
/* Frees what parsing allocated (keyed options); cfg can be parsed again afterwards. */
void config_free(struct vm_config *cfg);
/* Parses the options of `kvmini run` (argv[0] is the first option, not the program name).
 * Whatever cfg held is overwritten (config_free() it first if it held a parse). Returns 0
 * (call config_free() when done), 1 if --help was asked for (nothing else parsed), 2 if
 * -version was (print the version and exit, as QEMU does whatever else is given), or
 * -EINVAL with e filled with one line that names the offending option or value; on
 * anything but 0 nothing is left to free. */
int config_parse_run(struct vm_config *cfg, int argc, char **argv, struct errbuf *e);
/* Parses a size: "512M", "2G", "1024" (MiB when no suffix, as QEMU's -m), "4096K", "1T",
 * also "512MiB"/"2GB". Returns 0 or -EINVAL/-ERANGE. */
int config_parse_size(const char *s, uint64_t *out);
/* The backend of -chardev id=ID for a device other than a serial port (virtconsole):
 * -EINVAL with e filled if there is none, it is a serial port's, or it asks for mux. */
int config_chardev_lookup(const struct vm_config *cfg, const char *id, struct chardev_cfg *out,
			  struct errbuf *e);
/* Disks (config_blk.c). --disk PATH[,ro][,id=NAME][,cache=none|writeback][,queues=N]
 * adds an if=none -drive and a -device virtio-blk-pci naming it; config_finish_disks(),
 * once every option is read, checks each -drive (raw only, if=virtio|none) and each
 * -device virtio-blk*, and turns -drive if=virtio into the same pair. */
int config_add_disk(struct vm_config *cfg, const char *spec, struct errbuf *e);
bool config_is_blk_driver(const char *driver);
int config_finish_disks(struct vm_config *cfg, struct errbuf *e);
/* The `kvmini run --help` text. */
const char *config_usage(void);

#endif
