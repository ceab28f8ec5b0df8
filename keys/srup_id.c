/* SRUP IDs as text: the zero-padded form for file names and JSON, the
 * pySRUP topic form, and a strict parser for both. */
#include "srup_keys.h"

static const char hex_digits[] = "0123456789abcdef";

void srup_id_format16(uint64_t id, char out[17])
{
	for (int i = 15; i >= 0; i--) {
		out[i] = hex_digits[id & 0xf];
		id >>= 4;
	}
	out[16] = '\0';
}

void srup_id_format_topic(uint64_t id, char out[17])
{
	char full[17];
	srup_id_format16(id, full);
	int first = 0;
	while (first < 15 && full[first] == '0')
		first++;
	int n = 0;
	for (int i = first; i < 16; i++)
		out[n++] = full[i];
	out[n] = '\0';
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

int srup_id_parse(const char *text, uint64_t *out)
{
	if (text == NULL || out == NULL)
		return -1;
	/* No sign, space or "0x": strtoull would take all of those. */
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
