#include "core/power.h"

#include "core/control.h"

#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

int power_init(struct vm_power *p)
{
	p->reason = STOP_NONE;
	p->exit_status = 0;
	atomic_init(&p->stopping, false);
	p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->wake_fd < 0)
		return -errno;
	return -pthread_mutex_init(&p->lock, NULL);
}

void power_destroy(struct vm_power *p)
{
	if (p->wake_fd >= 0)
		close(p->wake_fd);
	p->wake_fd = -1;
	pthread_mutex_destroy(&p->lock);
}

void power_request_stop(struct vm_power *p, enum stop_reason reason, int exit_status)
{
	pthread_mutex_lock(&p->lock);
	bool first = p->reason == STOP_NONE;
	if (first) {
		p->reason = reason;
		p->exit_status = exit_status;
		atomic_store_explicit(&p->stopping, true, memory_order_release);
	}
	pthread_mutex_unlock(&p->lock);
	if (first && p->wake_fd >= 0) {
		uint64_t one = 1;
		ssize_t n = write(p->wake_fd, &one, sizeof(one));
		(void)n;
	}
}

bool power_stop_requested(struct vm_power *p)
{
	return atomic_load_explicit(&p->stopping, memory_order_acquire);
}

enum stop_reason power_stop_reason(struct vm_power *p, int *exit_status)
{
	pthread_mutex_lock(&p->lock);
	enum stop_reason r = p->reason;
	if (exit_status)
		*exit_status = p->exit_status;
	pthread_mutex_unlock(&p->lock);
	return r;
}

const char *stop_reason_name(enum stop_reason r)
{
	switch (r) {
	case STOP_NONE:
		return "running";
	case STOP_POWEROFF:
		return "power-off";
	case STOP_DEBUG_EXIT:
		return "debug-exit";
	case STOP_RESET:
		return "reset";
	case STOP_ERROR:
		return "error";
	case STOP_SIGNAL:
		return "signal";
	}
	return "unknown";
}

const char *vm_run_status_name(enum vm_run_status s)
{
	switch (s) {
	case VM_STATUS_RUNNING:
		return "running";
	case VM_STATUS_PAUSED:
		return "paused";
	case VM_STATUS_SHUTDOWN:
		return "shutdown";
	}
	return "unknown";
}
