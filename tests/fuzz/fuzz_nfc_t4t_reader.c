/* libFuzzer target: the NFC observer's read of a Type 4 Tag, with the tag's
 * answers taken from the input. The input is the R-APDUs the tag sends, in
 * order, each as a big-endian u16 length and that many bytes; a length over
 * the reader's buffer is an answer too long for it (as libnfc reports), and
 * the end of the input is the tag leaving the field. What the reader reads
 * then goes where radio_nfc.c sends it: the NDEF record search and the
 * frame parser.
 *
 * Checked: every C-APDU the reader sends is a well-formed short APDU of
 * the kind the sequence allows; a read that succeeds returns exactly NLEN
 * bytes within the buffer; the record found lies inside the message; why
 * is always a terminated string. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "nfc_t4t.h"
#include "radio.h"

struct tag_answers {
	const uint8_t *data;
	size_t size;
	size_t off;
};

static void check_capdu(const uint8_t *capdu, size_t clen)
{
	if (clen < 5 || clen > NFC_T4T_CAPDU_MAX || capdu[0] != 0x00)
		__builtin_trap();
	switch (capdu[1]) {
	case 0xA4: /* SELECT: Lc data, then Le only for the application */
		if (clen != 5u + capdu[4] && clen != 6u + capdu[4])
			__builtin_trap();
		break;
	case 0xB0: /* READ BINARY: 15-bit offset, Le 1..255 */
		if (clen != 5 || (capdu[2] & 0x80) || capdu[4] == 0)
			__builtin_trap();
		break;
	default:
		__builtin_trap();
	}
}

static enum radio_err answer(void *user, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
			     size_t rcap, size_t *rlen, char *why, size_t why_len)
{
	struct tag_answers *t = user;
	size_t n;

	check_capdu(capdu, clen);
	if (t->size - t->off < 2) {
		snprintf(why, why_len, "tag gone");
		return RADIO_E_TIMEOUT;
	}
	n = (size_t)t->data[t->off] << 8 | t->data[t->off + 1];
	t->off += 2;
	if (n > rcap) {
		snprintf(why, why_len, "answer longer than %zu bytes", rcap);
		return RADIO_E_PROTOCOL;
	}
	if (n > t->size - t->off)
		n = t->size - t->off;
	memcpy(rapdu, t->data + t->off, n);
	t->off += n;
	*rlen = n;
	return RADIO_OK;
}

static void check_why(const char *why, size_t why_len)
{
	if (strnlen(why, why_len) >= why_len)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tag_answers t = {.data = data, .size = size};
	static uint8_t msg[NFC_T4T_MESSAGE_MAX];
	const uint8_t *payload = NULL;
	size_t msg_len = 0, payload_len = 0;
	struct srup_frame frame;
	char why[200] = "";
	enum radio_err err;

	err = nfc_t4t_read_ndef(answer, &t, msg, sizeof(msg), &msg_len, why, sizeof(why));
	check_why(why, sizeof(why));
	if (err != RADIO_OK) {
		if (msg_len != 0)
			__builtin_trap();
		return 0;
	}
	if (msg_len == 0 || msg_len > sizeof(msg))
		__builtin_trap();
	err = nfc_ndef_find_confirmation(msg, msg_len, &payload, &payload_len, why, sizeof(why));
	check_why(why, sizeof(why));
	if (err != RADIO_OK)
		return 0;
	if (payload < msg || payload_len > msg_len || (size_t)(payload - msg) > msg_len - payload_len)
		__builtin_trap();
	if (srup_frame_parse(payload, payload_len, &frame) == RADIO_OK)
		srup_frame_wipe(&frame);
	return 0;
}
