/* INITIATE's url and digest as a receiver uses them (WIRE.md Q8): pySRUP
 * sends both with their C terminator, other senders without it. */
#include <stdlib.h>
#include <string.h>

#include "srup.h"
#include "srup_hex.h"
#include "srup_msg_layout.h"

#define DIGEST_HEX_LEN (2 * SRUP_INITIATE_DIGEST_LEN)

static enum srup_err check_initiate(const struct srup_msg *m)
{
	if (m == NULL)
		return SRUP_E_ARG;
	if (m->type != SRUP_TYPE_INITIATE)
		return SRUP_E_WRONG_TYPE;
	return SRUP_OK;
}

enum srup_err srup_initiate_url(const struct srup_msg *m, const char **url, size_t *url_len)
{
	enum srup_err rc = check_initiate(m);
	size_t len;

	if (rc != SRUP_OK)
		return rc;
	if (url == NULL || url_len == NULL)
		return SRUP_E_ARG;
	len = m->url.len;
	if (len > 0 && m->url.data[len - 1] == 0x00)
		len--; /* the one terminator pySRUP sends */
	if (len == 0 || memchr(m->url.data, 0x00, len) != NULL)
		return SRUP_E_FIELD_VALUE;
	*url = (const char *)m->url.data;
	*url_len = len;
	return SRUP_OK;
}

enum srup_err srup_initiate_digest(const struct srup_msg *m,
				   uint8_t digest[SRUP_INITIATE_DIGEST_LEN])
{
	enum srup_err rc = check_initiate(m);
	const uint8_t *field;
	size_t len, n = 0, bad_at;
	uint8_t *bytes = NULL;
	int hex_rc;

	if (rc != SRUP_OK)
		return rc;
	if (digest == NULL)
		return SRUP_E_ARG;
	field = m->digest.data;
	len = m->digest.len;
	/* Only the lengths a terminator can explain lose their last byte: a
	 * 32-byte raw digest ending in 00 is all digest. */
	if ((len == DIGEST_HEX_LEN + 1 || len == SRUP_INITIATE_DIGEST_LEN + 1) &&
	    field[len - 1] == 0x00)
		len--;
	if (len == SRUP_INITIATE_DIGEST_LEN) {
		memcpy(digest, field, SRUP_INITIATE_DIGEST_LEN);
		return SRUP_OK;
	}
	if (len != DIGEST_HEX_LEN)
		return SRUP_E_FIELD_VALUE;
	hex_rc = srup_hex_decode((const char *)field, len, false, &bytes, &n, &bad_at);
	if (hex_rc == -2)
		return SRUP_E_NOMEM;
	if (hex_rc != 0 || n != SRUP_INITIATE_DIGEST_LEN) {
		free(bytes);
		return SRUP_E_FIELD_VALUE;
	}
	memcpy(digest, bytes, SRUP_INITIATE_DIGEST_LEN);
	free(bytes);
	return SRUP_OK;
}
