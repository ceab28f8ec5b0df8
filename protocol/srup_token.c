/* Tokens and confirmation values in the form pySRUP peers send. */
#include <stdio.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "srup.h"

static enum srup_err random_uuid4(uint8_t b[16])
{
	if (RAND_bytes(b, 16) != 1)
		return SRUP_E_CRYPTO;
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	return SRUP_OK;
}

enum srup_err srup_uuid4_text(char out[SRUP_UUID_TEXT_LEN + 1])
{
	static const int dash_after[] = {3, 5, 7, 9};
	uint8_t b[16];
	size_t o = 0;
	enum srup_err err = random_uuid4(b);

	if (err != SRUP_OK)
		return err;
	for (int i = 0, d = 0; i < 16; i++) {
		snprintf(out + o, 3, "%02x", b[i]);
		o += 2;
		if (d < 4 && i == dash_after[d]) {
			out[o++] = '-';
			d++;
		}
	}
	out[o] = '\0';
	return SRUP_OK;
}

enum srup_err srup_uuid4_hex(char out[SRUP_UUID_HEX_LEN + 1])
{
	uint8_t b[16];
	enum srup_err err = random_uuid4(b);

	if (err != SRUP_OK)
		return err;
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
	/* A confirmation value is a secret. */
	OPENSSL_cleanse(b, sizeof(b));
	return SRUP_OK;
}
