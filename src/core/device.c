#include "core/device.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void state_put(struct state_writer *w, const void *p, size_t n)
{
	if (w->err || n == 0)
		return;
	if (n > w->cap - w->len) {
		size_t cap = w->cap ? w->cap : 256;
		while (cap - w->len < n) {
			if (cap > SIZE_MAX / 2) {
				w->err = -ENOMEM;
				return;
			}
			cap *= 2;
		}
		uint8_t *b = realloc(w->buf, cap);
		if (!b) {
			w->err = -ENOMEM;
			return;
		}
		w->buf = b;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, p, n);
	w->len += n;
}

void state_put_u8(struct state_writer *w, uint8_t v)
{
	state_put(w, &v, 1);
}

void state_put_u16(struct state_writer *w, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
	state_put(w, b, sizeof(b));
}

void state_put_u32(struct state_writer *w, uint32_t v)
{
	state_put_u16(w, (uint16_t)v);
	state_put_u16(w, (uint16_t)(v >> 16));
}

void state_put_u64(struct state_writer *w, uint64_t v)
{
	state_put_u32(w, (uint32_t)v);
	state_put_u32(w, (uint32_t)(v >> 32));
}

void state_put_bytes(struct state_writer *w, const void *p, size_t n)
{
	state_put(w, p, n);
}

void state_writer_free(struct state_writer *w)
{
	free(w->buf);
	*w = (struct state_writer){0};
}

static void state_get(struct state_reader *r, void *p, size_t n)
{
	if (r->err || n > r->len - r->pos) {
		r->err = -EINVAL;
		memset(p, 0, n);
		return;
	}
	memcpy(p, r->buf + r->pos, n);
	r->pos += n;
}

uint8_t state_get_u8(struct state_reader *r)
{
	uint8_t v;
	state_get(r, &v, 1);
	return v;
}

uint16_t state_get_u16(struct state_reader *r)
{
	uint8_t b[2];
	state_get(r, b, sizeof(b));
	return (uint16_t)(b[0] | b[1] << 8);
}

uint32_t state_get_u32(struct state_reader *r)
{
	uint32_t lo = state_get_u16(r);
	return lo | (uint32_t)state_get_u16(r) << 16;
}

uint64_t state_get_u64(struct state_reader *r)
{
	uint64_t lo = state_get_u32(r);
	return lo | (uint64_t)state_get_u32(r) << 32;
}

void state_get_bytes(struct state_reader *r, void *p, size_t n)
{
	state_get(r, p, n);
}

int state_reader_finish(const struct state_reader *r)
{
	return r->err || r->pos != r->len ? -EINVAL : 0;
}

void device_list_init(struct device_list *l)
{
	*l = (struct device_list){0};
}

int device_list_add(struct device_list *l, const struct device_ops *ops, void *dev,
		    unsigned instance)
{
	struct device *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	*d = (struct device){.ops = ops, .dev = dev, .instance = instance};
	if (l->tail)
		l->tail->next = d;
	else
		l->head = d;
	l->tail = d;
	l->count++;
	return 0;
}

void device_list_reset(struct device_list *l)
{
	for (struct device *d = l->head; d; d = d->next)
		if (d->ops->reset)
			d->ops->reset(d->dev);
}

void device_list_pause(struct device_list *l)
{
	for (struct device *d = l->head; d; d = d->next)
		if (d->ops->pause)
			d->ops->pause(d->dev);
}

static void resume_from(struct device *d)
{
	if (!d)
		return;
	resume_from(d->next);
	if (d->ops->resume)
		d->ops->resume(d->dev);
}

void device_list_resume(struct device_list *l)
{
	resume_from(l->head);
}

void device_list_sync_irqs(struct device_list *l)
{
	for (struct device *d = l->head; d; d = d->next)
		if (d->ops->sync_irq)
			d->ops->sync_irq(d->dev);
}

/* Last registered first: a device may depend on one registered before it. */
static void destroy_from(struct device *d)
{
	if (!d)
		return;
	destroy_from(d->next);
	if (d->ops->destroy)
		d->ops->destroy(d->dev);
	free(d);
}

void device_list_destroy(struct device_list *l)
{
	destroy_from(l->head);
	device_list_init(l);
}

int device_save(const struct device *d, struct state_writer *w)
{
	state_put_u32(w, d->ops->version);
	int ret = d->ops->save ? d->ops->save(d->dev, w) : 0;
	return ret < 0 ? ret : w->err;
}

int device_load(const struct device *d, const void *blob, size_t len)
{
	struct state_reader r = {.buf = blob, .len = len};
	if (state_get_u32(&r) != d->ops->version || r.err)
		return -EINVAL;
	if (!d->ops->load)
		return state_reader_finish(&r);
	return d->ops->load(d->dev, &r);
}

struct device *device_list_find(struct device_list *l, const char *name, unsigned instance)
{
	for (struct device *d = l->head; d; d = d->next)
		if (d->instance == instance && !strcmp(d->ops->name, name))
			return d;
	return NULL;
}
