/* A bounds-checked reader over a byte buffer, for the parsers of every
 * layer that has no error enum of its own to return (libsrup's codec has
 * srup_cursor, which answers with srup_err).
 *
 * A read past the end sets overrun, yields zeros (or NULL from
 * byte_cursor_take) and leaves every later read failing too, so a parser
 * reads a whole header and checks overrun once before trusting any of it.
 * Multi-byte integers are big-endian (network order). */
#ifndef BYTE_CURSOR_H
#define BYTE_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct byte_cursor {
	const uint8_t *buf;
	size_t len;
	size_t off;
	bool overrun; /* a read wanted more bytes than were left */
};

static inline void byte_cursor_init(struct byte_cursor *c, const uint8_t *buf, size_t len)
{
	c->buf = buf;
	c->len = len;
	c->off = 0;
	c->overrun = false;
}

/* Bytes left; 0 once a read has overrun. */
static inline size_t byte_cursor_left(const struct byte_cursor *c)
{
	return c->overrun ? 0 : c->len - c->off;
}

/* Borrow the next n bytes (a pointer into the buffer) and advance; NULL if
 * fewer are left. */
static inline const uint8_t *byte_cursor_take(struct byte_cursor *c, size_t n)
{
	const uint8_t *p;

	if (c->overrun || n > c->len - c->off) {
		c->overrun = true;
		return NULL;
	}
	p = c->buf + c->off;
	c->off += n;
	return p;
}

static inline uint8_t byte_cursor_u8(struct byte_cursor *c)
{
	const uint8_t *p = byte_cursor_take(c, 1);

	return p ? p[0] : 0;
}

static inline uint16_t byte_cursor_u16be(struct byte_cursor *c)
{
	const uint8_t *p = byte_cursor_take(c, 2);

	return p ? (uint16_t)((unsigned)p[0] << 8 | p[1]) : 0;
}

static inline uint32_t byte_cursor_u32be(struct byte_cursor *c)
{
	const uint8_t *p = byte_cursor_take(c, 4);

	return p ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3] : 0;
}

static inline uint64_t byte_cursor_u64be(struct byte_cursor *c)
{
	const uint8_t *p = byte_cursor_take(c, 8);
	uint64_t v = 0;

	if (!p)
		return 0;
	for (size_t i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

#endif
