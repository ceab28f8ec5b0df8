/* libsrup codec: the type table, round trips of every type at its bounds,
 * the byte order, malformed input of every class, and guards G1, G2, G6,
 * G7 and G8 of WIRE.md (the crypto guards are in test_srup_crypto.c). */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "srup.h"
#include "srup_hex.h"
#include "srup_test_util.h"

#define N_TYPES (SRUP_TYPE_GROUP_DESTROY + 1)

static const char *const type_names[N_TYPES] = {
	"generic", "initiate", "response", "activate", "action", "data", "id_request",
	"group_add", "group_delete", "join_request", "join_command", "hm_join_request",
	"hm_join_response", "obs_join_request", "obs_join_response", "observe_request",
	"resign_request", "terminate_command", "deregister_request", "deregister_command",
	"group_destroy",
};

/* WIRE.md section 3, "wire length" column with every variable field empty
 * and the token not counted (RSA-2048, 256-byte signature). */
static const size_t wire_fixed_len[N_TYPES] = {
	20, 282, 279, 278, 279, 282, 278, 288, 288, 278, 286,
	278, 280, 286, 280, 288, 278, 278, 278, 278, 280,
};

/* Body field names per type, in wire order, as in SRUP-MSG.md. */
static const char *const body_fields[N_TYPES][3] = {
	[SRUP_TYPE_INITIATE] = { "url", "digest" },
	[SRUP_TYPE_RESPONSE] = { "status" },
	[SRUP_TYPE_ACTION] = { "action_id" },
	[SRUP_TYPE_DATA] = { "data_id", "data" },
	[SRUP_TYPE_GROUP_ADD] = { "device_id", "group_id" },
	[SRUP_TYPE_GROUP_DELETE] = { "device_id", "group_id" },
	[SRUP_TYPE_JOIN_COMMAND] = { "device_id" },
	[SRUP_TYPE_HM_JOIN_RESPONSE] = { "encrypted" },
	[SRUP_TYPE_OBS_JOIN_REQUEST] = { "observer_id" },
	[SRUP_TYPE_OBS_JOIN_RESPONSE] = { "encrypted" },
	[SRUP_TYPE_OBSERVE_REQUEST] = { "joining_device_id", "encrypted" },
	[SRUP_TYPE_GROUP_DESTROY] = { "group_id" },
};

static uint8_t *encode_ok(const struct srup_msg *m, size_t *len)
{
	uint8_t *buf = NULL;

	assert_int_equal(srup_msg_encode(m, &buf, len), SRUP_OK);
	assert_non_null(buf);
	return buf;
}

static void test_table_one_row_per_type(void **state)
{
	(void)state;
	for (unsigned code = 0; code < N_TYPES; code++) {
		const struct srup_type_desc *t = srup_type_by_code((uint8_t)code);
		size_t n = 0;

		assert_non_null(t);
		assert_int_equal(t->code, code);
		assert_string_equal(t->name, type_names[code]);
		assert_ptr_equal(srup_type_by_name(type_names[code]), t);
		assert_int_equal(t->is_signed, code != SRUP_TYPE_GENERIC);
		while (n < 3 && body_fields[code][n])
			n++;
		assert_int_equal(t->n_fields, n);
		for (size_t i = 0; i < n; i++)
			assert_string_equal(t->fields[i].name, body_fields[code][i]);
		if (code == SRUP_TYPE_HM_JOIN_RESPONSE || code == SRUP_TYPE_OBS_JOIN_RESPONSE ||
		    code == SRUP_TYPE_OBSERVE_REQUEST) {
			const struct srup_field_desc *f = srup_type_blob_field(t);

			assert_non_null(f);
			assert_string_equal(f->name, "encrypted");
			assert_int_equal(f->kind, SRUP_FIELD_LV16);
			assert_true(f->is_blob);
		} else {
			assert_null(srup_type_blob_field(t));
		}
	}
	assert_null(srup_type_by_code(0x15));
	assert_null(srup_type_by_code(0x21));
	assert_null(srup_type_by_code(0xFF));
	assert_null(srup_type_by_name("syndication_init"));
	assert_null(srup_type_by_name(NULL));
}

static void test_wire_length_per_type(void **state)
{
	(void)state;
	for (unsigned code = 0; code < N_TYPES; code++) {
		struct srup_msg *m = tu_make_msg((uint8_t)code, 7, 1, 9, 0, 256);
		size_t len;
		uint8_t *buf;

		assert_non_null(m);
		buf = encode_ok(m, &len);
		assert_int_equal(len, wire_fixed_len[code] + 9);
		free(buf);
		srup_msg_free(m);
	}
}

static void test_byte_order_ids_le_lengths_be(void **state)
{
	struct srup_msg *m = tu_make_msg(SRUP_TYPE_OBSERVE_REQUEST, 0, 0, 0x0102, 0x0304, 256);
	static const uint8_t seq_le[8] = { 8, 7, 6, 5, 4, 3, 2, 1 };
	static const uint8_t sender_le[8] = { 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11 };
	static const uint8_t joining_le[8] = { 0xc8, 0xc7, 0xc6, 0xc5, 0xc4, 0xc3, 0xc2, 0xc1 };
	size_t len, at;
	uint8_t *buf;

	(void)state;
	assert_non_null(m);
	m->sequence_id = 0x0102030405060708ull;
	m->sender_id = 0x1122334455667788ull;
	m->joining_device_id = 0xc1c2c3c4c5c6c7c8ull;
	buf = encode_ok(m, &len);
	assert_int_equal(buf[0], 0x05);
	assert_int_equal(buf[1], 0x0F);
	assert_memory_equal(buf + 2, seq_le, 8);
	assert_memory_equal(buf + 10, sender_le, 8);
	assert_int_equal(buf[18], 0x01);
	assert_int_equal(buf[19], 0x02);
	at = 20 + 0x0102;
	assert_int_equal(buf[at], 0x01); /* signature length 256, big-endian */
	assert_int_equal(buf[at + 1], 0x00);
	at += 2 + 256;
	assert_memory_equal(buf + at, joining_le, 8);
	assert_int_equal(buf[at + 8], 0x03);
	assert_int_equal(buf[at + 9], 0x04);
	assert_int_equal(len, at + 10 + 0x0304);
	free(buf);
	srup_msg_free(m);
}

/* Encode, decode, compare every field, re-encode to the same bytes, and
 * check the pre-sign bytes are the wire bytes without sig_len and sig. */
static void round_trip(const struct srup_msg *m)
{
	struct srup_decode_error e;
	struct srup_msg *back = NULL;
	uint8_t *buf, *again, *pre = NULL;
	size_t len, len2, pre_len = 0;

	buf = encode_ok(m, &len);
	assert_int_equal(srup_msg_decode(buf, len, &back, &e), SRUP_OK);
	assert_int_equal(e.err, SRUP_OK);
	assert_non_null(back);
	assert_true(tu_msg_equal(m, back));
	again = encode_ok(back, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, again, len);
	if (m->type != SRUP_TYPE_GENERIC) {
		size_t sig_at = 20 + m->token.len, sig_end = sig_at + 2 + m->signature.len;

		assert_int_equal(srup_msg_presign(back, &pre, &pre_len), SRUP_OK);
		assert_int_equal(pre_len, len - 2 - m->signature.len);
		assert_memory_equal(pre, buf, sig_at);
		assert_memory_equal(pre + sig_at, buf + sig_end, len - sig_end);
		free(pre);
	} else {
		assert_int_equal(srup_msg_presign(back, &pre, &pre_len), SRUP_E_UNSIGNED);
		assert_null(pre);
	}
	free(again);
	free(buf);
	srup_msg_free(back);
}

static void test_round_trip_every_type_at_bounds(void **state)
{
	static const uint64_t ids[] = { 0, UINT64_MAX, 0x0102030405060708ull, 0x00000000000000ffull };
	static const size_t tokens[] = { 1, SRUP_LV16_MAX };
	static const size_t fields[] = { 0, 1, SRUP_LV16_MAX };
	static const size_t sigs[] = { SRUP_SIG_MIN_BYTES, 384, SRUP_SIG_MAX_BYTES };
	static const uint8_t bytes[] = { 0x00, 0x2a, 0xff };

	(void)state;
	for (unsigned code = 0; code < N_TYPES; code++)
		for (size_t a = 0; a < sizeof ids / sizeof ids[0]; a++)
			for (size_t b = 0; b < sizeof tokens / sizeof tokens[0]; b++)
				for (size_t c = 0; c < sizeof fields / sizeof fields[0]; c++)
					for (size_t d = 0; d < sizeof sigs / sizeof sigs[0]; d++) {
						struct srup_msg *m = tu_make_msg(
							(uint8_t)code, ids[a], bytes[(a + d) % 3],
							tokens[b], fields[c], sigs[d]);

						assert_non_null(m);
						round_trip(m);
						srup_msg_free(m);
					}
}

/* ---- malformed input ---- */

static void expect_decode_error(const uint8_t *buf, size_t len, enum srup_err err,
				const char *field, size_t offset)
{
	struct srup_decode_error e;
	struct srup_msg *m = (struct srup_msg *)1;

	assert_int_equal(srup_msg_decode(buf, len, &m, &e), err);
	assert_null(m);
	assert_int_equal(e.err, err);
	assert_non_null(e.field);
	assert_string_equal(e.field, field);
	assert_int_equal(e.offset, offset);
}

static uint8_t *sample(uint8_t code, size_t token_len, size_t field_len, size_t *len)
{
	struct srup_msg *m = tu_make_msg(code, 0x0102030405060708ull, 0x50, token_len, field_len,
					 256);
	uint8_t *buf;

	assert_non_null(m);
	buf = encode_ok(m, len);
	srup_msg_free(m);
	return buf;
}

struct span {
	const char *name;
	size_t start, end; /* [start, end) */
	size_t prefix;     /* 2 for lv16 (the length), else 0 */
};

/* The byte ranges of each field of a message made by sample(), worked out
 * from WIRE.md rather than from the codec. */
static size_t spans_of(uint8_t code, size_t token_len, size_t field_len, struct span *s)
{
	const struct srup_type_desc *t = srup_type_by_code(code);
	size_t n = 0, at = 0;

	s[n++] = (struct span){ "version", 0, 1, 0 };
	s[n++] = (struct span){ "type", 1, 2, 0 };
	s[n++] = (struct span){ "sequence_id", 2, 10, 0 };
	s[n++] = (struct span){ "sender_id", 10, 18, 0 };
	s[n++] = (struct span){ "token", 18, 20 + token_len, 2 };
	at = 20 + token_len;
	if (code != SRUP_TYPE_GENERIC) {
		s[n++] = (struct span){ "signature", at, at + 2 + 256, 2 };
		at += 2 + 256;
	}
	for (size_t i = 0; i < t->n_fields; i++) {
		size_t w = t->fields[i].kind == SRUP_FIELD_U8	 ? 1 :
			   t->fields[i].kind == SRUP_FIELD_ID64 ? 8 :
								  2 + field_len;
		s[n++] = (struct span){ t->fields[i].name, at, at + w,
					t->fields[i].kind == SRUP_FIELD_LV16 ? 2 : 0 };
		at += w;
	}
	return n;
}

/* G1: a message cut anywhere fails with TRUNCATED, naming the field it was
 * cut in, its offset, and the bytes it needed against those it had. */
static void test_g1_every_truncation_of_every_type_names_the_field(void **state)
{
	(void)state;
	for (unsigned code = 0; code < N_TYPES; code++) {
		struct span spans[10];
		size_t n, len;
		uint8_t *buf = sample((uint8_t)code, 5, 3, &len);

		n = spans_of((uint8_t)code, 5, 3, spans);
		assert_int_equal(spans[n - 1].end, len);
		for (size_t cut = 0; cut < len; cut++) {
			struct srup_decode_error e;
			struct srup_msg *m = NULL;
			size_t i = 0;

			while (!(spans[i].start <= cut && cut < spans[i].end))
				i++;
			/* A copy of exactly cut bytes, so ASan sees any over-read. */
			uint8_t *part = malloc(cut ? cut : 1);
			memcpy(part, buf, cut);
			assert_int_equal(srup_msg_decode(part, cut, &m, &e), SRUP_E_TRUNCATED);
			assert_null(m);
			assert_string_equal(e.field, spans[i].name);
			assert_int_equal(e.offset, spans[i].start);
			if (spans[i].prefix && cut < spans[i].start + 2)
				assert_int_equal(e.need, 2);
			else
				assert_int_equal(e.need, spans[i].end - spans[i].start);
			assert_int_equal(e.have, cut - spans[i].start);
			free(part);
		}
		free(buf);
	}
}

static void test_malformed_short_input(void **state)
{
	static const uint8_t one[] = { 0x05 };

	(void)state;
	expect_decode_error(NULL, 0, SRUP_E_TRUNCATED, "version", 0);
	expect_decode_error(one, 1, SRUP_E_TRUNCATED, "type", 1);
}

static void test_malformed_token_length_past_end(void **state)
{
	size_t len;
	uint8_t *buf = sample(SRUP_TYPE_ACTIVATE, 4, 0, &len);

	(void)state;
	buf[18] = 0xFF;
	buf[19] = 0xFF;
	expect_decode_error(buf, len, SRUP_E_TRUNCATED, "token", 18);
	free(buf);
}

static void test_malformed_body_length_past_end(void **state)
{
	size_t len, url_at = 20 + 4 + 2 + 256;
	uint8_t *buf = sample(SRUP_TYPE_INITIATE, 4, 10, &len);

	(void)state;
	buf[url_at + 1] = 11; /* url says 11 bytes; digest then runs off the end */
	expect_decode_error(buf, len, SRUP_E_TRUNCATED, "digest", url_at + 2 + 11);
	buf[url_at] = 0x80; /* url says 0x800b bytes */
	expect_decode_error(buf, len, SRUP_E_TRUNCATED, "url", url_at);
	free(buf);
}

static void test_malformed_signature_length_past_end(void **state)
{
	size_t len;
	uint8_t *buf = sample(SRUP_TYPE_TERMINATE_COMMAND, 4, 0, &len);

	(void)state;
	buf[24] = 0x01; /* 257: within bounds, but only 256 bytes are there */
	buf[25] = 0x01;
	expect_decode_error(buf, len, SRUP_E_TRUNCATED, "signature", 24);
	free(buf);
}

static void test_malformed_trailing_bytes_every_type(void **state)
{
	(void)state;
	for (unsigned code = 0; code < N_TYPES; code++) {
		size_t len;
		uint8_t *buf = sample((uint8_t)code, 3, 2, &len);
		uint8_t *longer = malloc(len + 3);
		struct srup_decode_error e;
		struct srup_msg *m = NULL;

		memcpy(longer, buf, len);
		memset(longer + len, 0, 3);
		expect_decode_error(longer, len + 1, SRUP_E_TRAILING, "message", len);
		assert_int_equal(srup_msg_decode(longer, len + 3, &m, &e), SRUP_E_TRAILING);
		assert_int_equal(e.have, 3);
		free(longer);
		free(buf);
	}
}

static void test_malformed_generic_has_nothing_after_token(void **state)
{
	/* A GENERIC header followed by what would be a signature length. */
	static const uint8_t msg[] = { 0x05, 0x00, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0,
				       0, 0x00, 0x01, 'x', 0x01, 0x00 };
	struct srup_msg *m = NULL;

	(void)state;
	expect_decode_error(msg, sizeof msg, SRUP_E_TRAILING, "message", 21);
	assert_int_equal(srup_msg_decode(msg, 21, &m, NULL), SRUP_OK);
	assert_int_equal(m->type, SRUP_TYPE_GENERIC);
	assert_int_equal(m->sequence_id, 1);
	assert_int_equal(m->sender_id, 2);
	assert_int_equal(m->signature.len, 0);
	srup_msg_free(m);
}

static void test_malformed_version(void **state)
{
	static const uint8_t bad[] = { 0x00, 0x04, 0x06, 0x50, 0xFF };
	size_t len;
	uint8_t *buf = sample(SRUP_TYPE_ACTIVATE, 4, 0, &len);

	(void)state;
	for (size_t i = 0; i < sizeof bad; i++) {
		struct srup_decode_error e;
		struct srup_msg *m = NULL;

		buf[0] = bad[i];
		expect_decode_error(buf, len, SRUP_E_VERSION, "version", 0);
		assert_int_equal(srup_msg_decode(buf, len, &m, &e), SRUP_E_VERSION);
		assert_int_equal(e.have, bad[i]);
		/* A one-byte input with a bad version is a version error too. */
		expect_decode_error(buf, 1, SRUP_E_VERSION, "version", 0);
	}
	free(buf);
}

static void test_malformed_unknown_type(void **state)
{
	static const uint8_t bad[] = { 0x15, 0x20, 0x21, 0x2F, 0x80, 0xFF };
	size_t len;
	uint8_t *buf = sample(SRUP_TYPE_ACTIVATE, 4, 0, &len);

	(void)state;
	for (size_t i = 0; i < sizeof bad; i++) {
		buf[1] = bad[i];
		expect_decode_error(buf, len, SRUP_E_TYPE, "type", 1);
		expect_decode_error(buf, 2, SRUP_E_TYPE, "type", 1);
	}
	free(buf);
}

static void test_malformed_signature_length_out_of_bounds(void **state)
{
	static const uint16_t bad[] = { 0, 1, 255, 513, 1024, 0xFFFF };
	size_t len;
	uint8_t *buf = sample(SRUP_TYPE_ACTIVATE, 4, 0, &len);

	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct srup_decode_error e;
		struct srup_msg *m = NULL;

		buf[24] = (uint8_t)(bad[i] >> 8);
		buf[25] = (uint8_t)bad[i];
		expect_decode_error(buf, len, SRUP_E_FIELD_BOUND, "signature", 24);
		srup_msg_decode(buf, len, &m, &e);
		assert_int_equal(e.have, bad[i]);
		assert_int_equal(e.need, bad[i] < 256 ? 256 : 512);
	}
	free(buf);
}

static void test_decode_rejects_bad_arguments(void **state)
{
	static const uint8_t x[1] = { 5 };
	struct srup_decode_error e;
	struct srup_msg *m = NULL;

	(void)state;
	assert_int_equal(srup_msg_decode(x, 1, NULL, &e), SRUP_E_ARG);
	assert_int_equal(srup_msg_decode(NULL, 5, &m, NULL), SRUP_E_ARG);
	assert_null(m);
}

/* ---- guards ---- */

static void test_g2_version_and_type_are_checked(void **state)
{
	struct srup_decode_error e;
	struct srup_msg *m = NULL;
	size_t len;
	uint8_t *buf = sample(SRUP_TYPE_ACTIVATE, 4, 0, &len);

	(void)state;
	/* The typed parse: an ACTIVATE is not a TERMINATE. */
	assert_int_equal(srup_msg_decode_as(buf, len, SRUP_TYPE_TERMINATE_COMMAND, &m, &e),
			 SRUP_E_WRONG_TYPE);
	assert_null(m);
	assert_string_equal(e.field, "type");
	assert_int_equal(e.offset, 1);
	assert_int_equal(e.have, SRUP_TYPE_ACTIVATE);
	assert_int_equal(srup_msg_decode_as(buf, len, SRUP_TYPE_ACTIVATE, &m, &e), SRUP_OK);
	assert_int_equal(m->type, SRUP_TYPE_ACTIVATE);
	srup_msg_free(m);
	/* Relabelled as TERMINATE it decodes as one, and its type byte is in
	 * the pre-sign bytes (test_srup_vectors shows the signature then fails). */
	buf[1] = SRUP_TYPE_TERMINATE_COMMAND;
	assert_int_equal(srup_msg_decode(buf, len, &m, &e), SRUP_OK);
	assert_int_equal(m->type, SRUP_TYPE_TERMINATE_COMMAND);
	srup_msg_free(m);
	buf[0] = 0x04;
	assert_int_equal(srup_msg_decode_as(buf, len, SRUP_TYPE_TERMINATE_COMMAND, &m, &e),
			 SRUP_E_VERSION);
	free(buf);
}

static void expect_encode_error(const struct srup_msg *m, enum srup_err err)
{
	uint8_t *out = (uint8_t *)1;
	size_t len = 1;

	assert_int_equal(srup_msg_encode(m, &out, &len), err);
	assert_null(out);
	assert_int_equal(len, 0);
}

/* G6: any lv16 field over 65535 bytes is refused, never truncated. */
static void test_g6_encode_rejects_fields_over_65535_bytes(void **state)
{
	(void)state;
	for (unsigned code = 0; code < N_TYPES; code++) {
		const struct srup_type_desc *t = srup_type_by_code((uint8_t)code);
		struct srup_msg *m = tu_make_msg((uint8_t)code, 1, 1, SRUP_LV16_MAX + 1, 4, 256);
		uint8_t *pre = NULL;
		size_t pre_len;

		assert_non_null(m);
		expect_encode_error(m, SRUP_E_FIELD_BOUND);
		assert_int_not_equal(srup_msg_presign(m, &pre, &pre_len), SRUP_OK);
		assert_null(pre);
		srup_msg_free(m);
		for (size_t i = 0; i < t->n_fields; i++) {
			if (t->fields[i].kind != SRUP_FIELD_LV16)
				continue;
			m = tu_make_msg((uint8_t)code, 1, 1, 4, 4, 256);
			uint8_t *big = calloc(1, SRUP_LV16_MAX + 1);
			assert_int_equal(srup_bytes_set(srup_field_bytes(m, &t->fields[i]), big,
							SRUP_LV16_MAX + 1),
					 SRUP_OK);
			expect_encode_error(m, SRUP_E_FIELD_BOUND);
			assert_int_equal(srup_msg_presign(m, &pre, &pre_len), SRUP_E_FIELD_BOUND);
			/* At exactly 65535 it is accepted. */
			assert_int_equal(srup_bytes_set(srup_field_bytes(m, &t->fields[i]), big,
							SRUP_LV16_MAX),
					 SRUP_OK);
			round_trip(m);
			free(big);
			srup_msg_free(m);
		}
	}
}

/* G7: tokens are 1..65535 bytes both ways; signatures 256..512 bytes. */
static void test_g7_empty_token_rejected_both_ways(void **state)
{
	(void)state;
	for (unsigned code = 0; code < N_TYPES; code++) {
		struct srup_msg *m = tu_make_msg((uint8_t)code, 1, 1, 0, 2, 256);
		size_t len;
		uint8_t *buf;

		assert_non_null(m);
		expect_encode_error(m, SRUP_E_FIELD_BOUND);
		srup_msg_free(m);
		/* A wire message whose token length is 0. */
		buf = sample((uint8_t)code, 1, 2, &len);
		memmove(buf + 20, buf + 21, len - 21);
		buf[19] = 0;
		expect_decode_error(buf, len - 1, SRUP_E_FIELD_BOUND, "token", 18);
		free(buf);
	}
}

static void test_g7_encode_checks_signature_length(void **state)
{
	static const size_t bad[] = { 1, 255, 513, 1000 };

	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct srup_msg *m = tu_make_msg(SRUP_TYPE_ACTIVATE, 1, 1, 4, 0, bad[i]);

		expect_encode_error(m, SRUP_E_FIELD_BOUND);
		srup_msg_free(m);
	}
}

static void test_encode_signed_type_needs_signature(void **state)
{
	(void)state;
	for (unsigned code = 1; code < N_TYPES; code++) {
		struct srup_msg *m = tu_make_msg((uint8_t)code, 1, 1, 4, 4, 0);
		uint8_t *pre = NULL;
		size_t len;

		expect_encode_error(m, SRUP_E_UNSIGNED);
		/* The pre-sign bytes exist before there is a signature. */
		assert_int_equal(srup_msg_presign(m, &pre, &len), SRUP_OK);
		free(pre);
		srup_msg_free(m);
	}
}

static void test_encode_rejects_bad_version_type_and_arguments(void **state)
{
	struct srup_msg *m = tu_make_msg(SRUP_TYPE_ACTIVATE, 1, 1, 4, 0, 256);
	uint8_t *out;
	size_t len;

	(void)state;
	m->version = 4;
	expect_encode_error(m, SRUP_E_VERSION);
	m->version = SRUP_VERSION;
	m->type = 0x15;
	expect_encode_error(m, SRUP_E_TYPE);
	m->type = SRUP_TYPE_ACTIVATE;
	expect_encode_error(NULL, SRUP_E_ARG);
	assert_int_equal(srup_msg_encode(m, NULL, &len), SRUP_E_ARG);
	assert_int_equal(srup_msg_encode(m, &out, NULL), SRUP_E_ARG);
	/* Bytes that claim a length but have no data. */
	free(m->token.data);
	m->token.data = NULL;
	expect_encode_error(m, SRUP_E_ARG);
	srup_msg_free(m);
}

/* G8: bytes after an embedded NUL are kept as they are, in every field. */
static void test_g8_nul_bytes_survive_round_trip(void **state)
{
	static const uint8_t url[] = "https://x/\0after-nul";
	static const uint8_t digest[] = { 0, 0, 'a', 0, 'b' };
	static const uint8_t data[] = { 'P', 'A', 'Y', 0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, 0x00 };
	static const uint8_t token[] = { 0, 't', 0 };
	static const uint8_t sig[256];
	struct srup_msg *m = srup_msg_new(SRUP_TYPE_INITIATE), *back = NULL;
	struct srup_msg *d = srup_msg_new(SRUP_TYPE_DATA);
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_int_equal(srup_bytes_set(&m->token, token, sizeof token), SRUP_OK);
	assert_int_equal(srup_bytes_set(&m->url, url, sizeof url - 1), SRUP_OK);
	assert_int_equal(srup_bytes_set(&m->digest, digest, sizeof digest), SRUP_OK);
	assert_int_equal(srup_bytes_set(&m->signature, sig, sizeof sig), SRUP_OK);
	buf = encode_ok(m, &len);
	assert_int_equal(srup_msg_decode(buf, len, &back, NULL), SRUP_OK);
	assert_int_equal(back->url.len, sizeof url - 1);
	assert_memory_equal(back->url.data, url, sizeof url - 1);
	assert_int_equal(back->digest.len, sizeof digest);
	assert_memory_equal(back->digest.data, digest, sizeof digest);
	assert_memory_equal(back->token.data, token, sizeof token);
	free(buf);
	srup_msg_free(back);

	assert_int_equal(srup_bytes_set(&d->token, token, sizeof token), SRUP_OK);
	assert_int_equal(srup_bytes_set(&d->data_id, "id\0x", 4), SRUP_OK);
	assert_int_equal(srup_bytes_set(&d->data, data, sizeof data), SRUP_OK);
	assert_int_equal(srup_bytes_set(&d->signature, sig, sizeof sig), SRUP_OK);
	round_trip(d);
	srup_msg_free(d);
	srup_msg_free(m);
}

/* ---- small API pieces ---- */

static void test_strerror_every_code(void **state)
{
	(void)state;
	for (int e = 0; e < SRUP_E__COUNT; e++) {
		const char *s = srup_strerror((enum srup_err)e);

		assert_non_null(s);
		assert_true(strlen(s) > 3);
		assert_string_not_equal(s, "unknown error");
		for (int f = 0; f < e; f++)
			assert_string_not_equal(s, srup_strerror((enum srup_err)f));
	}
	assert_string_equal(srup_strerror(SRUP_E__COUNT), "unknown error");
	assert_string_equal(srup_strerror((enum srup_err)-1), "unknown error");
}

static void test_status_names(void **state)
{
	static const struct {
		uint8_t code;
		const char *name;
	} table[] = {
		{ 0x00, "UPDATE_SUCCESS" },	   { 0xFC, "UPDATE_FAIL_HTTP_ERROR" },
		{ 0xFD, "UPDATE_FAIL_SERVER" },	   { 0xFE, "UPDATE_FAIL_FILE" },
		{ 0xFF, "UPDATE_FAIL_DIGEST" },	   { 0x10, "ACTIVATE_SUCCESS" },
		{ 0x1F, "ACTIVATE_FAIL" },	   { 0x20, "ACTION_SUCCESS" },
		{ 0x2E, "ACTION_UNKNOWN" },	   { 0x2F, "ACTION_FAIL" },
		{ 0x3F, "DATA_TYPE_UNKNOWN" },	   { 0x50, "JOIN_SUCCESS" },
		{ 0x5E, "JOIN_REFUSED" },	   { 0x5F, "JOIN_FAIL" },
		{ 0x60, "OBSERVED_JOIN_VALID" },   { 0x6E, "OBSERVED_JOIN_INVALID" },
		{ 0x6F, "OBSERVED_JOIN_FAIL" },	   { 0x70, "RESIGN_SUCCESS" },
		{ 0x7F, "RESIGN_FAIL" },	   { 0x80, "DEREGISTER_SUCCESS" },
		{ 0x8F, "DEREGISTER_FAIL" },
	};
	unsigned named = 0;

	(void)state;
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
		assert_non_null(srup_status_name(table[i].code));
		assert_string_equal(srup_status_name(table[i].code), table[i].name);
	}
	for (unsigned c = 0; c < 256; c++)
		named += srup_status_name((uint8_t)c) != NULL;
	assert_int_equal(named, sizeof table / sizeof table[0]);
}

static void test_accessors_check_the_field_kind(void **state)
{
	const struct srup_type_desc *t = srup_type_by_code(SRUP_TYPE_OBSERVE_REQUEST);
	struct srup_msg *m = srup_msg_new(SRUP_TYPE_OBSERVE_REQUEST);

	(void)state;
	assert_ptr_equal(srup_field_id64(m, &t->fields[0]), &m->joining_device_id);
	assert_ptr_equal(srup_field_bytes(m, &t->fields[1]), &m->encrypted);
	assert_null(srup_field_bytes(m, &t->fields[0]));
	assert_null(srup_field_u8(m, &t->fields[1]));
	assert_null(srup_field_id64(NULL, &t->fields[0]));
	assert_int_equal(m->version, SRUP_VERSION);
	assert_int_equal(m->type, SRUP_TYPE_OBSERVE_REQUEST);
	srup_msg_free(m);
	srup_msg_free(NULL);
}

static void test_bytes_set_and_clear(void **state)
{
	struct srup_bytes b = { 0 };

	(void)state;
	assert_int_equal(srup_bytes_set(&b, "abc", 3), SRUP_OK);
	assert_int_equal(b.len, 3);
	assert_memory_equal(b.data, "abc", 3);
	assert_int_equal(srup_bytes_set(&b, "", 0), SRUP_OK);
	assert_int_equal(b.len, 0);
	assert_null(b.data);
	assert_int_equal(srup_bytes_set(&b, NULL, 2), SRUP_E_ARG);
	assert_int_equal(srup_bytes_set(NULL, "a", 1), SRUP_E_ARG);
	assert_int_equal(srup_bytes_set(&b, "xy", 2), SRUP_OK);
	srup_bytes_clear(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	srup_bytes_clear(NULL);
}

/* The one hex parser the tool, the key store and the tests share. */
static void test_hex_bytes_and_ids(void **state)
{
	static const struct {
		const char *text;
		bool skip_space;
		int rc;
		size_t bad_at; /* rc -1 only */
		const char *bytes;
		size_t len;
	} decode_cases[] = {
		{ "", false, 0, 0, "", 0 },
		{ "00ff7Fa0", false, 0, 0, "\x00\xff\x7f\xa0", 4 },
		{ " 0a\n0B\t", true, 0, 0, "\x0a\x0b", 2 },
		{ "0a 0b", false, -1, 2, NULL, 0 },
		{ "0g", false, -1, 1, NULL, 0 },
		{ "abc", false, -1, 3, NULL, 0 },
		{ "0x00", false, -1, 1, NULL, 0 },
	};
	static const struct {
		const char *text;
		int rc;
		uint64_t id;
	} id_cases[] = {
		{ "0", 0, 0 },
		{ "ffffffffffffffff", 0, UINT64_MAX },
		{ "00000000000000aB", 0, 0xab },
		{ "", -1, 0 },
		{ "10000000000000000", -1, 0 },
		{ "0x1", -1, 0 },
		{ " 1", -1, 0 },
		{ "-1", -1, 0 },
	};
	char *hex;

	(void)state;
	hex = srup_hex_encode((const uint8_t *)"\x00\x9f\xa0\xff", 4);
	assert_non_null(hex);
	assert_string_equal(hex, "009fa0ff");
	free(hex);
	hex = srup_hex_encode(NULL, 0);
	assert_non_null(hex);
	assert_string_equal(hex, "");
	free(hex);

	for (size_t i = 0; i < sizeof(decode_cases) / sizeof(decode_cases[0]); i++) {
		uint8_t sentinel = 0, *out = &sentinel;
		size_t out_len = 99, bad_at = 99;
		int rc = srup_hex_decode(decode_cases[i].text, strlen(decode_cases[i].text),
					 decode_cases[i].skip_space, &out, &out_len, &bad_at);

		if (rc != decode_cases[i].rc)
			fail_msg("\"%s\": returned %d, want %d", decode_cases[i].text, rc,
				 decode_cases[i].rc);
		if (rc == 0) {
			assert_int_equal(out_len, decode_cases[i].len);
			assert_memory_equal(out, decode_cases[i].bytes, out_len);
			free(out);
		} else {
			assert_null(out);
			assert_int_equal(bad_at, decode_cases[i].bad_at);
		}
	}

	for (size_t i = 0; i < sizeof(id_cases) / sizeof(id_cases[0]); i++) {
		uint64_t id = 42;
		int rc = srup_hex_parse_id(id_cases[i].text, &id);

		if (rc != id_cases[i].rc)
			fail_msg("\"%s\": returned %d, want %d", id_cases[i].text, rc,
				 id_cases[i].rc);
		assert_true(id == (rc == 0 ? id_cases[i].id : 42));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_one_row_per_type),
		cmocka_unit_test(test_wire_length_per_type),
		cmocka_unit_test(test_byte_order_ids_le_lengths_be),
		cmocka_unit_test(test_round_trip_every_type_at_bounds),
		cmocka_unit_test(test_g1_every_truncation_of_every_type_names_the_field),
		cmocka_unit_test(test_malformed_short_input),
		cmocka_unit_test(test_malformed_token_length_past_end),
		cmocka_unit_test(test_malformed_body_length_past_end),
		cmocka_unit_test(test_malformed_signature_length_past_end),
		cmocka_unit_test(test_malformed_trailing_bytes_every_type),
		cmocka_unit_test(test_malformed_generic_has_nothing_after_token),
		cmocka_unit_test(test_malformed_version),
		cmocka_unit_test(test_malformed_unknown_type),
		cmocka_unit_test(test_malformed_signature_length_out_of_bounds),
		cmocka_unit_test(test_decode_rejects_bad_arguments),
		cmocka_unit_test(test_g2_version_and_type_are_checked),
		cmocka_unit_test(test_g6_encode_rejects_fields_over_65535_bytes),
		cmocka_unit_test(test_g7_empty_token_rejected_both_ways),
		cmocka_unit_test(test_g7_encode_checks_signature_length),
		cmocka_unit_test(test_encode_signed_type_needs_signature),
		cmocka_unit_test(test_encode_rejects_bad_version_type_and_arguments),
		cmocka_unit_test(test_g8_nul_bytes_survive_round_trip),
		cmocka_unit_test(test_strerror_every_code),
		cmocka_unit_test(test_status_names),
		cmocka_unit_test(test_accessors_check_the_field_kind),
		cmocka_unit_test(test_bytes_set_and_clear),
		cmocka_unit_test(test_hex_bytes_and_ids),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
