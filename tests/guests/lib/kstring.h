/* The few libc string functions the guests need (GCC may also emit calls to mem*). */
#ifndef KIT_KSTRING_H
#define KIT_KSTRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strstr(const char *haystack, const char *needle);

/* Parses an unsigned number: decimal, or hex with a 0x prefix (or always hex if base16).
 * Stops at the first non-digit; *end (if not NULL) points there. */
uint64_t parse_u64(const char *s, const char **end, bool base16);

/* Command-line helpers. A word is a maximal run of non-space characters. */
/* True if the command line holds the word `word` exactly. */
bool cmdline_has_word(const char *cmdline, const char *word);
/* Finds `key=value`; copies value (up to the next space) into buf (NUL-terminated, cut to
 * len - 1). Returns true if found. */
bool cmdline_get(const char *cmdline, const char *key, char *buf, size_t len);
/* cmdline_get + parse_u64 (decimal or 0x-hex). */
bool cmdline_get_u64(const char *cmdline, const char *key, uint64_t *out);

#endif
