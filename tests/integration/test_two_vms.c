/* All VM state lives in struct vm: two VMs run at the same time in one process, each with its
 * own memory, vCPUs, devices and console, and neither sees the other. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "util/file.h"
#include "vmm/vm.h"

struct two_vm_job {
	struct vm_config cfg;
	char console[64];
	const uint8_t *kernel;
	size_t kernel_size;
	int status;
	int ret;
	char err[512];
};

static void *two_vm_thread(void *arg)
{
	struct two_vm_job *j = arg;
	struct timespec start;
	struct errbuf e = {{0}};
	clock_gettime(CLOCK_MONOTONIC, &start);
	struct vm *vm = calloc(1, sizeof(*vm));
	j->ret = vm_create(vm, &j->cfg, &start, j->kernel, j->kernel_size, "smp guest", -1, 0, &e);
	if (j->ret == 0)
		j->ret = vm_run(vm, &j->status, &e);
	vm_destroy(vm);
	free(vm);
	snprintf(j->err, sizeof(j->err), "%s", e.msg);
	return NULL;
}

Test(two_vms, run_side_by_side_in_one_process, .timeout = 60)
{
	uint8_t *kernel;
	size_t size;
	struct errbuf e;
	cr_assert_eq(read_whole_file(harness_guest("smp"), "guest", &kernel, &size, &e), 0, "%s",
		     e.msg);
	struct two_vm_job jobs[2];
	pthread_t threads[2];
	for (int i = 0; i < 2; i++) {
		struct two_vm_job *j = &jobs[i];
		memset(j, 0, sizeof(*j));
		config_init(&j->cfg);
		snprintf(j->console, sizeof(j->console), "/tmp/kvmini-two-vms-%d-%d", getpid(), i);
		j->cfg.serial[0].backend = CHARDEV_FILE;
		j->cfg.serial[0].path = j->console;
		j->cfg.ncpus = i == 0 ? 2 : 3; /* different shapes, so a mix-up shows */
		j->cfg.mem_size = (64ull + 64 * i) << 20;
		j->kernel = kernel;
		j->kernel_size = size;
		cr_assert_eq(pthread_create(&threads[i], NULL, two_vm_thread, j), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(threads[i], NULL);
	for (int i = 0; i < 2; i++) {
		struct two_vm_job *j = &jobs[i];
		cr_assert_eq(j->ret, 0, "VM %d: %s", i, j->err);
		cr_assert_eq(j->status, 0, "VM %d exit status", i);
		FILE *f = fopen(j->console, "r");
		cr_assert_not_null(f);
		char buf[4096] = {0};
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		unlink(j->console);
		cr_assert_gt(n, 0);
		char want[64];
		snprintf(want, sizeof(want), "smp: %u cpus OK", j->cfg.ncpus);
		cr_assert(strstr(buf, want), "VM %d console:\n%s", i, buf);
	}
	free(kernel);
}
