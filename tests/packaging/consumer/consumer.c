/* Uses libsrup as a device maker would: the installed headers only. Builds
 * a RESPONSE, encodes and decodes it, and names a key error. */
#include <stdio.h>
#include <stdlib.h>

#include <srup.h>
#include <srup_hex.h>
#include <srup_keys.h>

int main(void)
{
	struct srup_msg *m = srup_msg_new(SRUP_TYPE_GENERIC);
	uint8_t *wire = NULL;
	size_t len = 0;
	struct srup_msg *back = NULL;
	uint64_t id = 0;
	int ok = m != NULL;

	if (ok) {
		m->sequence_id = 7;
		m->sender_id = 0x5eed;
		ok = srup_bytes_set(&m->token, "t", 1) == SRUP_OK &&
		     srup_msg_encode(m, &wire, &len) == SRUP_OK &&
		     srup_msg_decode(wire, len, &back, NULL) == SRUP_OK &&
		     back->sender_id == 0x5eed && srup_hex_parse_id("5eed", &id) == 0 && id == 0x5eed;
	}
	printf("%s; %s\n", ok ? "round trip ok" : "round trip FAILED",
	       srup_keys_strerror(SRUP_KEYS_E_PERMISSIONS));
	srup_msg_free(back);
	srup_msg_free(m);
	free(wire);
	return ok ? 0 : 1;
}
