#include "core/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

struct loop_source {
	uint64_t id; /* what epoll carries: never reused, unlike the struct's address */
	int fd;
	loop_fd_fn fn;
	void *opaque;
	struct loop_source *next;
};

int loop_init(struct event_loop *l)
{
	memset(l, 0, sizeof(*l));
	l->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epoll_fd < 0)
		return -errno;
	l->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->stop_fd < 0) {
		int err = errno;
		close(l->epoll_fd);
		return -err;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0}; /* id 0: the stop fd */
	if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, l->stop_fd, &ev) < 0) {
		int err = errno;
		close(l->stop_fd);
		close(l->epoll_fd);
		return -err;
	}
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->idle, NULL);
	return 0;
}

void loop_destroy(struct event_loop *l)
{
	struct loop_source *s = l->sources;
	while (s) {
		struct loop_source *next = s->next;
		free(s);
		s = next;
	}
	l->sources = NULL;
	close(l->stop_fd);
	close(l->epoll_fd);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->idle);
}

int loop_add_fd(struct event_loop *l, int fd, uint32_t events, loop_fd_fn fn, void *opaque)
{
	struct loop_source *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->fd = fd;
	s->fn = fn;
	s->opaque = opaque;
	pthread_mutex_lock(&l->lock);
	s->id = ++l->next_id;
	struct epoll_event ev = {.events = events, .data.u64 = s->id};
	if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = errno;
		pthread_mutex_unlock(&l->lock);
		free(s);
		return -err;
	}
	s->next = l->sources;
	l->sources = s;
	pthread_mutex_unlock(&l->lock);
	return 0;
}

static struct loop_source *find_source(struct event_loop *l, int fd, struct loop_source ***link)
{
	struct loop_source **pp = &l->sources;
	for (; *pp; pp = &(*pp)->next) {
		if ((*pp)->fd == fd) {
			if (link)
				*link = pp;
			return *pp;
		}
	}
	return NULL;
}

int loop_del_fd(struct event_loop *l, int fd)
{
	struct loop_source **link;
	int ret = 0;
	pthread_mutex_lock(&l->lock);
	struct loop_source *s = find_source(l, fd, &link);
	if (!s) {
		ret = -ENOENT;
	} else {
		epoll_ctl(l->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
		*link = s->next;
		/* loop_run finds a source by its id under the lock, so a stale event for a
		 * removed source finds nothing and the struct can go now. Its callback may be
		 * running, though: another thread waits for it to return (the caller frees the
		 * callback's data next); the loop thread is that callback, and must not. */
		uint64_t id = s->id;
		free(s);
		bool on_loop_thread = l->thread_known && pthread_equal(l->thread, pthread_self());
		while (!on_loop_thread && l->running_id == id)
			pthread_cond_wait(&l->idle, &l->lock);
	}
	pthread_mutex_unlock(&l->lock);
	return ret;
}

int loop_add_timer(struct event_loop *l, uint64_t first_ns, uint64_t interval_ns, loop_fd_fn fn,
		   void *opaque)
{
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	struct itimerspec its = {
	    .it_value = {(time_t)(first_ns / 1000000000ull), (long)(first_ns % 1000000000ull)},
	    .it_interval = {(time_t)(interval_ns / 1000000000ull),
			    (long)(interval_ns % 1000000000ull)},
	};
	if (first_ns == 0)
		its.it_value.tv_nsec = 1; /* zero would disarm it */
	int ret = timerfd_settime(fd, 0, &its, NULL);
	if (ret == 0)
		ret = loop_add_fd(l, fd, EPOLLIN, fn, opaque);
	else
		ret = -errno;
	if (ret < 0) {
		close(fd);
		return ret;
	}
	return fd;
}

static struct loop_source *source_by_id(struct event_loop *l, uint64_t id)
{
	for (struct loop_source *p = l->sources; p; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

int loop_run(struct event_loop *l)
{
	struct epoll_event events[32];

	pthread_mutex_lock(&l->lock);
	l->thread = pthread_self();
	l->thread_known = true;
	pthread_mutex_unlock(&l->lock);
	for (;;) {
		int n = epoll_wait(l->epoll_fd, events, 32, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int err = errno;
			pthread_mutex_lock(&l->lock);
			l->thread_known = false;
			pthread_mutex_unlock(&l->lock);
			return -err;
		}
		for (int i = 0; i < n; i++) {
			uint64_t id = events[i].data.u64;
			if (id == 0) {
				uint64_t v;
				ssize_t r = read(l->stop_fd, &v, sizeof(v));
				(void)r;
				pthread_mutex_lock(&l->lock);
				l->thread_known = false;
				pthread_mutex_unlock(&l->lock);
				return 0;
			}
			pthread_mutex_lock(&l->lock);
			struct loop_source *s = source_by_id(l, id);
			loop_fd_fn fn = s ? s->fn : NULL;
			void *opaque = s ? s->opaque : NULL;
			int fd = s ? s->fd : -1;
			l->running_id = s ? id : 0;
			pthread_mutex_unlock(&l->lock);
			if (!fn)
				continue;
			fn(opaque, fd, events[i].events);
			pthread_mutex_lock(&l->lock);
			l->running_id = 0;
			pthread_cond_broadcast(&l->idle);
			pthread_mutex_unlock(&l->lock);
		}
	}
}

void loop_stop(struct event_loop *l)
{
	uint64_t one = 1;
	ssize_t r = write(l->stop_fd, &one, sizeof(one));
	(void)r;
}
