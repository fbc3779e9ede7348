/* snapshot_make: writes a snapshot for bench/snapshot, through kvmini's own API (in
 * process, until the control socket's `migrate` can be used from the shell).
 *
 *   snapshot_make GUEST.elf MIB PATH [kvmini run OPTIONS...]
 *       Runs GUEST (the checksum test guest) in a MIB MiB VM, with the upper half of its
 *       RAM touched (a non-zero word per page, written before it starts), lets it run
 *       300 ms, then snapshots it (vm_snapshot_save, left paused) and stops it.
 *       Prints: save_ms=<float> (the pause, every state and the RAM written; no fsync)
 *       OPTIONS (parsed as `kvmini run` does) add devices, e.g. --disk FILE. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/file.h"
#include "vmm/snapshot.h"
#include "vmm/vm.h"

struct runner {
	struct vm vm;
	int status;
	struct errbuf e;
};

static void *run(void *arg)
{
	struct runner *r = arg;
	vm_run(&r->vm, &r->status, &r->e);
	return NULL;
}

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: snapshot_make GUEST.elf MIB PATH [kvmini run OPTIONS]\n");
		return 2;
	}
	static struct runner r;
	struct vm_config cfg;
	struct errbuf pe;
	config_init(&cfg);
	if (config_parse_run(&cfg, argc - 4, argv + 4, &pe) != 0) {
		fprintf(stderr, "snapshot_make: %s\n", pe.msg);
		return 2;
	}
	cfg.serial[0].backend = CHARDEV_NULL;
	cfg.ncpus = 1;
	cfg.mem_size = strtoull(argv[2], NULL, 10) << 20;
	uint8_t *kernel;
	size_t size;
	struct errbuf e;
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	if (read_whole_file(argv[1], "guest", &kernel, &size, &e) < 0 ||
	    vm_create(&r.vm, &cfg, &start, kernel, size, argv[1], -1, 0, &e) < 0) {
		fprintf(stderr, "snapshot_make: %s\n", e.msg);
		return 1;
	}
	for (uint64_t off = r.vm.ram_size / 2; off < r.vm.ram_size; off += 4096)
		memset(r.vm.ram + off, 0x5a, 8);
	pthread_t t;
	pthread_create(&t, NULL, run, &r);
	usleep(300000);
	double t0 = now_ms();
	int ret = vm_snapshot_save(&r.vm, argv[3], SNAPSHOT_LEAVE_PAUSED, &e);
	double ms = now_ms() - t0;
	power_request_stop(&r.vm.power, STOP_QUIT, 0);
	pthread_join(t, NULL);
	vm_destroy(&r.vm);
	if (ret < 0) {
		fprintf(stderr, "snapshot_make: %s\n", e.msg);
		return 1;
	}
	printf("save_ms=%.1f\n", ms);
	return 0;
}
