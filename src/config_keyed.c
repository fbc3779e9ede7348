/* QEMU's keyed option syntax ("type,key=val,flag", ",," for a comma), parsed once into a
 * struct keyed_opts that the code owning the option reads key by key. */
#include "util/hex.h"
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* What the leading item without '=' means for each option (QEMU's "implied" key), and
 * whether the option is useless without it or without an id. -drive has no implied key:
 * there a bare first item is a boolean, as in QEMU. */
static const struct {
	const char *option;
	const char *implied; /* NULL: none */
	bool need_type, need_id;
} keyed_kinds[] = {
    {"device", "driver", true, false},	{"drive", NULL, false, false},
    {"netdev", "type", true, true},	{"chardev", "backend", true, true},
    {"object", "qom-type", true, true}, {"mon", "chardev", true, false},
    {"machine", "type", false, false},	{"name", "guest", false, false},
    {"accel", "accel", true, false},	{"nic", "type", true, false},
    {"net", NULL, false, false},
};

static int kind_of(const char *option)
{
	for (size_t i = 0; i < sizeof(keyed_kinds) / sizeof(keyed_kinds[0]); i++) {
		if (!strcmp(keyed_kinds[i].option, option))
			return (int)i;
	}
	return -1;
}

/* Messages echo the user's text; a control character in it must not break the line. */
static int kerr(struct errbuf *e, int code)
{
	if (e) {
		for (char *p = e->msg; *p; p++) {
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
		}
	}
	return code;
}

#define KERR(e, ...) kerr((e), errf((e), -EINVAL, __VA_ARGS__))
#define KNOMEM(e)    errf((e), -ENOMEM, "out of memory")

int config_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"on", "yes", "true"}, *const no[] = {"off", "no",
									       "false"};

	for (int i = 0; i < 3; i++) {
		if (!strcmp(s, yes[i]) || !strcmp(s, no[i])) {
			*out = !strcmp(s, yes[i]);
			return 0;
		}
	}
	return -EINVAL;
}

/* QEMU's id_wellformed(): a letter, then letters, digits, '-', '.', '_'. */
static bool id_ok(const char *s)
{
	if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
		return false;
	for (; *s; s++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '.' || *s == '_'))
			return false;
	}
	return true;
}

static bool key_ok(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.' || c == '_'))
			return false;
	}
	return true;
}

/* Copies raw[0..n) with ",," turned into ",". */
static char *unescape(const char *raw, size_t n)
{
	char *out = malloc(n + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		*o++ = raw[i];
		if (raw[i] == ',')
			i++; /* the item splitter only leaves commas in pairs */
	}
	*o = '\0';
	return out;
}

/* The end of the item starting at s: the first ',' not doubled, or the terminator. */
static const char *item_end(const char *s)
{
	for (;; s++) {
		if (!*s)
			return s;
		if (*s == ',') {
			if (s[1] != ',')
				return s;
			s++;
		}
	}
}

void keyed_opts_free(struct keyed_opts *o)
{
	for (unsigned k = 0; k < o->nkv; k++) {
		free(o->kv[k].key);
		free(o->kv[k].val);
	}
	free(o->kv);
	free(o->type);
	free(o->id);
	free(o->spec);
	memset(o, 0, sizeof(*o));
}

static struct keyed_kv *find_kv(const struct keyed_opts *o, const char *key)
{
	for (unsigned k = 0; k < o->nkv; k++) {
		if (!strcmp(o->kv[k].key, key))
			return &o->kv[k];
	}
	return NULL;
}

/* Takes ownership of key and val (frees them on failure). */
static int add_kv(struct keyed_opts *o, char *key, char *val, bool negated, struct errbuf *e)
{
	struct keyed_kv *kv;
	int r;

	if (find_kv(o, key)) {
		r = KERR(e, "invalid -%s '%s': key '%s' given twice", o->option, o->spec, key);
		goto fail;
	}
	kv = realloc(o->kv, (o->nkv + 1) * sizeof(*kv));
	if (!kv) {
		r = KNOMEM(e);
		goto fail;
	}
	o->kv = kv;
	o->kv[o->nkv++] = (struct keyed_kv){.key = key, .val = val, .negated = negated};
	return 0;
fail:
	free(key);
	free(val);
	return r;
}

/* One item (raw text, escapes still in) of o->spec. */
static int parse_item(struct keyed_opts *o, const char *implied, const char *raw, size_t n,
		      bool first, struct errbuf *e)
{
	const char *eq = memchr(raw, '=', n);
	size_t klen = eq ? (size_t)(eq - raw) : n;
	char *key, *val;
	bool negated = false;

	if (n == 0)
		return KERR(e, "invalid -%s '%s': empty item (a stray ',')", o->option, o->spec);
	if (!eq && first && implied) {
		if (!(o->type = unescape(raw, n)))
			return KNOMEM(e);
		return 0;
	}
	if (!key_ok(raw, klen))
		return KERR(e, "invalid -%s '%s': %s key '%.*s'", o->option, o->spec,
			    klen ? "invalid" : "empty", (int)klen, raw);
	key = strndup(raw, klen);
	if (!key)
		return KNOMEM(e);
	if (eq) {
		val = unescape(eq + 1, n - klen - 1);
	} else {
		/* QEMU reads a bare "server" as server=on and "nowait" as wait=off. */
		if (klen > 2 && !strncmp(key, "no", 2)) {
			memmove(key, key + 2, klen - 1);
			negated = true;
		}
		val = strdup(negated ? "off" : "on");
	}
	if (!val) {
		free(key);
		return KNOMEM(e);
	}
	if (!strcmp(key, "id")) {
		free(key);
		if (o->id) {
			free(val);
			return KERR(e, "invalid -%s '%s': key 'id' given twice", o->option,
				    o->spec);
		}
		if (!id_ok(val)) {
			KERR(e,
			     "invalid -%s '%s': id '%s' must start with a letter and hold only "
			     "letters, digits, '-', '.' and '_'",
			     o->option, o->spec, val);
			free(val);
			return -EINVAL;
		}
		o->id = val;
		return 0;
	}
	/* The implied key may also be spelled out (-device driver=virtio-blk-pci). */
	if (implied && !strcmp(key, implied)) {
		free(key);
		if (o->type) {
			free(val);
			return KERR(e, "invalid -%s '%s': key '%s' given twice", o->option, o->spec,
				    implied);
		}
		o->type = val;
		return 0;
	}
	return add_kv(o, key, val, negated, e);
}

int keyed_parse(const char *option, const char *s, struct keyed_opts *out, struct errbuf *e)
{
	int kind = kind_of(option);
	const char *implied = kind >= 0 ? keyed_kinds[kind].implied : "type";
	const char *p = s;
	int r;

	memset(out, 0, sizeof(*out));
	out->option = option;
	if (!(out->spec = strdup(s)))
		return KNOMEM(e);
	for (bool first = true; *p; first = false) {
		const char *end = item_end(p);
		r = parse_item(out, implied, p, (size_t)(end - p), first, e);
		if (r)
			goto fail;
		/* A single trailing comma is accepted, as QEMU does. */
		p = *end ? end + 1 : end;
	}
	if (kind >= 0 && keyed_kinds[kind].need_type && !out->type) {
		r = KERR(e, "invalid -%s '%s': no %s given (it comes first, as in -%s TYPE,...)",
			 option, s, implied, option);
		goto fail;
	}
	if (kind >= 0 && keyed_kinds[kind].need_id && !out->id) {
		r = KERR(e, "invalid -%s '%s': needs an id= to be referred to", option, s);
		goto fail;
	}
	return 0;
fail:
	keyed_opts_free(out);
	return r;
}

const char *keyed_get(struct keyed_opts *o, const char *key)
{
	struct keyed_kv *kv = find_kv(o, key);

	if (!kv)
		return NULL;
	kv->used = true;
	return kv->val;
}

int keyed_get_bool(struct keyed_opts *o, const char *key, bool dflt, bool *out, struct errbuf *e)
{
	const char *v = keyed_get(o, key);

	*out = dflt;
	if (v && config_parse_bool(v, out))
		return KERR(e, "invalid -%s '%s': %s='%s' must be on or off", o->option, o->spec,
			    key, v);
	return 0;
}

int keyed_get_u64(struct keyed_opts *o, const char *key, uint64_t dflt, uint64_t max, uint64_t *out,
		  struct errbuf *e)
{
	const char *v = keyed_get(o, key), *p;
	uint64_t n = 0;
	unsigned base = 10;

	*out = dflt;
	if (!v)
		return 0;
	/* QEMU's integer properties read 0x for hex (and a leading 0 for octal). */
	p = v;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	} else if (p[0] == '0' && p[1]) {
		base = 8;
		p++;
	}
	if (!*p)
		goto bad;
	for (; *p; p++) {
		int h = hex_digit(*p);
		if (h < 0)
			goto bad;
		unsigned d = (unsigned)h;
		if (d >= base)
			goto bad;
		if (__builtin_mul_overflow(n, base, &n) || __builtin_add_overflow(n, d, &n) ||
		    n > max)
			return KERR(e, "invalid -%s '%s': %s=%s is above %llu", o->option, o->spec,
				    key, v, (unsigned long long)max);
	}
	*out = n;
	return 0;
bad:
	return KERR(e, "invalid -%s '%s': %s='%s' is not a number", o->option, o->spec, key, v);
}

int keyed_check_used(const struct keyed_opts *o, const char *known, struct errbuf *e)
{
	for (unsigned k = 0; k < o->nkv; k++) {
		const struct keyed_kv *kv = &o->kv[k];
		if (kv->used)
			continue;
		return KERR(e, "invalid -%s '%s': unknown key '%s%s'%s%s%s%s", o->option, o->spec,
			    kv->negated ? "no" : "", kv->key, o->type ? " for " : "",
			    o->type ? o->type : "", known ? "; kvmini knows " : "",
			    known ? known : "");
	}
	return 0;
}

struct keyed_opts *keyed_list_find(const struct keyed_list *l, const char *id)
{
	for (unsigned i = 0; i < l->n; i++) {
		if (l->items[i].id && !strcmp(l->items[i].id, id))
			return &l->items[i];
	}
	return NULL;
}

int keyed_list_add(struct keyed_list *l, const char *option, const char *s,
		   struct keyed_opts **added, struct errbuf *e)
{
	struct keyed_opts o, *items;
	int r = keyed_parse(option, s, &o, e);

	if (r)
		return r;
	if (o.id && keyed_list_find(l, o.id)) {
		KERR(e, "invalid -%s '%s': id '%s' is already used by another -%s", option, s, o.id,
		     option);
		keyed_opts_free(&o);
		return -EINVAL;
	}
	items = realloc(l->items, (l->n + 1) * sizeof(*items));
	if (!items) {
		keyed_opts_free(&o);
		return KNOMEM(e);
	}
	l->items = items;
	l->items[l->n] = o;
	if (added)
		*added = &l->items[l->n];
	l->n++;
	return 0;
}

void keyed_list_free(struct keyed_list *l)
{
	for (unsigned i = 0; i < l->n; i++)
		keyed_opts_free(&l->items[i]);
	free(l->items);
	l->items = NULL;
	l->n = 0;
}
