/* The 8-bit checksum firmware tables use (MP spec, ACPI): the byte that makes a table's
 * bytes sum to zero. */
#ifndef KVMINI_UTIL_CHECKSUM_H
#define KVMINI_UTIL_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/* Call with the checksum field still zero. */
static inline uint8_t table_checksum(const void *table, size_t len)
{
	const uint8_t *p = table;
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum += p[i];
	return (uint8_t)-sum;
}

#endif
