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
	bool sample_rip; /* --stats: sample where the guest runs (see vcpu_print_stats) */
	/* --profile: each sample also goes to this fd (O_APPEND) as "MS VCPU RIP\n", MS the
	 * milliseconds since profile_t0_ns (CLOCK_MONOTONIC); -1 when off. */
	int profile_fd;
	uint64_t profile_t0_ns;
};

#define VCPU_EXIT_REASONS     64  /* KVM exit reasons counted one by one; the rest in the last */
#define VCPU_COMPLETION_KINDS 256 /* what the arch layer completes, by kind */
#define VCPU_SAMPLE_SLOTS     1024

struct vcpu_stats {
	atomic_ulong exits_io, exits_mmio, exits_other, recovered;
	atomic_ulong exits[VCPU_EXIT_REASONS];	       /* every exit, by KVM exit reason */
	atomic_ulong completed[VCPU_COMPLETION_KINDS]; /* instructions finished in user space */
	atomic_ulong not_completed;		       /* emulation failures left unrecovered */
	/* guest RIPs seen by a 50 Hz sampling timer (--stats only; NULL otherwise) */
	struct vcpu_rip_samples *rips;
};

/* An open-addressed table owned by the vCPU thread, read after it is joined. 16 KiB a
 * vCPU: allocated only when sampling, so an idle VM does not carry it. */
struct vcpu_rip_samples {
	uint64_t rip[VCPU_SAMPLE_SLOTS];
	unsigned long count[VCPU_SAMPLE_SLOTS];
	unsigned long samples, dropped;
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
/* Prints (stderr) the exits by reason and the completed instructions by kind, summed over
 * the n vCPUs: what --stats shows at exit. */
void vcpu_print_stats(const struct vcpu *vcpus, unsigned n);
/* Installs the (empty) handler of the kick signal; once per process, before any vCPU. */
int vcpu_signals_init(void);

#endif
