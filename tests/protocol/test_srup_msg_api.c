/* libsrup's message interface as an application sees it: srup.h and
 * srup_keys.h only, linked against libsrup.so (so that every function used
 * here must be exported). The getters and setters, the constructors,
 * srup_version and the type names. Which type carries which body field is
 * written out here from WIRE.md section 3, not taken from the library. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "srup.h"
#include "srup_keys.h"

#ifndef SRUP_EXPECTED_VERSION
#error "SRUP_EXPECTED_VERSION (the project's version) must be defined by the build"
#endif

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))
#define LAST_TYPE SRUP_TYPE_GROUP_DESTROY

static EVP_PKEY *signing_key;

static int make_key(void **state)
{
	(void)state;
	return srup_key_generate(2048, &signing_key) == SRUP_KEYS_OK ? 0 : -1;
}

static int free_key(void **state)
{
	(void)state;
	EVP_PKEY_free(signing_key);
	return 0;
}

/* ---- WIRE.md section 3: the body of each type ---- */

enum body_field {
	F_STATUS,
	F_ACTION_ID,
	F_DEVICE_ID,
	F_OBSERVER_ID,
	F_JOINING_DEVICE_ID,
	F_URL,
	F_DIGEST,
	F_DATA_ID,
	F_DATA,
	F_GROUP_ID,
	F_ENCRYPTED,
	F__COUNT
};

#define BIT(f) (1u << (f))

static unsigned body_of(uint8_t type)
{
	switch (type) {
	case SRUP_TYPE_INITIATE: return BIT(F_URL) | BIT(F_DIGEST);
	case SRUP_TYPE_RESPONSE: return BIT(F_STATUS);
	case SRUP_TYPE_ACTION: return BIT(F_ACTION_ID);
	case SRUP_TYPE_DATA: return BIT(F_DATA_ID) | BIT(F_DATA);
	case SRUP_TYPE_GROUP_ADD:
	case SRUP_TYPE_GROUP_DELETE: return BIT(F_DEVICE_ID) | BIT(F_GROUP_ID);
	case SRUP_TYPE_JOIN_COMMAND: return BIT(F_DEVICE_ID);
	case SRUP_TYPE_HM_JOIN_RESPONSE:
	case SRUP_TYPE_OBS_JOIN_RESPONSE: return BIT(F_ENCRYPTED);
	case SRUP_TYPE_OBS_JOIN_REQUEST: return BIT(F_OBSERVER_ID);
	case SRUP_TYPE_OBSERVE_REQUEST: return BIT(F_JOINING_DEVICE_ID) | BIT(F_ENCRYPTED);
	case SRUP_TYPE_GROUP_DESTROY: return BIT(F_GROUP_ID);
	default: return 0;
	}
}

/* A distinct value per field, so that a getter reading the wrong member
 * shows. */
static const uint8_t u8_value[F__COUNT] = { [F_STATUS] = 0x6e, [F_ACTION_ID] = 0x2a };
static const uint64_t id_value[F__COUNT] = {
	[F_DEVICE_ID] = 0x1111222233334444ull,
	[F_OBSERVER_ID] = 0x5555666677778888ull,
	[F_JOINING_DEVICE_ID] = 0x99990000aaaabbbbull,
};
static const char *const bytes_value[F__COUNT] = {
	[F_URL] = "https://updates.example/fw.bin", [F_DIGEST] = "0123456789abcdef",
	[F_DATA_ID] = "temperature", [F_DATA] = "21.5",
	[F_GROUP_ID] = "kitchen", [F_ENCRYPTED] = "not really a blob",
};

static enum srup_err set_field(struct srup_msg *m, enum body_field f)
{
	const char *b = bytes_value[f];
	size_t n = b ? strlen(b) : 0;

	switch (f) {
	case F_STATUS: return srup_msg_set_status(m, u8_value[f]);
	case F_ACTION_ID: return srup_msg_set_action_id(m, u8_value[f]);
	case F_DEVICE_ID: return srup_msg_set_device_id(m, id_value[f]);
	case F_OBSERVER_ID: return srup_msg_set_observer_id(m, id_value[f]);
	case F_JOINING_DEVICE_ID: return srup_msg_set_joining_device_id(m, id_value[f]);
	case F_URL: return srup_msg_set_url(m, b, n);
	case F_DIGEST: return srup_msg_set_digest(m, b, n);
	case F_DATA_ID: return srup_msg_set_data_id(m, b, n);
	case F_DATA: return srup_msg_set_data(m, b, n);
	case F_GROUP_ID: return srup_msg_set_group_id(m, b, n);
	case F_ENCRYPTED: return srup_msg_set_encrypted(m, b, n);
	default: return SRUP_E_ARG;
	}
}

static const uint8_t *get_bytes(const struct srup_msg *m, enum body_field f, size_t *len)
{
	switch (f) {
	case F_URL: return srup_msg_url(m, len);
	case F_DIGEST: return srup_msg_digest(m, len);
	case F_DATA_ID: return srup_msg_data_id(m, len);
	case F_DATA: return srup_msg_data(m, len);
	case F_GROUP_ID: return srup_msg_group_id(m, len);
	case F_ENCRYPTED: return srup_msg_encrypted(m, len);
	default: *len = 0; return NULL;
	}
}

/* The field holds the value set_field gives it (present) or reads as
 * empty (absent). */
static void check_field(const struct srup_msg *m, enum body_field f, bool present)
{
	size_t len = 99;
	const uint8_t *p;

	switch (f) {
	case F_STATUS:
		assert_int_equal(srup_msg_get_status(m), present ? u8_value[f] : 0);
		return;
	case F_ACTION_ID:
		assert_int_equal(srup_msg_get_action_id(m), present ? u8_value[f] : 0);
		return;
	case F_DEVICE_ID:
		assert_true(srup_msg_get_device_id(m) == (present ? id_value[f] : 0));
		return;
	case F_OBSERVER_ID:
		assert_true(srup_msg_get_observer_id(m) == (present ? id_value[f] : 0));
		return;
	case F_JOINING_DEVICE_ID:
		assert_true(srup_msg_get_joining_device_id(m) == (present ? id_value[f] : 0));
		return;
	default:
		p = get_bytes(m, f, &len);
		if (!present) {
			assert_null(p);
			assert_int_equal(len, 0);
			return;
		}
		assert_int_equal(len, strlen(bytes_value[f]));
		assert_non_null(p);
		assert_memory_equal(p, bytes_value[f], len);
	}
}

/* ---- tests ---- */

static void test_version_is_the_projects(void **state)
{
	(void)state;
	assert_non_null(srup_version());
	assert_string_equal(srup_version(), SRUP_EXPECTED_VERSION);
}

static void test_type_names(void **state)
{
	static const char *const names[] = {
		"generic", "initiate", "response", "activate", "action", "data", "id_request",
		"group_add", "group_delete", "join_request", "join_command", "hm_join_request",
		"hm_join_response", "obs_join_request", "obs_join_response", "observe_request",
		"resign_request", "terminate_command", "deregister_request", "deregister_command",
		"group_destroy",
	};
	(void)state;
	assert_int_equal(N_OF(names), LAST_TYPE + 1);
	for (unsigned code = 0; code <= 0xff; code++) {
		const char *name = srup_type_name((uint8_t)code);

		if (code < N_OF(names)) {
			assert_non_null(name);
			assert_string_equal(name, names[code]);
			assert_true(srup_type_is_signed((uint8_t)code) == (code != SRUP_TYPE_GENERIC));
		} else {
			assert_null(name);
			assert_false(srup_type_is_signed((uint8_t)code));
		}
	}
	assert_string_equal(srup_status_name(SRUP_STATUS_OBSERVED_JOIN_VALID),
			    "OBSERVED_JOIN_VALID");
	assert_string_not_equal(srup_strerror(SRUP_E_NO_FIELD), "unknown error");
}

/* Every setter answers for exactly its own types; every getter of another
 * type's field reads empty. */
static void test_setters_accept_only_the_types_fields(void **state)
{
	(void)state;
	for (unsigned type = 0; type <= LAST_TYPE; type++) {
		struct srup_msg *m = srup_msg_new((uint8_t)type);
		unsigned body = body_of((uint8_t)type);

		assert_non_null(m);
		assert_int_equal(srup_msg_get_type(m), type);
		assert_int_equal(srup_msg_get_version(m), SRUP_VERSION);
		for (int f = 0; f < F__COUNT; f++) {
			bool mine = body & BIT(f);

			assert_int_equal(set_field(m, (enum body_field)f),
					 mine ? SRUP_OK : SRUP_E_NO_FIELD);
		}
		for (int f = 0; f < F__COUNT; f++)
			check_field(m, (enum body_field)f, body & BIT(f));
		srup_msg_free(m);
	}
}

/* Values set through the setters go on the wire and come back through the
 * getters of the decoded message. */
static void test_round_trip_every_type(void **state)
{
	(void)state;
	for (unsigned type = 0; type <= LAST_TYPE; type++) {
		struct srup_msg *m = srup_msg_new((uint8_t)type), *back = NULL;
		unsigned body = body_of((uint8_t)type);
		uint8_t *wire = NULL;
		size_t wire_len = 0, len = 0;
		const uint8_t *p;

		assert_non_null(m);
		assert_int_equal(srup_msg_set_sequence_id(m, 0x0102030405060708ull + type), SRUP_OK);
		assert_int_equal(srup_msg_set_sender_id(m, 0xfeedface00000000ull | type), SRUP_OK);
		assert_int_equal(srup_msg_set_token(m, "tok-api", 7), SRUP_OK);
		for (int f = 0; f < F__COUNT; f++)
			if (body & BIT(f))
				assert_int_equal(set_field(m, (enum body_field)f), SRUP_OK);
		if (srup_type_is_signed((uint8_t)type))
			assert_int_equal(srup_msg_sign(m, signing_key), SRUP_OK);
		assert_int_equal(srup_msg_encode(m, &wire, &wire_len), SRUP_OK);
		assert_int_equal(srup_msg_decode(wire, wire_len, &back, NULL), SRUP_OK);

		assert_int_equal(srup_msg_get_type(back), type);
		assert_int_equal(srup_msg_get_version(back), SRUP_VERSION);
		assert_true(srup_msg_get_sequence_id(back) == 0x0102030405060708ull + type);
		assert_true(srup_msg_get_sender_id(back) == (0xfeedface00000000ull | type));
		p = srup_msg_token(back, &len);
		assert_int_equal(len, 7);
		assert_memory_equal(p, "tok-api", 7);
		if (srup_type_is_signed((uint8_t)type)) {
			p = srup_msg_signature(back, &len);
			assert_int_equal(len, 256);
			assert_non_null(p);
			assert_int_equal(srup_msg_verify(back, signing_key), SRUP_OK);
		}
		/* GENERIC carries only the common prefix. */
		if (type != SRUP_TYPE_GENERIC)
			for (int f = 0; f < F__COUNT; f++)
				check_field(back, (enum body_field)f, body & BIT(f));
		srup_msg_free(back);
		srup_msg_free(m);
		free(wire);
	}
}

/* A signature made elsewhere over the pre-sign bytes (as by an HSM) is set
 * with srup_msg_set_signature and verifies; a changed field then fails. */
static void test_signature_set_from_outside(void **state)
{
	struct srup_msg *signer = srup_msg_new_response(SRUP_STATUS_JOIN_SUCCESS);
	struct srup_msg *m = srup_msg_new_response(SRUP_STATUS_JOIN_SUCCESS);
	const uint8_t *sig;
	size_t sig_len = 0;

	(void)state;
	assert_non_null(signer);
	assert_non_null(m);
	assert_int_equal(srup_msg_set_token(signer, "t", 1), SRUP_OK);
	assert_int_equal(srup_msg_set_token(m, "t", 1), SRUP_OK);
	assert_int_equal(srup_msg_sign(signer, signing_key), SRUP_OK);
	sig = srup_msg_signature(signer, &sig_len);
	assert_int_equal(sig_len, 256);

	assert_int_equal(srup_msg_verify(m, signing_key), SRUP_E_UNSIGNED);
	assert_int_equal(srup_msg_set_signature(m, sig, sig_len), SRUP_OK);
	assert_int_equal(srup_msg_verify(m, signing_key), SRUP_OK);
	assert_int_equal(srup_msg_set_status(m, SRUP_STATUS_JOIN_FAIL), SRUP_OK);
	assert_int_equal(srup_msg_verify(m, signing_key), SRUP_E_BAD_SIGNATURE);
	srup_msg_free(signer);
	srup_msg_free(m);
}

static void test_constructors(void **state)
{
	static const uint8_t reading[] = { 0x00, 0x15, 0xff };
	struct srup_msg *m;
	const uint8_t *p;
	size_t len = 0;

	(void)state;
	m = srup_msg_new_response(SRUP_STATUS_OBSERVED_JOIN_VALID);
	assert_non_null(m);
	assert_int_equal(srup_msg_get_type(m), SRUP_TYPE_RESPONSE);
	assert_int_equal(srup_msg_get_version(m), SRUP_VERSION);
	assert_int_equal(srup_msg_get_status(m), SRUP_STATUS_OBSERVED_JOIN_VALID);
	assert_null(srup_msg_token(m, &len));
	assert_int_equal(len, 0);
	srup_msg_free(m);

	m = srup_msg_new_action(0x2a);
	assert_non_null(m);
	assert_int_equal(srup_msg_get_type(m), SRUP_TYPE_ACTION);
	assert_int_equal(srup_msg_get_action_id(m), 0x2a);
	srup_msg_free(m);

	m = srup_msg_new_data("sensor-7", reading, sizeof(reading));
	assert_non_null(m);
	assert_int_equal(srup_msg_get_type(m), SRUP_TYPE_DATA);
	p = srup_msg_data_id(m, &len);
	assert_int_equal(len, 8); /* no terminator on the wire */
	assert_memory_equal(p, "sensor-7", 8);
	p = srup_msg_data(m, &len);
	assert_int_equal(len, sizeof(reading));
	assert_memory_equal(p, reading, sizeof(reading));
	srup_msg_free(m);

	m = srup_msg_new_data("empty", NULL, 0);
	assert_non_null(m);
	assert_null(srup_msg_data(m, NULL)); /* len may be NULL */
	srup_msg_free(m);

	assert_null(srup_msg_new_data(NULL, reading, sizeof(reading)));
	assert_null(srup_msg_new_data("id", NULL, 3));
}

static void test_bad_arguments(void **state)
{
	static uint8_t big[SRUP_LV16_MAX + 1];
	struct srup_msg *m = srup_msg_new(SRUP_TYPE_DATA);
	struct srup_msg *generic = srup_msg_new(SRUP_TYPE_GENERIC);
	size_t len = 99;

	(void)state;
	assert_non_null(m);
	assert_non_null(generic);
	/* A NULL message: setters refuse, getters read nothing. */
	assert_int_equal(srup_msg_set_sequence_id(NULL, 1), SRUP_E_ARG);
	assert_int_equal(srup_msg_set_sender_id(NULL, 1), SRUP_E_ARG);
	assert_int_equal(srup_msg_set_token(NULL, "t", 1), SRUP_E_ARG);
	assert_int_equal(srup_msg_set_signature(NULL, "s", 1), SRUP_E_ARG);
	assert_int_equal(srup_msg_set_status(NULL, 1), SRUP_E_ARG);
	assert_int_equal(srup_msg_set_device_id(NULL, 1), SRUP_E_ARG);
	assert_int_equal(srup_msg_set_data(NULL, "d", 1), SRUP_E_ARG);
	assert_int_equal(srup_msg_get_type(NULL), 0);
	assert_int_equal(srup_msg_get_version(NULL), 0);
	assert_true(srup_msg_get_sender_id(NULL) == 0);
	assert_true(srup_msg_get_device_id(NULL) == 0);
	assert_null(srup_msg_token(NULL, &len));
	assert_int_equal(len, 0);
	len = 99;
	assert_null(srup_msg_data(NULL, &len));
	assert_int_equal(len, 0);

	/* NULL bytes with a length; longer than a u16 length can say. */
	assert_int_equal(srup_msg_set_token(m, NULL, 1), SRUP_E_ARG);
	assert_int_equal(srup_msg_set_data(m, NULL, 1), SRUP_E_ARG);
	assert_int_equal(srup_msg_set_token(m, big, sizeof(big)), SRUP_E_FIELD_BOUND);
	assert_int_equal(srup_msg_set_data(m, big, sizeof(big)), SRUP_E_FIELD_BOUND);
	assert_int_equal(srup_msg_set_data(m, big, SRUP_LV16_MAX), SRUP_OK);
	assert_int_equal(srup_msg_set_signature(m, big, sizeof(big)), SRUP_E_FIELD_BOUND);

	/* GENERIC has no signature to set. */
	assert_int_equal(srup_msg_set_signature(generic, "s", 1), SRUP_E_NO_FIELD);
	assert_int_equal(srup_msg_set_token(generic, "t", 1), SRUP_OK);

	/* A token set again replaces the old one; set empty, it is gone. */
	assert_int_equal(srup_msg_set_token(m, "first-token", 11), SRUP_OK);
	assert_int_equal(srup_msg_set_token(m, "2nd", 3), SRUP_OK);
	assert_memory_equal(srup_msg_token(m, &len), "2nd", 3);
	assert_int_equal(len, 3);
	assert_int_equal(srup_msg_set_token(m, NULL, 0), SRUP_OK);
	assert_null(srup_msg_token(m, &len));
	assert_int_equal(len, 0);
	srup_msg_free(generic);
	srup_msg_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version_is_the_projects),
		cmocka_unit_test(test_type_names),
		cmocka_unit_test(test_setters_accept_only_the_types_fields),
		cmocka_unit_test(test_round_trip_every_type),
		cmocka_unit_test(test_signature_set_from_outside),
		cmocka_unit_test(test_constructors),
		cmocka_unit_test(test_bad_arguments),
	};
	return cmocka_run_group_tests(tests, make_key, free_key);
}
