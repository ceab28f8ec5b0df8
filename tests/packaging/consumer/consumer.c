/* Uses libsrup as a device maker would: the installed headers only, the
 * message through its getters and setters. Builds a RESPONSE, encodes and
 * decodes it, and names a key error and the library's version. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <srup.h>
#include <srup_keys.h>

int main(void)
{
	struct srup_msg *m = srup_msg_new(SRUP_TYPE_GENERIC);
	uint8_t *wire = NULL;
	size_t len = 0, token_len = 0;
	struct srup_msg *back = NULL;
	const uint8_t *token;
	uint64_t id = 0;
	int ok = m != NULL;

	if (ok) {
		ok = srup_msg_set_sequence_id(m, 7) == SRUP_OK &&
		     srup_msg_set_sender_id(m, 0x5eed) == SRUP_OK &&
		     srup_msg_set_token(m, "t", 1) == SRUP_OK &&
		     srup_msg_encode(m, &wire, &len) == SRUP_OK &&
		     srup_msg_decode(wire, len, &back, NULL) == SRUP_OK &&
		     srup_msg_get_sender_id(back) == 0x5eed &&
		     srup_msg_get_sequence_id(back) == 7 &&
		     (token = srup_msg_token(back, &token_len)) != NULL && token_len == 1 &&
		     token[0] == 't' && srup_id_parse("5eed", &id) == 0 && id == 0x5eed &&
		     strcmp(srup_type_name(srup_msg_get_type(back)), "generic") == 0;
	}
	printf("%s; %s; libsrup %s\n", ok ? "round trip ok" : "round trip FAILED",
	       srup_keys_strerror(SRUP_KEYS_E_PERMISSIONS), srup_version());
	srup_msg_free(back);
	srup_msg_free(m);
	free(wire);
	return ok ? 0 : 1;
}
