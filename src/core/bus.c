#include "core/bus.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Reclamation, in short. A reader enters counter active[epoch & 1], then loads the table,
 * and leaves the same counter when its handler returns. A writer stores the new table and
 * only then looks at the counters. With sequentially consistent atomics, a reader that can
 * hold a replaced table entered its counter before the table was replaced, so once each
 * counter has been seen at zero after the replacement, no reader can hold it. Flipping the
 * epoch sends new readers to the other counter, so the one being drained reaches zero even
 * while vCPUs keep dispatching. Writers never wait: a table that cannot be freed yet stays
 * on the retired list until a later write, bus_synchronize() or bus_destroy(). */
struct bus_table {
	struct bus_table *next_retired;
	unsigned drained; /* bit k: active[k] seen at zero since this table was retired */
	unsigned n;
	struct bus_range r[];
};

/* The dispatches the calling thread is inside of, innermost first. It describes the
 * thread's own call stack, not any VM's state, so it is per thread. bus_synchronize()
 * uses it to avoid waiting for its own caller. */
struct bus_frame {
	const struct bus *bus;
	unsigned idx;
	struct bus_frame *outer;
};
static __thread struct bus_frame *bus_current_frame;

static struct bus_table *table_new(unsigned n)
{
	struct bus_table *t = calloc(1, sizeof(*t) + (size_t)n * sizeof(t->r[0]));
	if (t)
		t->n = n;
	return t;
}

int bus_init(struct bus *bus, const char *name)
{
	memset(bus, 0, sizeof(*bus));
	bus->name = name;
	struct bus_table *t = table_new(0);
	if (!t)
		return -ENOMEM;
	atomic_init(&bus->table, t);
	atomic_init(&bus->epoch, 0);
	atomic_init(&bus->active[0], 0);
	atomic_init(&bus->active[1], 0);
	int ret = pthread_mutex_init(&bus->lock, NULL);
	if (ret) {
		free(t);
		return -ret;
	}
	return 0;
}

void bus_destroy(struct bus *bus)
{
	struct bus_table *t = bus->retired;
	while (t) {
		struct bus_table *next = t->next_retired;
		free(t);
		t = next;
	}
	bus->retired = NULL;
	free(atomic_load(&bus->table));
	atomic_store(&bus->table, NULL);
	pthread_mutex_destroy(&bus->lock);
}

/* Under bus->lock. Marks the counters that are at zero now and frees the tables that have
 * seen both at zero since they were retired. Never waits. */
static void reclaim(struct bus *bus)
{
	unsigned zero = 0;
	for (unsigned k = 0; k < 2; k++)
		if (atomic_load(&bus->active[k]) == 0)
			zero |= 1u << k;
	struct bus_table **pp = &bus->retired;
	while (*pp) {
		struct bus_table *t = *pp;
		t->drained |= zero;
		if (t->drained == 3) {
			*pp = t->next_retired;
			free(t);
		} else {
			pp = &t->next_retired;
		}
	}
	if (bus->retired)
		atomic_fetch_add(&bus->epoch, 1); /* let the busy counter drain */
}

/* Under bus->lock: publishes t and retires the table it replaces. */
static void publish(struct bus *bus, struct bus_table *t)
{
	struct bus_table *old = atomic_exchange(&bus->table, t);
	old->drained = 0;
	old->next_retired = bus->retired;
	bus->retired = old;
	reclaim(bus);
}

/* Index of the first range whose base is > addr. */
static unsigned upper_bound(const struct bus_table *t, uint64_t addr)
{
	unsigned lo = 0, hi = t->n;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (t->r[mid].base <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Where [base, base+len) would go in t, or -EEXIST if it overlaps a range other than
 * t->r[skip] (skip = t->n: none). */
static int find_slot(const struct bus_table *t, uint64_t base, uint64_t len, unsigned skip,
		     unsigned *pos_out)
{
	uint64_t last = base + len - 1;
	for (unsigned i = 0; i < t->n; i++) {
		if (i == skip)
			continue;
		const struct bus_range *r = &t->r[i];
		if (r->base <= last && base <= r->base + (r->len - 1))
			return -EEXIST;
	}
	*pos_out = upper_bound(t, base);
	return 0;
}

/* Copies src without entry `drop` (src->n: none), inserting `add` (if non-NULL). */
static struct bus_table *table_edit(const struct bus_table *src, unsigned drop,
				    const struct bus_range *add)
{
	unsigned n = src->n - (drop < src->n) + (add != NULL);
	struct bus_table *t = table_new(n);
	if (!t)
		return NULL;
	unsigned j = 0;
	bool placed = add == NULL;
	for (unsigned i = 0; i < src->n; i++) {
		if (i == drop)
			continue;
		if (!placed && add->base < src->r[i].base) {
			t->r[j++] = *add;
			placed = true;
		}
		t->r[j++] = src->r[i];
	}
	if (!placed)
		t->r[j++] = *add;
	return t;
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_handler_fn fn, void *opaque,
		 const char *name)
{
	uint64_t last;
	unsigned pos;

	if (len == 0 || !fn || __builtin_add_overflow(base, len - 1, &last))
		return -EINVAL;
	pthread_mutex_lock(&bus->lock);
	struct bus_table *cur = atomic_load(&bus->table);
	int ret = find_slot(cur, base, len, cur->n, &pos);
	if (ret == 0) {
		struct bus_range add = {base, len, fn, opaque, name};
		struct bus_table *t = table_edit(cur, cur->n, &add);
		if (t)
			publish(bus, t);
		else
			ret = -ENOMEM;
	}
	pthread_mutex_unlock(&bus->lock);
	return ret;
}

static int find_base(const struct bus_table *t, uint64_t base, unsigned *idx)
{
	unsigned pos = upper_bound(t, base);
	if (pos == 0 || t->r[pos - 1].base != base)
		return -ENOENT;
	*idx = pos - 1;
	return 0;
}

int bus_unregister(struct bus *bus, uint64_t base)
{
	unsigned idx;
	pthread_mutex_lock(&bus->lock);
	struct bus_table *cur = atomic_load(&bus->table);
	int ret = find_base(cur, base, &idx);
	if (ret == 0) {
		struct bus_table *t = table_edit(cur, idx, NULL);
		if (t)
			publish(bus, t);
		else
			ret = -ENOMEM;
	}
	pthread_mutex_unlock(&bus->lock);
	return ret;
}

int bus_move(struct bus *bus, uint64_t old_base, uint64_t new_base)
{
	unsigned idx, pos;
	uint64_t last;
	pthread_mutex_lock(&bus->lock);
	struct bus_table *cur = atomic_load(&bus->table);
	int ret = find_base(cur, old_base, &idx);
	if (ret == 0 && __builtin_add_overflow(new_base, cur->r[idx].len - 1, &last))
		ret = -EINVAL;
	if (ret == 0)
		ret = find_slot(cur, new_base, cur->r[idx].len, idx, &pos);
	if (ret == 0) {
		struct bus_range moved = cur->r[idx];
		moved.base = new_base;
		struct bus_table *t = table_edit(cur, idx, &moved);
		if (t)
			publish(bus, t);
		else
			ret = -ENOMEM;
	}
	pthread_mutex_unlock(&bus->lock);
	return ret;
}

/* Waits until active[k] holds no dispatch but the calling thread's own (mine). */
static void drain(struct bus *bus, unsigned k, long mine)
{
	for (unsigned spins = 0; atomic_load(&bus->active[k]) > mine; spins++) {
		if (spins < 100) {
			sched_yield();
		} else {
			struct timespec ts = {0, 50000};
			nanosleep(&ts, NULL);
		}
	}
}

void bus_synchronize(struct bus *bus)
{
	long mine[2] = {0, 0};
	for (const struct bus_frame *f = bus_current_frame; f; f = f->outer)
		if (f->bus == bus)
			mine[f->idx]++;
	/* Drain the counter readers are not entering, flip, drain the other. */
	unsigned cur = atomic_load(&bus->epoch) & 1;
	drain(bus, cur ^ 1, mine[cur ^ 1]);
	atomic_fetch_add(&bus->epoch, 1);
	drain(bus, cur, mine[cur]);
	atomic_fetch_add(&bus->epoch, 1);
	/* Whatever retired before this call is unreachable now, unless our own frames hold
	 * it; reclaim() decides that from the raw counters. */
	pthread_mutex_lock(&bus->lock);
	reclaim(bus);
	pthread_mutex_unlock(&bus->lock);
}

bool bus_dispatch(struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
	bool found = false;
	unsigned idx = atomic_load(&bus->epoch) & 1;
	atomic_fetch_add(&bus->active[idx], 1);
	const struct bus_table *t = atomic_load(&bus->table);
	unsigned pos = upper_bound(t, addr);
	if (pos > 0 && len > 0) {
		const struct bus_range *r = &t->r[pos - 1];
		uint64_t off = addr - r->base;
		if (off < r->len && len <= r->len - off) {
			/* The table stays allocated until we leave our counter, but nothing
			 * of it is needed once the handler runs (it may replace the table). */
			bus_handler_fn fn = r->fn;
			void *opaque = r->opaque;
			struct bus_frame frame = {bus, idx, bus_current_frame};
			bus_current_frame = &frame;
			fn(opaque, off, data, len, is_write);
			bus_current_frame = frame.outer;
			found = true;
		}
	}
	atomic_fetch_sub(&bus->active[idx], 1);
	if (!found && !is_write)
		memset(data, 0xff, len);
	return found;
}
