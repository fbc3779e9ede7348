/* One vCPU: its fd, its shared kvm_run page and its thread. The run loop knows exit reasons,
 * not devices: I/O and MMIO exits go to the buses, stops go to struct vm_power. */
#ifndef KVMINI_VMM_VCPU_H
#define KVMINI_VMM_VCPU_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "util/err.h"
#include "core/guest_mem.h"
#include "core/bus.h"
#include "core/power.h"

/* What a vCPU thread may touch: shared, owned by the VM, outliving the threads. */
struct vcpu_env {
	struct bus *pio;
	struct bus *mmio;
	struct vm_power *power;
	const struct guest_mem *mem;
};

struct vcpu_stats {
	atomic_ulong exits_io, exits_mmio, exits_other, recovered;
};

struct vcpu {
	unsigned id;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	const struct vcpu_env *env;
	int host_cpu; /* -1: not pinned */
	pthread_t thread;
	bool started;
	struct vcpu_stats stats;
	atomic_int tid; /* the thread's host tid once it runs (QMP's thread-id), else 0 */
};

int vcpu_create(struct vcpu *v, int vm_fd, unsigned id, size_t run_size, const struct vcpu_env *env,
		int host_cpu, struct errbuf *e);
/* Starts the thread ("vcpu N"), which runs until the VM stops. */
int vcpu_start(struct vcpu *v, struct errbuf *e);
/* Makes a running KVM_RUN return so the thread sees the stop request. */
void vcpu_kick(struct vcpu *v);
void vcpu_join(struct vcpu *v);
void vcpu_destroy(struct vcpu *v);
/* Installs the (empty) handler of the kick signal; once per process, before any vCPU. */
int vcpu_signals_init(void);

#endif
