/* The VM's run state and how devices ask it to stop or reset. It sits below the devices so
 * that a device (debug-exit port, i8042 reset, a vCPU's triple fault) can end or reset the
 * VM without knowing struct vm: it records why and wakes whoever waits on `wake_fd`.
 *
 * It is also the barrier the vCPUs park at. A pause (monitor `stop`, -S, a reset, later a
 * snapshot) raises the park request; every vCPU thread checks it before each KVM_RUN and
 * waits in power_park() until it is lowered. power_wait_parked() returns once every vCPU
 * thread still running is parked, which is when the VM's state may be read or replaced. */
#ifndef KVMINI_CORE_POWER_H
#define KVMINI_CORE_POWER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

enum stop_reason {
	STOP_NONE = 0,
	STOP_POWEROFF,	 /* guest powered off: exit 0 */
	STOP_DEBUG_EXIT, /* guest wrote the debug-exit port: exit (v << 1) | 1 */
	STOP_RESET,	 /* guest reset with -no-reboot: exit 0 */
	STOP_ERROR,	 /* kvmini or the guest failed (a triple fault too): exit 1 */
	STOP_SIGNAL,	 /* SIGINT/SIGTERM or Ctrl-A x */
	STOP_QUIT,	 /* the monitor's quit: exit 0 */
};

struct vm_power {
	pthread_mutex_t lock;
	enum stop_reason reason;
	atomic_bool stopping; /* reason != STOP_NONE, readable without the lock on every exit */
	int exit_status;
	int wake_fd; /* eventfd, written when a stop or reset is first requested; -1 for none */

	/* Parking (under lock; park_requested mirrors pauses > 0 for the lock-free check). */
	pthread_cond_t cond;
	atomic_bool park_requested;
	unsigned pauses;    /* holders of a pause: the user's stop, a pending reset, ... */
	bool user_paused;   /* the monitor's stop (or -S) holds one pause */
	bool reset_pending; /* a guest reset waits for the loop thread; holds one pause */
	unsigned running;   /* vCPU threads started and not yet ended */
	unsigned parked;    /* of those, how many wait in power_park() */
	unsigned resets;    /* guest resets done so far (the VM's boot count - 1) */
};

int power_init(struct vm_power *p);
void power_destroy(struct vm_power *p);
/* First request wins; later ones are ignored (a debug-exit code is not overwritten by the
 * shutdown that follows it). */
void power_request_stop(struct vm_power *p, enum stop_reason reason, int exit_status);
bool power_stop_requested(struct vm_power *p);

/* A guest reset (i8042, port 0xcf9, ACPI reset register, KVM's reset event): the vCPUs park
 * at once and the loop thread reboots the VM (or stops it with -no-reboot). */
void power_request_reset(struct vm_power *p);
/* Takes the pending reset, if any (the loop thread then performs it and drops the pause
 * the request held with power_resume()). */
bool power_take_reset(struct vm_power *p);

/* Raises the park request; the caller then kicks the vCPUs out of KVM_RUN and waits with
 * power_wait_parked(). Each power_pause() is undone by one power_resume(). */
void power_pause(struct vm_power *p);
void power_resume(struct vm_power *p);
/* Waits until every running vCPU thread is parked (or the VM is stopping). */
void power_wait_parked(struct vm_power *p);
/* The monitor's stop/cont: idempotent, one pause held while user-paused. */
bool power_user_pause(struct vm_power *p);  /* true if this call paused */
bool power_user_resume(struct vm_power *p); /* true if this call resumed */
bool power_is_user_paused(struct vm_power *p);

/* For vCPU threads: cheap check before each KVM_RUN, and the barrier itself, which returns
 * when the pause is over or the VM stops. Threads bracket their life with started/ended. */
static inline bool power_park_requested(struct vm_power *p)
{
	return atomic_load_explicit(&p->park_requested, memory_order_acquire);
}
void power_park(struct vm_power *p);
void power_vcpu_started(struct vm_power *p);
void power_vcpu_ended(struct vm_power *p);
enum stop_reason power_stop_reason(struct vm_power *p, int *exit_status);
const char *stop_reason_name(enum stop_reason r);

#endif
