#include "kstring.h"

/* Plain byte loops: short, and no string instructions for the ring-0 emulator to model. */
void *memcpy(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;
	while (n--)
		*d++ = *s++;
	return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;
	if (d < s) {
		while (n--)
			*d++ = *s++;
	} else {
		while (n--)
			d[n] = s[n];
	}
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	unsigned char *d = dst;
	while (n--)
		*d++ = (unsigned char)c;
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;
	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

int strcmp(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return (unsigned char)*a - (unsigned char)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (a[i] != b[i] || !a[i])
			return (unsigned char)a[i] - (unsigned char)b[i];
	}
	return 0;
}

char *strstr(const char *haystack, const char *needle)
{
	size_t n = strlen(needle);
	for (; *haystack; haystack++)
		if (!strncmp(haystack, needle, n))
			return (char *)haystack;
	return n == 0 ? (char *)haystack : NULL;
}

static int digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return 99;
}

uint64_t parse_u64(const char *s, const char **end, bool base16)
{
	unsigned base = base16 ? 16 : 10;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	uint64_t v = 0;
	for (int d; (d = digit_value(*s)) < (int)base; s++)
		v = v * base + (uint64_t)d;
	if (end)
		*end = s;
	return v;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Finds the word that starts with prefix (and, if whole, ends right after it). */
static const char *find_word(const char *cmdline, const char *prefix, bool whole)
{
	size_t n = strlen(prefix);
	if (!cmdline || !n)
		return NULL;
	for (const char *p = cmdline; *p;) {
		while (is_space(*p))
			p++;
		if (!*p)
			break;
		if (!strncmp(p, prefix, n) && (!whole || !p[n] || is_space(p[n])))
			return p;
		while (*p && !is_space(*p))
			p++;
	}
	return NULL;
}

bool cmdline_has_word(const char *cmdline, const char *word)
{
	return find_word(cmdline, word, true) != NULL;
}

bool cmdline_get(const char *cmdline, const char *key, char *buf, size_t len)
{
	char prefix[64];
	size_t k = strlen(key);
	if (k + 2 > sizeof(prefix) || !len)
		return false;
	memcpy(prefix, key, k);
	prefix[k] = '=';
	prefix[k + 1] = '\0';
	const char *p = find_word(cmdline, prefix, false);
	if (!p)
		return false;
	p += k + 1;
	size_t i = 0;
	while (p[i] && !is_space(p[i]) && i + 1 < len) {
		buf[i] = p[i];
		i++;
	}
	buf[i] = '\0';
	return true;
}

bool cmdline_get_u64(const char *cmdline, const char *key, uint64_t *out)
{
	char buf[32];
	if (!cmdline_get(cmdline, key, buf, sizeof(buf)) || !buf[0])
		return false;
	const char *end;
	*out = parse_u64(buf, &end, false);
	return *end == '\0';
}
