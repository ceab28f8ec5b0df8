/* Hex text for bytes and 64-bit SRUP IDs, shared by the tools, the key
 * store's ID parser, the configuration and the tests (one parser, so they
 * cannot disagree on what counts as a hex digit). Not libsrup's interface:
 * libsrup holds its own hidden copy; an application parses IDs with
 * srup_id_parse (srup_keys.h). */
#ifndef SRUP_HEX_H
#define SRUP_HEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Lowercase hex of n bytes, NUL-terminated, malloc'd (free()). NULL when
 * out of memory. */
char *srup_hex_encode(const uint8_t *p, size_t n);

/* Hex digits (either case) to bytes. With skip_space, white space anywhere
 * is ignored (mosquitto_sub -F %x output, hex dumps split over lines).
 * Returns 0, or -1 with *bad_at the offset of the first character that is
 * not a hex digit (text_len for an odd number of digits), or -2 when out
 * of memory. *out is malloc'd (free()). */
int srup_hex_decode(const char *text, size_t text_len, bool skip_space, uint8_t **out,
		    size_t *out_len, size_t *bad_at);

/* 1 to 16 hex digits (either case, leading zeros optional) as a 64-bit ID;
 * no sign, space or "0x", which strtoull would all take. Returns 0, or -1
 * if text is not such an ID. */
int srup_hex_parse_id(const char *text, uint64_t *out);

#endif
