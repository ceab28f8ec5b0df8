/* FNV-1a, 64 bits: a fast checksum of on-disk records and a hash of
 * in-memory tables. Not a cryptographic hash. */
#ifndef SRUP_FNV1A_H
#define SRUP_FNV1A_H

#include <stddef.h>
#include <stdint.h>

#define SRUP_FNV1A_OFFSET 0xcbf29ce484222325ull

/* h: SRUP_FNV1A_OFFSET to start, or the value over what came before. */
static inline uint64_t srup_fnv1a(const void *data, size_t len, uint64_t h)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

#endif
