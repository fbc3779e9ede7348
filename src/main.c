/* kvmini: command line -> struct vm_config -> VM. Nothing else lives here; this is the only
 * place that prints an error for the user and calls exit. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "ctl.h"
#include "util/err.h"
#include "util/file.h"
#include "util/log.h"
#include "virtio/net.h"
#include "vmm/kvm.h"
#include "vmm/snapshot.h"
#include "vmm/vm.h"

#include "version.h"
#define EXIT_USAGE 2

extern const uint8_t demo_guest_elf[], demo_guest_elf_end[];

static const char main_usage[] =
    "usage: kvmini <command> [options]\n"
    "\n"
    "commands:\n"
    "  run [options]   boot a VM (the built-in demo guest when no --kernel is given)\n"
    "  info            show the host's KVM: API version, capabilities, kind of host\n"
    "  ctl SOCKET [COMMAND [JSON]]  send QMP commands to a running VM (--qmp)\n"
    "  snapshot SOCKET PATH  write a snapshot of the VM at SOCKET (--qmp) to PATH; restore\n"
    "                  it with `kvmini run --restore PATH`\n"
    "  help            this text; `kvmini run --help` lists the VM options\n"
    "  version         print the version\n"
    "\n"
    "QEMU-style invocations (kvmini -kernel bzImage -m 1024 ...) are the same as `kvmini run`.\n";

static void apply_verbosity(int verbosity)
{
	enum log_level level = LOG_WARN;
	if (verbosity < 0)
		level = LOG_ERROR;
	else if (verbosity == 1)
		level = LOG_INFO;
	else if (verbosity > 1)
		level = LOG_DEBUG;
	log_set_level(level);
}

static int cmd_run(int argc, char **argv, const struct timespec *start)
{
	struct vm_config cfg;
	struct errbuf e = {{0}};
	config_init(&cfg);
	int ret = config_parse_run(&cfg, argc, argv, &e);
	if (ret == 1) {
		fputs(config_usage(), stdout);
		return 0;
	}
	if (ret == 2) {
		printf("kvmini %s\n", KVMINI_VERSION);
		return 0;
	}
	if (ret < 0) {
		log_error("%s (see 'kvmini run --help')", e.msg);
		return EXIT_USAGE;
	}
	apply_verbosity(cfg.verbosity);

	/* The kernel stays mapped and the initrd open until the VM is gone: a guest reset
	 * loads both again. */
	struct file_map kernel = {NULL, 0};
	int initrd_fd = -1;
	uint64_t initrd_size = 0;
	const char *kernel_name = cfg.kernel_path;
	struct vm *vm = NULL;
	int status = 1;
	if (cfg.kernel_path) {
		if (file_map_input(cfg.kernel_path, "kernel", &kernel, &e) < 0)
			goto fail;
	} else {
		kernel_name = "built-in demo guest";
	}
	if (cfg.initrd_path &&
	    file_open_input(cfg.initrd_path, "initrd", &initrd_fd, &initrd_size, &e) < 0)
		goto fail;

	vm = calloc(1, sizeof(*vm));
	if (!vm) {
		errf(&e, -ENOMEM, "out of memory");
		goto fail;
	}
	const uint8_t *image = kernel.data ? kernel.data : demo_guest_elf;
	size_t image_size =
	    kernel.data ? kernel.size : (size_t)(demo_guest_elf_end - demo_guest_elf);
	ret =
	    vm_create(vm, &cfg, start, image, image_size, kernel_name, initrd_fd, initrd_size, &e);
	if (ret == 0 && cfg.restore_path)
		ret = vm_snapshot_restore(vm, cfg.restore_path, &e);
	if (ret == 0) {
		file_map_release(&kernel);
		ret = vm_run(vm, &status, &e);
	}
	vm_destroy(vm);
	free(vm);
	vm = NULL;
	if (ret < 0)
		goto fail;
	file_unmap(&kernel);
	if (initrd_fd >= 0)
		close(initrd_fd);
	config_free(&cfg);
	return status;
fail:
	file_unmap(&kernel);
	if (initrd_fd >= 0)
		close(initrd_fd);
	config_free(&cfg);
	log_error("%s", e.msg);
	return 1;
}

int main(int argc, char **argv)
{
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	/* A closed stdout pipe should end the write, not the VM. */
	signal(SIGPIPE, SIG_IGN);

	if (argc < 2) {
		fputs(main_usage, stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "run") == 0)
		return cmd_run(argc - 2, argv + 2, &start);
	if (strcmp(cmd, "ctl") == 0)
		return ctl_main(argc - 2, argv + 2);
	if (strcmp(cmd, "snapshot") == 0)
		return snapshot_main(argc - 2, argv + 2);
	if (strcmp(cmd, "info") == 0) {
		if (argc > 2) {
			log_error("'kvmini info' takes no arguments (got '%s')", argv[2]);
			return EXIT_USAGE;
		}
		int r = kvm_host_print_info(stdout);
		printf("virtio-net:      %s\n", virtio_net_datapath());
		return r < 0 ? 1 : 0;
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		fputs(main_usage, stdout);
		return 0;
	}
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("kvmini %s\n", KVMINI_VERSION);
		return 0;
	}
	if (cmd[0] == '-')
		return cmd_run(argc - 1, argv + 1, &start);
	log_error("unknown command '%s' (try 'kvmini help')", cmd);
	return EXIT_USAGE;
}
