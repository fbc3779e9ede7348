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
	atomic_init(&p->park_requested, false);
	p->pauses = p->running = p->parked = p->resets = 0;
	p->user_paused = p->reset_pending = false;
	p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->wake_fd < 0)
		return -errno;
	int ret = pthread_mutex_init(&p->lock, NULL);
	if (ret)
		return -ret;
	ret = pthread_cond_init(&p->cond, NULL);
	if (ret)
		pthread_mutex_destroy(&p->lock);
	return -ret;
}

void power_destroy(struct vm_power *p)
{
	if (p->wake_fd >= 0)
		close(p->wake_fd);
	p->wake_fd = -1;
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
}

static void power_wake(struct vm_power *p)
{
	if (p->wake_fd >= 0) {
		uint64_t one = 1;
		ssize_t n = write(p->wake_fd, &one, sizeof(one));
		(void)n;
	}
}

/* Called with p->lock held. */
static void power_update_park(struct vm_power *p)
{
	atomic_store_explicit(&p->park_requested, p->pauses > 0, memory_order_release);
	pthread_cond_broadcast(&p->cond);
}

void power_request_stop(struct vm_power *p, enum stop_reason reason, int exit_status)
{
	pthread_mutex_lock(&p->lock);
	bool first = p->reason == STOP_NONE;
	if (first) {
		p->reason = reason;
		p->exit_status = exit_status;
		atomic_store_explicit(&p->stopping, true, memory_order_release);
		/* Parked vCPUs wake up to see the stop. */
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	if (first)
		power_wake(p);
}

void power_request_reset(struct vm_power *p)
{
	pthread_mutex_lock(&p->lock);
	bool first = !p->reset_pending && p->reason == STOP_NONE;
	if (first) {
		p->reset_pending = true;
		p->pauses++;
		power_update_park(p);
	}
	pthread_mutex_unlock(&p->lock);
	if (first)
		power_wake(p);
}

bool power_take_reset(struct vm_power *p)
{
	pthread_mutex_lock(&p->lock);
	bool pending = p->reset_pending;
	if (pending) {
		p->reset_pending = false;
		p->resets++;
	}
	pthread_mutex_unlock(&p->lock);
	return pending;
}

void power_pause(struct vm_power *p)
{
	pthread_mutex_lock(&p->lock);
	p->pauses++;
	power_update_park(p);
	pthread_mutex_unlock(&p->lock);
}

void power_resume(struct vm_power *p)
{
	pthread_mutex_lock(&p->lock);
	if (p->pauses > 0)
		p->pauses--;
	power_update_park(p);
	pthread_mutex_unlock(&p->lock);
}

void power_wait_parked(struct vm_power *p)
{
	pthread_mutex_lock(&p->lock);
	while (p->parked < p->running && p->reason == STOP_NONE)
		pthread_cond_wait(&p->cond, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

bool power_user_pause(struct vm_power *p)
{
	pthread_mutex_lock(&p->lock);
	bool now = !p->user_paused;
	if (now) {
		p->user_paused = true;
		p->pauses++;
		power_update_park(p);
	}
	pthread_mutex_unlock(&p->lock);
	return now;
}

bool power_user_resume(struct vm_power *p)
{
	pthread_mutex_lock(&p->lock);
	bool now = p->user_paused;
	if (now) {
		p->user_paused = false;
		p->pauses--;
		power_update_park(p);
	}
	pthread_mutex_unlock(&p->lock);
	return now;
}

bool power_is_user_paused(struct vm_power *p)
{
	pthread_mutex_lock(&p->lock);
	bool paused = p->user_paused;
	pthread_mutex_unlock(&p->lock);
	return paused;
}

void power_park(struct vm_power *p)
{
	pthread_mutex_lock(&p->lock);
	p->parked++;
	pthread_cond_broadcast(&p->cond);
	while (p->pauses > 0 && p->reason == STOP_NONE)
		pthread_cond_wait(&p->cond, &p->lock);
	p->parked--;
	pthread_mutex_unlock(&p->lock);
}

void power_vcpu_started(struct vm_power *p)
{
	pthread_mutex_lock(&p->lock);
	p->running++;
	pthread_mutex_unlock(&p->lock);
}

void power_vcpu_ended(struct vm_power *p)
{
	pthread_mutex_lock(&p->lock);
	p->running--;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
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
	case STOP_QUIT:
		return "quit";
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
	case VM_STATUS_PRELAUNCH:
		return "prelaunch";
	case VM_STATUS_INMIGRATE:
		return "inmigrate";
	}
	return "unknown";
}
