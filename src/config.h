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
	enum boot_decompress boot_decompress;
	bool hugepages;
	bool mem_prealloc;
	bool ksm;
	bool no_reboot; /* accepted for QEMU compatibility; kvmini always exits on reset */
	int cpu_affinity[KVMINI_MAX_VCPUS]; /* host CPU per vCPU, -1 = not pinned */
	int verbosity;			    /* 0 default, +1 per -v, -1 for -q */
};

void config_init(struct vm_config *cfg);
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
