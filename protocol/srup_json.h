/* The JSON side of the codec table (SRUP-MSG.md): a struct srup_msg to
 * and from a cJSON object. Both directions walk srup_type_desc and
 * srup_field_desc, so a type added to the table needs no code here.
 *
 * Byte fields are lowercase hex strings, 64-bit IDs 16 zero-padded
 * lowercase hex digits, u8 fields JSON numbers. */
#ifndef SRUP_JSON_H
#define SRUP_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "srup.h"

/* Which key of a JSON message was wrong, and how. */
struct srup_json_error {
	const char *key;  /* "type", "token", "observer_id", ... (static storage) */
	char what[200];   /* "missing", "not a hex string", ... */
};

/* m as a JSON object: the common keys, signature_valid if given (NULL to
 * leave it out), then the type's fields in table order. Readable extras are
 * added: token_text and <field>_text for printable byte fields (not the
 * blob), status_name; on an INITIATE whose url or digest ends in the one
 * terminator WIRE.md Q8 allows, <field>_terminated (true) and <field>_text
 * of the bytes before it. NULL when out of memory or m's type is unknown. */
cJSON *srup_json_from_msg(struct srup_msg *m, const bool *signature_valid);

/* An unsigned message from a JSON object. Required: type, version (5),
 * sequence_id, sender_id, token and every field of the type; keys not
 * known are ignored. With skip_blob the blob field is left empty (the
 * caller seals "plaintext" into it instead of reading "encrypted").
 * SRUP_E_ARG with err filled for bad JSON, SRUP_E_NOMEM. */
enum srup_err srup_json_to_msg(const cJSON *obj, bool skip_blob, struct srup_msg **out,
			       struct srup_json_error *err);

/* The hex string under key, as bytes of min_len..max_len. */
enum srup_err srup_json_get_bytes(const cJSON *obj, const char *key, size_t min_len,
				  size_t max_len, struct srup_bytes *out,
				  struct srup_json_error *err);

#endif
