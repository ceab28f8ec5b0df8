/* Hex text: see srup_hex.h. */
#include "srup_hex.h"

#include <stdlib.h>

static const char hex_lower[] = "0123456789abcdef";

char *srup_hex_encode(const uint8_t *p, size_t n)
{
	if (n > (SIZE_MAX - 1) / 2)
		return NULL;
	char *s = malloc(2 * n + 1);
	if (s == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		s[2 * i] = hex_lower[p[i] >> 4];
		s[2 * i + 1] = hex_lower[p[i] & 0xf];
	}
	s[2 * n] = '\0';
	return s;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int srup_hex_decode(const char *text, size_t text_len, bool skip_space, uint8_t **out,
		    size_t *out_len, size_t *bad_at)
{
	*out = NULL;
	*out_len = 0;
	/* At most text_len / 2 bytes; +1 so that an empty result is a valid
	 * allocation. */
	uint8_t *buf = malloc(text_len / 2 + 1);
	if (buf == NULL)
		return -2;
	size_t n = 0;
	int high = -1;
	for (size_t i = 0; i < text_len; i++) {
		if (skip_space && is_space(text[i]))
			continue;
		int v = hex_value(text[i]);
		if (v < 0) {
			free(buf);
			*bad_at = i;
			return -1;
		}
		if (high < 0) {
			high = v;
		} else {
			buf[n++] = (uint8_t)(high << 4 | v);
			high = -1;
		}
	}
	if (high >= 0) {
		free(buf);
		*bad_at = text_len;
		return -1;
	}
	*out = buf;
	*out_len = n;
	return 0;
}

int srup_hex_parse_id(const char *text, uint64_t *out)
{
	uint64_t v = 0;
	size_t n = 0;
	for (; text[n] != '\0'; n++) {
		int d = hex_value(text[n]);
		if (d < 0 || n >= 16)
			return -1;
		v = (v << 4) | (uint64_t)d;
	}
	if (n == 0)
		return -1;
	*out = v;
	return 0;
}
