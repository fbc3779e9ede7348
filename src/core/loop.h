/* The I/O event loop: one epoll set, run by one thread, for everything that is not a vCPU
 * exit (console input, signals, timers; later ioeventfds, the control socket, backends).
 * Callbacks run on the loop thread. Adding and removing fds is safe from any thread, and
 * removing one never frees data a running callback still uses (see loop_del_fd). */
#ifndef KVMINI_CORE_LOOP_H
#define KVMINI_CORE_LOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

typedef void (*loop_fd_fn)(void *opaque, int fd, uint32_t events);

struct loop_source;

struct event_loop {
	int epoll_fd;
	int stop_fd; /* eventfd that makes loop_run() return */
	pthread_mutex_t lock;
	struct loop_source *sources; /* singly linked; few entries */
	uint64_t next_id;
	bool stop;
	/* The callback running now (its source id, 0 for none) and the thread running
	 * loop_run(): loop_del_fd() from another thread waits on idle until the callback
	 * of the source it removes has returned, so the caller may free its data. */
	uint64_t running_id;
	pthread_t thread;
	bool thread_known;
	pthread_cond_t idle;
};

int loop_init(struct event_loop *l);
void loop_destroy(struct event_loop *l);
/* Watches fd for events (EPOLLIN, ...). Returns 0 or -errno. */
int loop_add_fd(struct event_loop *l, int fd, uint32_t events, loop_fd_fn fn, void *opaque);
/* Stops watching fd. Once it returns, the fd's callback is not running and will not run
 * again, so its data may be freed: called from another thread it waits for a running
 * callback of this fd to return; called from a callback (the loop thread) it does not
 * wait. So a caller off the loop thread must not hold a lock that the callback takes.
 * Returns 0 or -ENOENT. */
int loop_del_fd(struct event_loop *l, int fd);
/* A periodic (interval_ns > 0) or one-shot timer; returns its timerfd (>= 0) or -errno.
 * Remove it with loop_del_fd() and close() it. */
int loop_add_timer(struct event_loop *l, uint64_t first_ns, uint64_t interval_ns, loop_fd_fn fn,
		   void *opaque);
/* Runs callbacks until loop_stop(). Returns 0 or -errno. */
int loop_run(struct event_loop *l);
/* Thread-safe and async-signal-safe. */
void loop_stop(struct event_loop *l);

#endif
