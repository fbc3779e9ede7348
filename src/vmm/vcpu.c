#include "vmm/vcpu.h"

#include <errno.h>
#include <signal.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/emulate.h"
#include "util/log.h"

#define VCPU_KICK_SIGNAL SIGUSR1

static void kick_handler(int sig)
{
	(void)sig;
}

int vcpu_signals_init(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
		return -errno;
	return 0;
}

int vcpu_create(struct vcpu *v, int vm_fd, unsigned id, size_t run_size, const struct vcpu_env *env,
		int host_cpu, struct errbuf *e)
{
	memset(v, 0, sizeof(*v));
	v->id = id;
	v->env = env;
	v->host_cpu = host_cpu;
	v->fd = ioctl(vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (v->fd < 0)
		return errf(e, -errno, "KVM_CREATE_VCPU %u failed: %s", id, strerror(errno));
	v->run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		int err = errno;
		close(v->fd);
		v->fd = -1;
		v->run = NULL;
		return errf(e, -err, "cannot map vCPU %u's kvm_run: %s", id, strerror(err));
	}
	v->run_size = run_size;
	return 0;
}

static void vcpu_fail(struct vcpu *v, const char *what)
{
	char regs[2048];
	x86_describe_vcpu(v->fd, v->env->mem, v->run, regs, sizeof(regs));
	log_error("vCPU %u: %s\n%s", v->id, what, regs);
	power_request_stop(v->env->power, STOP_ERROR, 1);
}

static void handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint32_t size = run->io.size, count = run->io.count;
	uint64_t total;
	/* KVM fills these, but the data offset and length are still checked against the
	 * page before we touch it. */
	if (size == 0 || size > 4 || __builtin_mul_overflow((uint64_t)size, count, &total) ||
	    run->io.data_offset > v->run_size || total > v->run_size - run->io.data_offset) {
		vcpu_fail(v, "malformed port I/O exit");
		return;
	}
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
	for (uint32_t i = 0; i < count; i++) {
		if (!bus_dispatch(v->env->pio, run->io.port, data + i * size, size, is_write))
			log_debug("vCPU %u: unhandled port %s 0x%x (%u bytes)", v->id,
				  is_write ? "write" : "read", run->io.port, size);
	}
}

static void handle_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint32_t len = run->mmio.len;
	if (len == 0 || len > sizeof(run->mmio.data)) {
		vcpu_fail(v, "malformed MMIO exit");
		return;
	}
	if (!bus_dispatch(v->env->mmio, run->mmio.phys_addr, run->mmio.data, len,
			  run->mmio.is_write))
		log_debug("vCPU %u: unhandled MMIO %s at 0x%llx (%u bytes)", v->id,
			  run->mmio.is_write ? "write" : "read",
			  (unsigned long long)run->mmio.phys_addr, len);
}

static void handle_internal_error(struct vcpu *v)
{
	if (v->run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION) {
		unsigned n = 0;
		unsigned r = x86_recover_emulation_failure(v->fd, v->env->mem, v->run,
							   v->stats.completed, &n);
		if (r != X86_NOT_RECOVERED) {
			atomic_fetch_add(&v->stats.recovered, n);
			if (n > 1)
				log_debug("vCPU %u: completed %s and %u more in user space", v->id,
					  x86_recovery_name(r), n - 1);
			else
				log_debug("vCPU %u: completed %s in user space", v->id,
					  x86_recovery_name(r));
			return;
		}
		atomic_fetch_add(&v->stats.not_completed, 1);
		vcpu_fail(v,
			  "KVM could not emulate an instruction (this host emulates guest ring 0; "
			  "see `kvmini info`)");
		return;
	}
	char what[64];
	snprintf(what, sizeof(what), "KVM internal error, suberror %u", v->run->internal.suberror);
	vcpu_fail(v, what);
}

/* Returns false when the thread should stop. */
static bool handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	atomic_fetch_add(
	    &v->stats.exits[run->exit_reason < VCPU_EXIT_REASONS ? run->exit_reason
								 : VCPU_EXIT_REASONS - 1],
	    1);
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		atomic_fetch_add(&v->stats.exits_io, 1);
		handle_io(v);
		return true;
	case KVM_EXIT_MMIO:
		atomic_fetch_add(&v->stats.exits_mmio, 1);
		handle_mmio(v);
		return true;
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_SHUTDOWN:
		vcpu_fail(v, "triple fault (KVM_EXIT_SHUTDOWN): the guest reset itself through an "
			     "unhandled exception");
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		switch (run->system_event.type) {
		case KVM_SYSTEM_EVENT_SHUTDOWN:
			power_request_stop(v->env->power, STOP_POWEROFF, 0);
			break;
		case KVM_SYSTEM_EVENT_RESET:
			power_request_reset(v->env->power);
			return true; /* park; the loop thread reboots the VM */
		default:
			vcpu_fail(v, "guest crashed (KVM_SYSTEM_EVENT_CRASH)");
			break;
		}
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		atomic_fetch_add(&v->stats.exits_other, 1);
		handle_internal_error(v);
		return true;
	case KVM_EXIT_FAIL_ENTRY: {
		char what[96];
		snprintf(what, sizeof(what),
			 "KVM could not enter the guest (hardware reason 0x%llx)",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vcpu_fail(v, what);
		return false;
	}
	default: {
		char what[64];
		snprintf(what, sizeof(what), "unexpected KVM exit reason %u", run->exit_reason);
		vcpu_fail(v, what);
		return false;
	}
	}
}

_Static_assert(X86_COMPLETION_KINDS <= VCPU_COMPLETION_KINDS, "completion kinds");

static const char *exit_reason_name(unsigned r)
{
	switch (r) {
	case KVM_EXIT_IO:
		return "io";
	case KVM_EXIT_MMIO:
		return "mmio";
	case KVM_EXIT_HLT:
		return "hlt";
	case KVM_EXIT_SHUTDOWN:
		return "shutdown";
	case KVM_EXIT_INTR:
		return "intr";
	case KVM_EXIT_INTERNAL_ERROR:
		return "internal-error";
	case KVM_EXIT_SYSTEM_EVENT:
		return "system-event";
	case KVM_EXIT_FAIL_ENTRY:
		return "fail-entry";
	default:
		return NULL;
	}
}

void vcpu_print_stats(const struct vcpu *vcpus, unsigned n)
{
	char line[2048];
	size_t off = 0;
	unsigned long total = 0;
	line[0] = '\0';
	for (unsigned r = 0; r < VCPU_EXIT_REASONS; r++) {
		unsigned long c = 0;
		for (unsigned i = 0; i < n; i++)
			c += atomic_load(&vcpus[i].stats.exits[r]);
		if (!c)
			continue;
		total += c;
		const char *name = exit_reason_name(r);
		int w = name ? snprintf(line + off, sizeof(line) - off, ", %s %lu", name, c)
			     : snprintf(line + off, sizeof(line) - off, ", reason-%u%s %lu", r,
					r == VCPU_EXIT_REASONS - 1 ? "+" : "", c);
		if (w > 0 && (size_t)w < sizeof(line) - off)
			off += (size_t)w;
	}
	fprintf(stderr, "kvmini: stats: exits to user space %lu%s\n", total, line);

	/* Kinds that share a name (several table rows) are added up under it. */
	off = 0;
	line[0] = '\0';
	total = 0;
	bool done[VCPU_COMPLETION_KINDS] = {false};
	for (unsigned k = 1; k < X86_COMPLETION_KINDS; k++) {
		if (done[k])
			continue;
		const char *name = x86_recovery_name(k);
		unsigned long c = 0;
		for (unsigned j = k; j < X86_COMPLETION_KINDS; j++) {
			if (j != k && (done[j] || strcmp(x86_recovery_name(j), name) != 0))
				continue;
			done[j] = true;
			for (unsigned i = 0; i < n; i++)
				c += atomic_load(&vcpus[i].stats.completed[j]);
		}
		if (!c)
			continue;
		total += c;
		int w = snprintf(line + off, sizeof(line) - off, ", %s %lu", name, c);
		if (w > 0 && (size_t)w < sizeof(line) - off)
			off += (size_t)w;
	}
	unsigned long failed = 0;
	for (unsigned i = 0; i < n; i++)
		failed += atomic_load(&vcpus[i].stats.not_completed);
	fprintf(stderr, "kvmini: stats: completed in user space %lu%s; not completed %lu\n", total,
		line, failed);

	/* Where the guest ran: the most sampled RIPs of each vCPU. */
	for (unsigned i = 0; i < n; i++) {
		const struct vcpu_rip_samples *st = vcpus[i].stats.rips;
		if (!st || !st->samples)
			continue;
		off = 0;
		line[0] = '\0';
		bool used[VCPU_SAMPLE_SLOTS] = {false};
		for (unsigned top = 0; top < 12; top++) {
			unsigned best = VCPU_SAMPLE_SLOTS;
			for (unsigned k = 0; k < VCPU_SAMPLE_SLOTS; k++)
				if (!used[k] && st->count[k] &&
				    (best == VCPU_SAMPLE_SLOTS || st->count[k] > st->count[best]))
					best = k;
			if (best == VCPU_SAMPLE_SLOTS)
				break;
			used[best] = true;
			int w = snprintf(line + off, sizeof(line) - off, " %llx:%lu",
					 (unsigned long long)st->rip[best], st->count[best]);
			if (w > 0 && (size_t)w < sizeof(line) - off)
				off += (size_t)w;
		}
		fprintf(stderr, "kvmini: stats: vCPU %u rip samples %lu, top:%s\n", i, st->samples,
			line);
	}
}

static void record_sample(struct vcpu *v)
{
	struct kvm_regs r;
	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0)
		return;
	struct vcpu_rip_samples *st = v->stats.rips;
	if (!st)
		return;
	st->samples++;
	uint64_t rip = r.rip;
	if (v->env->profile_fd >= 0) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t ms = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec -
			       v->env->profile_t0_ns) /
			      1000000u;
		char line[64];
		int n = snprintf(line, sizeof(line), "%llu %u %llx\n", (unsigned long long)ms,
				 v->id, (unsigned long long)rip);
		/* One write per line on an O_APPEND fd: lines of two vCPUs never mix. */
		if (write(v->env->profile_fd, line, (size_t)n) != n)
			log_debug("--profile: write: %s", strerror(errno));
	}
	for (unsigned i = 0; i < 16; i++) {
		unsigned slot = (unsigned)((rip * 0x9e3779b97f4a7c15ull) >> 54) + i;
		slot %= VCPU_SAMPLE_SLOTS;
		if (st->count[slot] == 0 || st->rip[slot] == rip) {
			st->rip[slot] = rip;
			st->count[slot]++;
			return;
		}
	}
	st->dropped++;
}

/* A per-thread timer that interrupts KVM_RUN 50 times a second (the kick signal). */
static bool start_sampling(struct vcpu *v, timer_t *t)
{
	if (!v->stats.rips && !(v->stats.rips = calloc(1, sizeof(*v->stats.rips))))
		return false;
	struct sigevent sev;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_THREAD_ID;
	sev.sigev_signo = VCPU_KICK_SIGNAL;
	sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
	if (timer_create(CLOCK_MONOTONIC, &sev, t) < 0)
		return false;
	struct itimerspec its = {.it_interval = {0, 20000000}, .it_value = {0, 20000000}};
	if (timer_settime(*t, 0, &its, NULL) < 0) {
		timer_delete(*t);
		return false;
	}
	return true;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	char name[16];
	snprintf(name, sizeof(name), "vcpu %u", v->id);
	pthread_setname_np(pthread_self(), name);
	atomic_store(&v->tid, (int)gettid());

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	timer_t sampler;
	bool sampling = v->env->sample_rip && start_sampling(v, &sampler);
	struct vm_power *power = v->env->power;
	while (!power_stop_requested(power)) {
		if (power_park_requested(power)) {
			/* An I/O exit completes only on the next KVM_RUN (an `in` takes its
			 * value, RIP moves on): do that now, with immediate_exit set, so a
			 * snapshot taken while parked holds no half-done instruction. */
			uint32_t why = v->run->exit_reason;
			if (why == KVM_EXIT_IO || why == KVM_EXIT_MMIO) {
				__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
				if (ioctl(v->fd, KVM_RUN, 0) == 0 && !handle_exit(v))
					break;
				v->run->exit_reason = KVM_EXIT_INTR;
			}
			power_park(power);
			/* A kick that parked us (or came while parked) is spent. */
			__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
			continue;
		}
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			/* EINTR: kicked (or immediate_exit), or the sampling timer. EAGAIN: an AP
			 * leaving wait-for-SIPI on some hosts. Look at the stop flag, run again. */
			if (errno == EINTR && sampling && !power_stop_requested(v->env->power))
				record_sample(v);
			if (errno == EINTR || errno == EAGAIN)
				continue;
			char what[96];
			snprintf(what, sizeof(what), "KVM_RUN failed: %s", strerror(errno));
			vcpu_fail(v, what);
			break;
		}
		if (!handle_exit(v))
			break;
	}
	if (sampling)
		timer_delete(sampler);
	power_vcpu_ended(power);
	return NULL;
}

int vcpu_start(struct vcpu *v, struct errbuf *e)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	if (v->host_cpu >= 0) {
		cpu_set_t cpus;
		CPU_ZERO(&cpus);
		CPU_SET(v->host_cpu, &cpus);
		pthread_attr_setaffinity_np(&attr, sizeof(cpus), &cpus);
	}
	/* Counted before it runs, so a pause that starts now waits for this thread too. */
	power_vcpu_started(v->env->power);
	int ret = pthread_create(&v->thread, &attr, vcpu_thread, v);
	pthread_attr_destroy(&attr);
	if (ret != 0) {
		power_vcpu_ended(v->env->power);
		return errf(e, -ret, "cannot start vCPU %u%s: %s", v->id,
			    v->host_cpu >= 0 ? " on its host CPU" : "", strerror(ret));
	}
	v->started = true;
	return 0;
}

void vcpu_kick(struct vcpu *v)
{
	if (!v->started)
		return;
	/* immediate_exit covers the window between the thread's stop check and KVM_RUN; the
	 * signal covers a KVM_RUN already in progress. */
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

void vcpu_join(struct vcpu *v)
{
	if (v->started)
		pthread_join(v->thread, NULL);
	v->started = false;
}

void vcpu_destroy(struct vcpu *v)
{
	free(v->stats.rips);
	v->stats.rips = NULL;
	if (v->run)
		munmap(v->run, v->run_size);
	if (v->fd >= 0)
		close(v->fd);
	v->run = NULL;
	v->fd = -1;
}
