/* Error strings and RESPONSE status names. */
#include "srup.h"

static const char *const srup_err_text[SRUP_E__COUNT] = {
	[SRUP_OK] = "success",
	[SRUP_E_NOMEM] = "out of memory",
	[SRUP_E_ARG] = "invalid argument",
	[SRUP_E_TRUNCATED] = "input ends inside a field",
	[SRUP_E_TRAILING] = "bytes left over after the last field",
	[SRUP_E_VERSION] = "protocol version is not 5",
	[SRUP_E_TYPE] = "unknown message type",
	[SRUP_E_WRONG_TYPE] = "message is not of the expected type",
	[SRUP_E_FIELD_BOUND] = "field length out of bounds",
	[SRUP_E_UNSIGNED] = "message has no signature",
	[SRUP_E_SIG_LENGTH] = "signature length differs from the key size",
	[SRUP_E_BAD_SIGNATURE] = "signature does not verify",
	[SRUP_E_KEY] = "key is not RSA of 2048 to 4096 bits",
	[SRUP_E_CRYPTO] = "cryptographic operation failed",
	[SRUP_E_NO_BLOB] = "message type carries no encrypted blob",
	[SRUP_E_BLOB_FORMAT] = "encrypted blob lengths are inconsistent",
	[SRUP_E_DECRYPT] = "encrypted blob does not decrypt",
	[SRUP_E_FIELD_VALUE] = "field contents are not valid",
	[SRUP_E_NO_FIELD] = "message type carries no such field",
};

const char *srup_strerror(enum srup_err err)
{
	if ((unsigned)err >= SRUP_E__COUNT || !srup_err_text[err])
		return "unknown error";
	return srup_err_text[err];
}

struct srup_status_row {
	uint8_t code;
	const char *name;
};

static const struct srup_status_row srup_status_table[] = {
	{ SRUP_STATUS_UPDATE_SUCCESS, "UPDATE_SUCCESS" },
	{ SRUP_STATUS_ACTIVATE_SUCCESS, "ACTIVATE_SUCCESS" },
	{ SRUP_STATUS_ACTIVATE_FAIL, "ACTIVATE_FAIL" },
	{ SRUP_STATUS_ACTION_SUCCESS, "ACTION_SUCCESS" },
	{ SRUP_STATUS_ACTION_UNKNOWN, "ACTION_UNKNOWN" },
	{ SRUP_STATUS_ACTION_FAIL, "ACTION_FAIL" },
	{ SRUP_STATUS_DATA_TYPE_UNKNOWN, "DATA_TYPE_UNKNOWN" },
	{ SRUP_STATUS_JOIN_SUCCESS, "JOIN_SUCCESS" },
	{ SRUP_STATUS_JOIN_REFUSED, "JOIN_REFUSED" },
	{ SRUP_STATUS_JOIN_FAIL, "JOIN_FAIL" },
	{ SRUP_STATUS_OBSERVED_JOIN_VALID, "OBSERVED_JOIN_VALID" },
	{ SRUP_STATUS_OBSERVED_JOIN_INVALID, "OBSERVED_JOIN_INVALID" },
	{ SRUP_STATUS_OBSERVED_JOIN_FAIL, "OBSERVED_JOIN_FAIL" },
	{ SRUP_STATUS_RESIGN_SUCCESS, "RESIGN_SUCCESS" },
	{ SRUP_STATUS_RESIGN_FAIL, "RESIGN_FAIL" },
	{ SRUP_STATUS_DEREGISTER_SUCCESS, "DEREGISTER_SUCCESS" },
	{ SRUP_STATUS_DEREGISTER_FAIL, "DEREGISTER_FAIL" },
	{ SRUP_STATUS_UPDATE_FAIL_HTTP_ERROR, "UPDATE_FAIL_HTTP_ERROR" },
	{ SRUP_STATUS_UPDATE_FAIL_SERVER, "UPDATE_FAIL_SERVER" },
	{ SRUP_STATUS_UPDATE_FAIL_FILE, "UPDATE_FAIL_FILE" },
	{ SRUP_STATUS_UPDATE_FAIL_DIGEST, "UPDATE_FAIL_DIGEST" },
};

const char *srup_status_name(uint8_t status)
{
	for (size_t i = 0; i < sizeof srup_status_table / sizeof srup_status_table[0]; i++)
		if (srup_status_table[i].code == status)
			return srup_status_table[i].name;
	return NULL;
}
