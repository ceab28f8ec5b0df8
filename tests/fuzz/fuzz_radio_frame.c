/* libFuzzer target: srup_frame_parse on arbitrary bytes. A parse either
 * fails with one of the frame errors (each of which the bytes justify), or
 * succeeds and encodes back to exactly the input (the frame has one
 * encoding). */
#include <stdint.h>
#include <string.h>

#include "radio.h"

static enum radio_err expected_error(const uint8_t *data, size_t size)
{
	size_t n;

	if (size < SRUP_FRAME_HEADER_LEN)
		return RADIO_E_FRAME_SHORT;
	if (data[0] != SRUP_FRAME_VERSION)
		return RADIO_E_FRAME_VERSION;
	n = (size_t)data[9] << 8 | data[10];
	if (n == 0 || n > SRUP_FRAME_VALUE_MAX)
		return RADIO_E_FRAME_LENGTH;
	if (size != SRUP_FRAME_HEADER_LEN + n)
		return RADIO_E_FRAME_SIZE;
	return RADIO_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct srup_frame frame;
	uint8_t out[SRUP_FRAME_MAX_LEN];
	size_t out_len = 0;
	enum radio_err rc = srup_frame_parse(data, size, &frame);

	if (rc != expected_error(data, size) || !radio_strerror(rc))
		__builtin_trap();
	if (rc == RADIO_OK) {
		if (srup_frame_encode(&frame, out, sizeof(out), &out_len) != RADIO_OK ||
		    out_len != size || memcmp(out, data, size) != 0)
			__builtin_trap();
		srup_frame_wipe(&frame);
	}
	return 0;
}
