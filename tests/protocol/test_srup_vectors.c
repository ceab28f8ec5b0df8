/* libsrup against the reference vectors (argument: the vectors folder with
 * MANIFEST.tsv): every vector decodes to its JSON, verifies with the
 * manifest's key, decrypts to the JSON plaintext, re-encodes to the same
 * bytes, and is rebuilt byte for byte from its JSON and signing key. Any
 * single changed byte of a signed vector fails to decode or to verify. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "srup.h"
#include "srup_hex.h"
#include "srup_test_util.h"

#define N_TYPES (SRUP_TYPE_GROUP_DESTROY + 1)
#define MAX_VECTORS 256

struct vector {
	char *name, *file, *expect, *verify_key, *decrypt_key, *json, *sign_key;
	uint8_t *bytes;
	size_t len;
};

static const char *vectors_dir;
static struct vector vectors[MAX_VECTORS];
static size_t n_vectors;

static char *path_in_dir(const char *rel)
{
	size_t n = strlen(vectors_dir) + strlen(rel) + 2;
	char *p = malloc(n);

	snprintf(p, n, "%s/%s", vectors_dir, rel);
	return p;
}

static int is_none(const char *field)
{
	return !field || strcmp(field, "-") == 0 || !*field;
}

/* MANIFEST.tsv: a header line naming the columns, then one row per vector. */
static int load_manifest(void)
{
	static const char *const names[] = { "name",	    "file", "expect",	"verify_key",
					     "decrypt_key", "json", "sign_key" };
	int col[7];
	char *path = path_in_dir("MANIFEST.tsv"), *text, *line, *save = NULL;
	size_t len;

	text = (char *)tu_read_file(path, &len);
	free(path);
	if (!text)
		return -1;
	line = strtok_r(text, "\n", &save);
	for (int i = 0; i < 7; i++) {
		char *copy = strdup(line), *cell, *s2 = NULL;
		int idx = 0;

		col[i] = -1;
		for (cell = strtok_r(copy, "\t", &s2); cell; cell = strtok_r(NULL, "\t", &s2), idx++)
			if (strcmp(cell, names[i]) == 0)
				col[i] = idx;
		free(copy);
		if (col[i] < 0)
			return -1;
	}
	while ((line = strtok_r(NULL, "\n", &save)) && n_vectors < MAX_VECTORS) {
		struct vector *v = &vectors[n_vectors];
		char *cells[16] = { 0 }, *p = line;
		int nc = 0;

		/* Split on every tab (empty cells included: the note may be empty). */
		while (nc < 16) {
			char *tab = strchr(p, '\t');

			cells[nc++] = p;
			if (!tab)
				break;
			*tab = 0;
			p = tab + 1;
		}
		char **dst[7] = { &v->name, &v->file, &v->expect, &v->verify_key, &v->decrypt_key,
				  &v->json, &v->sign_key };
		for (int i = 0; i < 7; i++)
			*dst[i] = strdup(col[i] < nc ? cells[col[i]] : "-");
		path = path_in_dir(v->file);
		v->bytes = tu_read_file(path, &v->len);
		free(path);
		if (!v->bytes)
			return -1;
		n_vectors++;
	}
	free(text);
	return n_vectors ? 0 : -1;
}

static EVP_PKEY *key_of(const char *rel, int private)
{
	char *path = path_in_dir(rel);
	EVP_PKEY *k = private ? tu_load_private(path) : tu_load_public(path);

	free(path);
	assert_non_null(k);
	return k;
}

static cJSON *json_of(const struct vector *v)
{
	char *path = path_in_dir(v->json), *text;
	size_t len;
	cJSON *j;

	text = (char *)tu_read_file(path, &len);
	free(path);
	assert_non_null(text);
	j = cJSON_Parse(text);
	free(text);
	assert_non_null(j);
	return j;
}

static struct srup_msg *decode_ok(const struct vector *v)
{
	struct srup_decode_error e;
	struct srup_msg *m = NULL;

	if (srup_msg_decode(v->bytes, v->len, &m, &e) != SRUP_OK)
		fail_msg("%s: %s in %s at %zu", v->name, srup_strerror(e.err), e.field, e.offset);
	return m;
}

static void expect_hex(const char *what, const uint8_t *data, size_t len, const cJSON *item)
{
	char *hex = srup_hex_encode(data, len);

	assert_non_null(hex);
	assert_true(cJSON_IsString(item));
	if (strcmp(hex, item->valuestring) != 0)
		fail_msg("%s: got %s, want %s", what, hex, item->valuestring);
	free(hex);
}

static void expect_id(const char *what, uint64_t id, const cJSON *item)
{
	char text[17];

	snprintf(text, sizeof text, "%016" PRIx64, id);
	assert_true(cJSON_IsString(item));
	if (strcmp(text, item->valuestring) != 0)
		fail_msg("%s: got %s, want %s", what, text, item->valuestring);
}

/* A JSON ID: exactly 16 lowercase hex digits. */
static int json_id(const cJSON *item, uint64_t *out)
{
	uint64_t v = 0;

	if (!cJSON_IsString(item) || strlen(item->valuestring) != 16)
		return -1;
	for (const char *c = item->valuestring; *c; c++) {
		int d = *c >= '0' && *c <= '9' ? *c - '0' : *c >= 'a' && *c <= 'f' ? *c - 'a' + 10 : -1;

		if (d < 0)
			return -1;
		v = v << 4 | (uint64_t)d;
	}
	*out = v;
	return 0;
}

static const struct srup_field_desc *field_named(const struct srup_type_desc *t, const char *n)
{
	for (size_t i = 0; i < t->n_fields; i++)
		if (strcmp(t->fields[i].name, n) == 0)
			return &t->fields[i];
	return NULL;
}

/* Every key of the JSON matches the decoded message, through the table;
 * every field of the table is in the JSON. */
static void compare_with_json(const struct vector *v, struct srup_msg *m, const cJSON *j)
{
	const struct srup_type_desc *t = srup_type_by_code(m->type);
	const cJSON *item;

	assert_non_null(t);
	cJSON_ArrayForEach(item, j)
	{
		const char *k = item->string;
		const struct srup_field_desc *f;

		if (strcmp(k, "type") == 0) {
			assert_string_equal(t->name, item->valuestring);
		} else if (strcmp(k, "version") == 0) {
			assert_int_equal(m->version, item->valueint);
		} else if (strcmp(k, "sequence_id") == 0) {
			expect_id(k, m->sequence_id, item);
		} else if (strcmp(k, "sender_id") == 0) {
			expect_id(k, m->sender_id, item);
		} else if (strcmp(k, "token") == 0) {
			expect_hex(k, m->token.data, m->token.len, item);
		} else if (strcmp(k, "signature") == 0) {
			assert_true(t->is_signed);
			expect_hex(k, m->signature.data, m->signature.len, item);
		} else if (strcmp(k, "plaintext") == 0) {
			struct srup_bytes pt = { 0 };
			EVP_PKEY *key;

			assert_false(is_none(v->decrypt_key));
			key = key_of(v->decrypt_key, 1);
			assert_int_equal(srup_msg_open(m, key, &pt), SRUP_OK);
			expect_hex(k, pt.data, pt.len, item);
			srup_bytes_clear(&pt);
			EVP_PKEY_free(key);
		} else if ((f = field_named(t, k))) {
			if (f->kind == SRUP_FIELD_U8)
				assert_int_equal(*srup_field_u8(m, f), item->valueint);
			else if (f->kind == SRUP_FIELD_ID64)
				expect_id(k, *srup_field_id64(m, f), item);
			else
				expect_hex(k, srup_field_bytes(m, f)->data, srup_field_bytes(m, f)->len,
					   item);
		} else {
			fail_msg("%s: JSON key %s is not a field of %s", v->name, k, t->name);
		}
	}
	for (size_t i = 0; i < t->n_fields; i++)
		assert_non_null(cJSON_GetObjectItemCaseSensitive(j, t->fields[i].name));
	if (t->is_signed)
		assert_non_null(cJSON_GetObjectItemCaseSensitive(j, "signature"));
	else
		assert_null(cJSON_GetObjectItemCaseSensitive(j, "signature"));
}

static void test_every_type_has_a_vector(void **state)
{
	int seen[N_TYPES] = { 0 };

	(void)state;
	for (size_t i = 0; i < n_vectors; i++) {
		struct srup_msg *m = NULL;

		if (srup_msg_decode(vectors[i].bytes, vectors[i].len, &m, NULL) == SRUP_OK)
			seen[m->type]++;
		srup_msg_free(m);
	}
	for (int c = 0; c < N_TYPES; c++)
		if (!seen[c])
			fail_msg("no vector decodes as type 0x%02x", c);
}

/* Decode, compare with the JSON (plaintext included), verify with the
 * manifest key, and re-encode to the identical bytes. */
static void test_ok_vectors_decode_verify_decrypt_reencode(void **state)
{
	size_t checked = 0;

	(void)state;
	for (size_t i = 0; i < n_vectors; i++) {
		const struct vector *v = &vectors[i];
		struct srup_msg *m;
		uint8_t *again;
		size_t len;
		cJSON *j;

		if (strcmp(v->expect, "ok") != 0)
			continue;
		m = decode_ok(v);
		j = json_of(v);
		compare_with_json(v, m, j);
		if (srup_type_blob_field(srup_type_by_code(m->type)))
			assert_non_null(cJSON_GetObjectItemCaseSensitive(j, "plaintext"));
		if (!is_none(v->verify_key)) {
			EVP_PKEY *key = key_of(v->verify_key, 0);

			if (srup_msg_verify(m, key) != SRUP_OK)
				fail_msg("%s does not verify", v->name);
			EVP_PKEY_free(key);
		} else {
			assert_int_equal(m->type, SRUP_TYPE_GENERIC);
		}
		assert_int_equal(srup_msg_encode(m, &again, &len), SRUP_OK);
		assert_int_equal(len, v->len);
		assert_memory_equal(again, v->bytes, len);
		free(again);
		cJSON_Delete(j);
		srup_msg_free(m);
		checked++;
	}
	assert_true(checked >= N_TYPES);
}

/* A message built from nothing but the JSON, signed with the manifest's
 * signing key, is byte for byte the vector (PKCS#1 v1.5 is deterministic;
 * blob types reuse the JSON's ready blob). */
static void test_ok_vectors_rebuilt_from_json_and_signed(void **state)
{
	(void)state;
	for (size_t i = 0; i < n_vectors; i++) {
		const struct vector *v = &vectors[i];
		const struct srup_type_desc *t;
		const cJSON *item;
		struct srup_msg *m;
		uint8_t *buf, *raw;
		size_t len, raw_len;
		cJSON *j;

		if (strcmp(v->expect, "ok") != 0)
			continue;
		j = json_of(v);
		t = srup_type_by_name(cJSON_GetObjectItemCaseSensitive(j, "type")->valuestring);
		assert_non_null(t);
		m = srup_msg_new(t->code);
		assert_int_equal(json_id(cJSON_GetObjectItemCaseSensitive(j, "sequence_id"),
					     &m->sequence_id), 0);
		assert_int_equal(json_id(cJSON_GetObjectItemCaseSensitive(j, "sender_id"),
					     &m->sender_id), 0);
		raw = tu_unhex(cJSON_GetObjectItemCaseSensitive(j, "token")->valuestring, &raw_len);
		assert_int_equal(srup_bytes_set(&m->token, raw, raw_len), SRUP_OK);
		free(raw);
		for (size_t f = 0; f < t->n_fields; f++) {
			const struct srup_field_desc *fd = &t->fields[f];

			item = cJSON_GetObjectItemCaseSensitive(j, fd->name);
			assert_non_null(item);
			if (fd->kind == SRUP_FIELD_U8) {
				*srup_field_u8(m, fd) = (uint8_t)item->valueint;
			} else if (fd->kind == SRUP_FIELD_ID64) {
				assert_int_equal(json_id(item, srup_field_id64(m, fd)), 0);
			} else {
				raw = tu_unhex(item->valuestring, &raw_len);
				assert_non_null(raw);
				assert_int_equal(srup_bytes_set(srup_field_bytes(m, fd), raw, raw_len),
						 SRUP_OK);
				free(raw);
			}
		}
		if (t->is_signed) {
			EVP_PKEY *key = key_of(v->sign_key, 1);

			assert_int_equal(srup_msg_sign(m, key), SRUP_OK);
			EVP_PKEY_free(key);
		}
		assert_int_equal(srup_msg_encode(m, &buf, &len), SRUP_OK);
		if (len != v->len || memcmp(buf, v->bytes, len) != 0)
			fail_msg("%s: rebuilt bytes differ", v->name);
		free(buf);
		srup_msg_free(m);
		cJSON_Delete(j);
	}
}

/* Our verify checks the re-serialized fields; because decoding is strict,
 * that is exactly the received bytes without sig_len and signature, which
 * plain OpenSSL verifies too. */
static void test_presign_is_received_bytes_minus_signature(void **state)
{
	(void)state;
	for (size_t i = 0; i < n_vectors; i++) {
		const struct vector *v = &vectors[i];
		struct srup_msg *m;
		uint8_t *pre, *cut;
		size_t pre_len, sig_at, sig_end;
		EVP_MD_CTX *ctx;
		EVP_PKEY *key;

		if (strcmp(v->expect, "ok") != 0 || is_none(v->verify_key))
			continue;
		m = decode_ok(v);
		sig_at = 20 + m->token.len;
		sig_end = sig_at + 2 + m->signature.len;
		cut = malloc(v->len);
		memcpy(cut, v->bytes, sig_at);
		memcpy(cut + sig_at, v->bytes + sig_end, v->len - sig_end);
		assert_int_equal(srup_msg_presign(m, &pre, &pre_len), SRUP_OK);
		assert_int_equal(pre_len, v->len - (sig_end - sig_at));
		assert_memory_equal(pre, cut, pre_len);
		key = key_of(v->verify_key, 0);
		ctx = EVP_MD_CTX_new();
		assert_int_equal(EVP_DigestVerifyInit_ex(ctx, NULL, "SHA256", NULL, NULL, key, NULL),
				 1);
		assert_int_equal(EVP_DigestVerify(ctx, m->signature.data, m->signature.len, cut,
						  pre_len),
				 1);
		EVP_MD_CTX_free(ctx);
		EVP_PKEY_free(key);
		free(pre);
		free(cut);
		srup_msg_free(m);
	}
}

/* Flip each bit pattern into every byte of every signed vector: the result
 * must fail to decode or fail to verify, never pass. */
static void test_tamper_any_byte_of_signed_vectors_fails(void **state)
{
	static const uint8_t flips[] = { 0x01, 0x80, 0xff };
	size_t tried = 0;

	(void)state;
	for (size_t i = 0; i < n_vectors; i++) {
		const struct vector *v = &vectors[i];
		uint8_t *copy;
		EVP_PKEY *key;

		if (strcmp(v->expect, "ok") != 0 || is_none(v->verify_key))
			continue;
		key = key_of(v->verify_key, 0);
		copy = malloc(v->len);
		memcpy(copy, v->bytes, v->len);
		for (size_t at = 0; at < v->len; at++) {
			for (size_t f = 0; f < sizeof flips; f++) {
				struct srup_msg *m = NULL;

				copy[at] ^= flips[f];
				if (srup_msg_decode(copy, v->len, &m, NULL) == SRUP_OK &&
				    srup_msg_verify(m, key) == SRUP_OK)
					fail_msg("%s: byte %zu ^ 0x%02x still verifies", v->name, at,
						 flips[f]);
				srup_msg_free(m);
				copy[at] ^= flips[f];
				tried++;
			}
		}
		free(copy);
		EVP_PKEY_free(key);
	}
	assert_true(tried > 1000);
}

/* G2: libSRUP verifies an ACTIVATE parsed as a TERMINATE; here the type
 * byte is signed, so the relabelled message fails. */
static void test_g2_activate_relabelled_as_terminate_fails_verify(void **state)
{
	(void)state;
	for (size_t i = 0; i < n_vectors; i++) {
		const struct vector *v = &vectors[i];
		struct srup_msg *m = NULL;
		uint8_t *copy;
		EVP_PKEY *key;

		if (strcmp(v->name, "activate") != 0)
			continue;
		copy = malloc(v->len);
		memcpy(copy, v->bytes, v->len);
		copy[1] = SRUP_TYPE_TERMINATE_COMMAND;
		key = key_of(v->verify_key, 0);
		assert_int_equal(srup_msg_decode_as(copy, v->len, SRUP_TYPE_ACTIVATE, &m, NULL),
				 SRUP_E_WRONG_TYPE);
		assert_int_equal(srup_msg_decode(copy, v->len, &m, NULL), SRUP_OK);
		assert_int_equal(srup_msg_verify(m, key), SRUP_E_BAD_SIGNATURE);
		srup_msg_free(m);
		EVP_PKEY_free(key);
		free(copy);
		return;
	}
	fail_msg("no activate vector");
}

/* G1: every vector cut short, or with a byte added, is refused. */
static void test_g1_vectors_cut_or_extended_are_refused(void **state)
{
	(void)state;
	for (size_t i = 0; i < n_vectors; i++) {
		const struct vector *v = &vectors[i];
		uint8_t *copy = malloc(v->len + 1);
		struct srup_decode_error e;
		struct srup_msg *m = NULL;

		for (size_t cut = 0; cut < v->len; cut++) {
			uint8_t *part = malloc(cut ? cut : 1);

			memcpy(part, v->bytes, cut);
			assert_int_equal(srup_msg_decode(part, cut, &m, &e), SRUP_E_TRUNCATED);
			assert_null(m);
			free(part);
		}
		memcpy(copy, v->bytes, v->len);
		copy[v->len] = 0;
		assert_int_equal(srup_msg_decode(copy, v->len + 1, &m, &e), SRUP_E_TRAILING);
		assert_string_equal(e.field, "message");
		assert_int_equal(e.offset, v->len);
		free(copy);
	}
}

/* Vectors expected to fail (in sets that have them) fail the right way. */
static void test_failing_vectors_fail_as_the_manifest_says(void **state)
{
	(void)state;
	for (size_t i = 0; i < n_vectors; i++) {
		const struct vector *v = &vectors[i];
		struct srup_msg *m = NULL;
		enum srup_err rc = srup_msg_decode(v->bytes, v->len, &m, NULL);

		if (strcmp(v->expect, "malformed") == 0) {
			assert_int_not_equal(rc, SRUP_OK);
		} else if (strcmp(v->expect, "badsig") == 0) {
			EVP_PKEY *key = key_of(v->verify_key, 0);

			assert_int_equal(rc, SRUP_OK);
			assert_int_not_equal(srup_msg_verify(m, key), SRUP_OK);
			EVP_PKEY_free(key);
		} else if (strcmp(v->expect, "baddecrypt") == 0) {
			EVP_PKEY *key = key_of(v->decrypt_key, 1);
			struct srup_bytes pt = { 0 };

			assert_int_equal(rc, SRUP_OK);
			assert_int_not_equal(srup_msg_open(m, key, &pt), SRUP_OK);
			EVP_PKEY_free(key);
		}
		srup_msg_free(m);
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_type_has_a_vector),
		cmocka_unit_test(test_ok_vectors_decode_verify_decrypt_reencode),
		cmocka_unit_test(test_ok_vectors_rebuilt_from_json_and_signed),
		cmocka_unit_test(test_presign_is_received_bytes_minus_signature),
		cmocka_unit_test(test_tamper_any_byte_of_signed_vectors_fails),
		cmocka_unit_test(test_g2_activate_relabelled_as_terminate_fails_verify),
		cmocka_unit_test(test_g1_vectors_cut_or_extended_are_refused),
		cmocka_unit_test(test_failing_vectors_fail_as_the_manifest_says),
	};
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: %s VECTORS_DIR\n", argv[0]);
		return 2;
	}
	vectors_dir = argv[1];
	if (load_manifest() != 0) {
		fprintf(stderr, "%s: cannot read MANIFEST.tsv and its vectors\n", vectors_dir);
		return 2;
	}
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	for (size_t i = 0; i < n_vectors; i++) {
		struct vector *v = &vectors[i];

		free(v->name);
		free(v->file);
		free(v->expect);
		free(v->verify_key);
		free(v->decrypt_key);
		free(v->json);
		free(v->sign_key);
		free(v->bytes);
	}
	return rc;
}
