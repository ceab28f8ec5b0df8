/* Bounds-checked reader and writer over a byte buffer (private to libsrup).
 *
 * Every byte that libsrup takes from the network goes through a
 * srup_cursor: a read that would pass the end returns SRUP_E_TRUNCATED and
 * leaves the cursor where it was, so no length taken from the input is ever
 * trusted before it has been checked against the bytes that are there.
 * srup_writer is the same idea for output: the encoder computes the exact
 * length first, and a write past the buffer's capacity is an error too. */
#ifndef SRUP_CURSOR_H
#define SRUP_CURSOR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "srup.h"

struct srup_cursor {
	const uint8_t *buf;
	size_t len;
	size_t pos;
};

static inline void srup_cursor_init(struct srup_cursor *c, const uint8_t *buf, size_t len)
{
	c->buf = buf;
	c->len = len;
	c->pos = 0;
}

static inline size_t srup_cursor_left(const struct srup_cursor *c)
{
	return c->len - c->pos;
}

/* Borrow the next n bytes (pointer into the buffer) and advance. */
static inline enum srup_err srup_cursor_bytes(struct srup_cursor *c, size_t n, const uint8_t **out)
{
	if (n > srup_cursor_left(c))
		return SRUP_E_TRUNCATED;
	*out = c->buf + c->pos;
	c->pos += n;
	return SRUP_OK;
}

static inline enum srup_err srup_cursor_u8(struct srup_cursor *c, uint8_t *out)
{
	const uint8_t *p;
	enum srup_err rc = srup_cursor_bytes(c, 1, &p);

	if (rc == SRUP_OK)
		*out = p[0];
	return rc;
}

static inline enum srup_err srup_cursor_u16be(struct srup_cursor *c, uint16_t *out)
{
	const uint8_t *p;
	enum srup_err rc = srup_cursor_bytes(c, 2, &p);

	if (rc == SRUP_OK)
		*out = (uint16_t)((unsigned)p[0] << 8 | p[1]);
	return rc;
}

static inline enum srup_err srup_cursor_u32le(struct srup_cursor *c, uint32_t *out)
{
	const uint8_t *p;
	enum srup_err rc = srup_cursor_bytes(c, 4, &p);

	if (rc == SRUP_OK)
		*out = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		       (uint32_t)p[3] << 24;
	return rc;
}

static inline enum srup_err srup_cursor_u64le(struct srup_cursor *c, uint64_t *out)
{
	const uint8_t *p;
	enum srup_err rc = srup_cursor_bytes(c, 8, &p);

	if (rc == SRUP_OK) {
		uint64_t v = 0;
		for (int i = 7; i >= 0; i--)
			v = v << 8 | p[i];
		*out = v;
	}
	return rc;
}

struct srup_writer {
	uint8_t *buf;
	size_t cap;
	size_t pos;
};

static inline void srup_writer_init(struct srup_writer *w, uint8_t *buf, size_t cap)
{
	w->buf = buf;
	w->cap = cap;
	w->pos = 0;
}

static inline enum srup_err srup_writer_bytes(struct srup_writer *w, const void *data, size_t n)
{
	if (n > w->cap - w->pos)
		return SRUP_E_ARG;
	if (n)
		memcpy(w->buf + w->pos, data, n);
	w->pos += n;
	return SRUP_OK;
}

static inline enum srup_err srup_writer_u8(struct srup_writer *w, uint8_t v)
{
	return srup_writer_bytes(w, &v, 1);
}

static inline enum srup_err srup_writer_u16be(struct srup_writer *w, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	return srup_writer_bytes(w, b, sizeof b);
}

static inline enum srup_err srup_writer_u32le(struct srup_writer *w, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	return srup_writer_bytes(w, b, sizeof b);
}

static inline enum srup_err srup_writer_u64le(struct srup_writer *w, uint64_t v)
{
	uint8_t b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	return srup_writer_bytes(w, b, sizeof b);
}

#endif
