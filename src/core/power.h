/* The VM's run state and how devices ask it to stop. It sits below the devices so that a
 * device (debug-exit port, i8042 reset, a vCPU's triple fault) can end the VM without
 * knowing struct vm: it records why and wakes whoever waits on `wake_fd`. */
#ifndef KVMINI_CORE_POWER_H
#define KVMINI_CORE_POWER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

enum stop_reason {
	STOP_NONE = 0,
	STOP_POWEROFF,	 /* guest powered off: exit 0 */
	STOP_DEBUG_EXIT, /* guest wrote the debug-exit port: exit (v << 1) | 1 */
	STOP_RESET,	 /* guest asked for a reset (i8042 0xfe, ACPI/KVM reset event): exit 0 */
	STOP_ERROR,	 /* kvmini or the guest failed (a triple fault too): exit 1 */
	STOP_SIGNAL,	 /* SIGINT/SIGTERM or Ctrl-A x */
};

struct vm_power {
	pthread_mutex_t lock;
	enum stop_reason reason;
	atomic_bool stopping; /* reason != STOP_NONE, readable without the lock on every exit */
	int exit_status;
	int wake_fd; /* eventfd, written once when a stop is first requested; -1 for none */
};

int power_init(struct vm_power *p);
void power_destroy(struct vm_power *p);
/* First request wins; later ones are ignored (a debug-exit code is not overwritten by the
 * shutdown that follows it). */
void power_request_stop(struct vm_power *p, enum stop_reason reason, int exit_status);
bool power_stop_requested(struct vm_power *p);
enum stop_reason power_stop_reason(struct vm_power *p, int *exit_status);
const char *stop_reason_name(enum stop_reason r);

#endif
