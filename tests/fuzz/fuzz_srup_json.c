/* libFuzzer target: srup-msg's JSON input (SRUP-MSG.md), the path `srup-msg
 * encode` takes: cJSON parses the text, srup_json_to_msg walks the codec
 * table over it (with and without the blob, as with --encrypt-for), and
 * the message is encoded. Signing and sealing are left out (they take
 * keys, not input, and cost an RSA operation): a signed type carries the
 * JSON's "signature" as it is, or 256 bytes standing in for one.
 *
 * Checked: a message taken from JSON that encodes decodes to the same
 * bytes, and its JSON (srup_json_from_msg) reads back into a message that
 * encodes to those bytes again; every refusal names a key and says how. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "srup.h"
#include "srup_msg_layout.h"
#include "srup_json.h"

static void check_refusal(enum srup_err rc, const struct srup_json_error *err)
{
	if (rc == SRUP_E_NOMEM)
		return;
	if (rc != SRUP_E_ARG || !err->key || !err->what[0] ||
	    strnlen(err->what, sizeof(err->what)) >= sizeof(err->what))
		__builtin_trap();
}

/* What srup_msg_sign would put in place: the given bytes or a stand-in. */
static void give_signature(struct srup_msg *m, const cJSON *json, const struct srup_bytes *sig)
{
	static const uint8_t stand_in[256] = {0x5a};
	struct srup_json_error jerr = {NULL, ""};

	if (m->type == SRUP_TYPE_GENERIC)
		return;
	if (sig) {
		if (srup_bytes_set(&m->signature, sig->data, sig->len) != SRUP_OK)
			abort();
		return;
	}
	if (srup_json_get_bytes(json, "signature", 1, SRUP_LV16_MAX, &m->signature, &jerr) !=
		    SRUP_OK &&
	    srup_bytes_set(&m->signature, stand_in, sizeof(stand_in)) != SRUP_OK)
		abort();
}

/* A message encoded to wire: the decoder and the JSON writer agree with it. */
static void check_round_trip(const uint8_t *wire, size_t wire_len)
{
	struct srup_decode_error derr;
	struct srup_json_error jerr = {NULL, ""};
	struct srup_msg *decoded = NULL, *again = NULL;
	uint8_t *wire2 = NULL;
	size_t wire2_len = 0;
	cJSON *json;

	if (srup_msg_decode(wire, wire_len, &decoded, &derr) != SRUP_OK)
		__builtin_trap();
	json = srup_json_from_msg(decoded, NULL);
	if (!json)
		goto out; /* out of memory */
	if (srup_json_to_msg(json, false, &again, &jerr) != SRUP_OK)
		__builtin_trap();
	give_signature(again, json, &decoded->signature);
	if (srup_msg_encode(again, &wire2, &wire2_len) != SRUP_OK || wire2_len != wire_len ||
	    memcmp(wire2, wire, wire_len) != 0)
		__builtin_trap();
out:
	free(wire2);
	srup_msg_free(again);
	cJSON_Delete(json);
	srup_msg_free(decoded);
}

static void to_message(const cJSON *json, bool skip_blob)
{
	struct srup_json_error jerr = {NULL, ""};
	struct srup_msg *m = NULL;
	uint8_t *wire = NULL;
	size_t wire_len = 0;
	enum srup_err rc = srup_json_to_msg(json, skip_blob, &m, &jerr);

	if (rc != SRUP_OK) {
		if (m)
			__builtin_trap();
		check_refusal(rc, &jerr);
		return;
	}
	if (skip_blob) {
		struct srup_bytes plaintext = {NULL, 0};

		jerr = (struct srup_json_error){NULL, ""};
		rc = srup_json_get_bytes(json, "plaintext", 1, SRUP_BLOB_MAX_PLAINTEXT, &plaintext,
					 &jerr);
		if (rc == SRUP_OK && (plaintext.len < 1 || plaintext.len > SRUP_BLOB_MAX_PLAINTEXT))
			__builtin_trap();
		if (rc != SRUP_OK)
			check_refusal(rc, &jerr);
		srup_bytes_clear(&plaintext);
	} else {
		give_signature(m, json, NULL);
		if (srup_msg_encode(m, &wire, &wire_len) == SRUP_OK)
			check_round_trip(wire, wire_len);
	}
	free(wire);
	srup_msg_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *end = NULL;
	cJSON *json = cJSON_ParseWithLengthOpts((const char *)data, size, &end, false);

	if (!json)
		return 0;
	to_message(json, false);
	to_message(json, true);
	cJSON_Delete(json);
	return 0;
}
