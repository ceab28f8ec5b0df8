/* libFuzzer target: srup_msg_decode on arbitrary bytes. A decode either
 * fails with an error naming a field inside the input, or succeeds and then
 * re-encodes to exactly the input (the decoder is strict, so encoding is
 * canonical) with pre-sign bytes equal to the input minus the signature. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "srup.h"
#include "srup_msg_layout.h"

static void check_presign(const struct srup_msg *m, const uint8_t *data, size_t size)
{
	size_t sig_at = 20 + m->token.len, sig_end = sig_at + 2 + m->signature.len;
	uint8_t *pre = NULL;
	size_t pre_len = 0;

	if (srup_msg_presign(m, &pre, &pre_len) != SRUP_OK || sig_end > size ||
	    pre_len != size - (sig_end - sig_at) || memcmp(pre, data, sig_at) != 0 ||
	    memcmp(pre + sig_at, data + sig_end, size - sig_end) != 0)
		__builtin_trap();
	free(pre);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct srup_decode_error err;
	struct srup_msg *m = NULL, *again = NULL;
	uint8_t *out = NULL;
	size_t out_len = 0;
	enum srup_err rc = srup_msg_decode(data, size, &m, &err);

	if (rc != SRUP_OK) {
		if (m || err.err != rc || !err.field || err.offset > size)
			__builtin_trap();
		return 0;
	}
	if (srup_msg_encode(m, &out, &out_len) != SRUP_OK || out_len != size ||
	    memcmp(out, data, size) != 0)
		__builtin_trap();
	if (m->type != SRUP_TYPE_GENERIC)
		check_presign(m, data, size);
	/* The typed parse agrees with the dispatching one. */
	if (srup_msg_decode_as(out, out_len, m->type, &again, NULL) != SRUP_OK)
		__builtin_trap();
	srup_msg_free(again);
	free(out);
	srup_msg_free(m);
	return 0;
}
