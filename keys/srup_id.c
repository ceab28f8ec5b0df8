/* SRUP IDs as text: the zero-padded form for file names and JSON, the
 * pySRUP topic form, and a strict parser for both. */
#include "srup_keys.h"

#include "srup_hex.h"

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

int srup_id_parse(const char *text, uint64_t *out)
{
	if (text == NULL || out == NULL)
		return -1;
	return srup_hex_parse_id(text, out);
}
