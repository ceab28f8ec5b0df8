/* libsrup crypto: key checks, sign/verify with 2048/3072/4096-bit keys,
 * the encrypted blob both ways (and against OpenSSL's own EVP_Seal and
 * EVP_Open), and guards G3, G4, G5, G7 (signature length) and G9. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "srup.h"
#include "srup_test_util.h"

#define N_TYPES (SRUP_TYPE_GROUP_DESTROY + 1)

static const int key_sizes[] = { 2048, 3072, 4096 };

static EVP_PKEY *key2048(void)
{
	EVP_PKEY *k = tu_rsa_key(2048, 0);

	assert_non_null(k);
	return k;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- keys ---- */

static void test_key_check_accepts_rsa_2048_to_4096(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof key_sizes / sizeof key_sizes[0]; i++) {
		EVP_PKEY *k = tu_rsa_key(key_sizes[i], 0);
		EVP_PKEY *pub = tu_public_only(k);

		assert_non_null(k);
		assert_int_equal(srup_key_check(k), SRUP_OK);
		assert_int_equal(srup_key_check(pub), SRUP_OK);
		EVP_PKEY_free(pub);
	}
	assert_int_equal(srup_key_check(NULL), SRUP_E_ARG);
}

static EVP_PKEY *rsa_pss_key(void)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA-PSS", NULL);
	EVP_PKEY *key = NULL;

	assert_non_null(ctx);
	assert_int_equal(EVP_PKEY_keygen_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 2048), 1);
	assert_int_equal(EVP_PKEY_generate(ctx, &key), 1);
	EVP_PKEY_CTX_free(ctx);
	return key;
}

/* A 1024-bit RSA key, an EC key and an RSA-PSS key are refused by every
 * operation that takes a key. */
static void test_key_rejects_rsa_1024_ec_and_pss(void **state)
{
	EVP_PKEY *bad[3];
	struct srup_msg *m = tu_make_msg(SRUP_TYPE_ACTIVATE, 1, 1, 4, 0, 0);
	struct srup_bytes blob = { 0 }, pt = { 0 };
	static const uint8_t secret[32] = { 1 };

	(void)state;
	bad[0] = EVP_RSA_gen(1024);
	bad[1] = EVP_EC_gen("P-256");
	bad[2] = rsa_pss_key();
	assert_int_equal(srup_blob_seal(key2048(), secret, sizeof secret, &blob), SRUP_OK);
	for (int i = 0; i < 3; i++) {
		assert_non_null(bad[i]);
		assert_int_equal(srup_key_check(bad[i]), SRUP_E_KEY);
		assert_int_equal(srup_msg_sign(m, bad[i]), SRUP_E_KEY);
		assert_int_equal(m->signature.len, 0);
		assert_int_equal(srup_blob_seal(bad[i], secret, sizeof secret, &pt), SRUP_E_KEY);
		assert_int_equal(srup_blob_open(bad[i], blob.data, blob.len, &pt), SRUP_E_KEY);
	}
	assert_int_equal(srup_msg_sign(m, key2048()), SRUP_OK);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(srup_msg_verify(m, bad[i]), SRUP_E_KEY);
		EVP_PKEY_free(bad[i]);
	}
	srup_bytes_clear(&blob);
	srup_msg_free(m);
}

/* ---- signatures ---- */

static void test_sign_verify_every_type_each_key_size(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof key_sizes / sizeof key_sizes[0]; k++) {
		EVP_PKEY *key = tu_rsa_key(key_sizes[k], 0);
		EVP_PKEY *pub = tu_public_only(key);

		for (unsigned code = 1; code < N_TYPES; code++) {
			struct srup_msg *m = tu_make_msg((uint8_t)code, 0x0102030405060708ull, 0x60,
							 12, 40, 0), *back = NULL;
			uint8_t *buf;
			size_t len;

			assert_int_equal(srup_msg_sign(m, key), SRUP_OK);
			assert_int_equal(m->signature.len, (size_t)key_sizes[k] / 8);
			assert_int_equal(srup_msg_encode(m, &buf, &len), SRUP_OK);
			assert_int_equal(srup_msg_decode(buf, len, &back, NULL), SRUP_OK);
			assert_int_equal(srup_msg_verify(back, pub), SRUP_OK);
			assert_int_equal(srup_msg_verify(back, key), SRUP_OK);
			free(buf);
			srup_msg_free(back);
			srup_msg_free(m);
		}
		EVP_PKEY_free(pub);
	}
}

static void test_sign_is_deterministic_and_replaces_signature(void **state)
{
	struct srup_msg *m = tu_make_msg(SRUP_TYPE_DATA, 9, 0, 3, 20, 300);
	uint8_t first[256];

	(void)state;
	assert_int_equal(srup_msg_sign(m, key2048()), SRUP_OK);
	assert_int_equal(m->signature.len, 256);
	memcpy(first, m->signature.data, 256);
	assert_int_equal(srup_msg_sign(m, key2048()), SRUP_OK);
	assert_memory_equal(first, m->signature.data, 256);
	srup_msg_free(m);
}

static void test_verify_fails_when_any_field_changes(void **state)
{
	(void)state;
	for (unsigned code = 1; code < N_TYPES; code++) {
		const struct srup_type_desc *t = srup_type_by_code((uint8_t)code);
		struct srup_msg *m = tu_make_msg((uint8_t)code, 5, 5, 4, 4, 0);

		assert_int_equal(srup_msg_sign(m, key2048()), SRUP_OK);
		m->sequence_id++;
		assert_int_equal(srup_msg_verify(m, key2048()), SRUP_E_BAD_SIGNATURE);
		m->sequence_id--;
		m->sender_id ^= 1ull << 63;
		assert_int_equal(srup_msg_verify(m, key2048()), SRUP_E_BAD_SIGNATURE);
		m->sender_id ^= 1ull << 63;
		m->token.data[0] ^= 1;
		assert_int_equal(srup_msg_verify(m, key2048()), SRUP_E_BAD_SIGNATURE);
		m->token.data[0] ^= 1;
		for (size_t i = 0; i < t->n_fields; i++) {
			const struct srup_field_desc *f = &t->fields[i];
			uint8_t *p = f->kind == SRUP_FIELD_U8	  ? srup_field_u8(m, f) :
				     f->kind == SRUP_FIELD_ID64 ? (uint8_t *)srup_field_id64(m, f) :
								  srup_field_bytes(m, f)->data;

			p[0] ^= 0x80;
			assert_int_equal(srup_msg_verify(m, key2048()), SRUP_E_BAD_SIGNATURE);
			p[0] ^= 0x80;
		}
		m->signature.data[100] ^= 4;
		assert_int_equal(srup_msg_verify(m, key2048()), SRUP_E_BAD_SIGNATURE);
		m->signature.data[100] ^= 4;
		assert_int_equal(srup_msg_verify(m, key2048()), SRUP_OK);
		/* Another key of the same size. */
		assert_int_equal(srup_msg_verify(m, tu_rsa_key(2048, 1)), SRUP_E_BAD_SIGNATURE);
		srup_msg_free(m);
	}
}

/* G7: the signature must be as long as the verifying key's modulus. */
static void test_g7_verify_rejects_signature_not_key_size(void **state)
{
	struct srup_msg *m = tu_make_msg(SRUP_TYPE_ACTIVATE, 1, 1, 4, 0, 0);

	(void)state;
	assert_int_equal(srup_msg_sign(m, key2048()), SRUP_OK);
	assert_int_equal(srup_msg_verify(m, tu_rsa_key(3072, 0)), SRUP_E_SIG_LENGTH);
	assert_int_equal(srup_msg_verify(m, tu_rsa_key(4096, 0)), SRUP_E_SIG_LENGTH);
	assert_int_equal(srup_msg_sign(m, tu_rsa_key(4096, 0)), SRUP_OK);
	assert_int_equal(m->signature.len, 512);
	assert_int_equal(srup_msg_verify(m, key2048()), SRUP_E_SIG_LENGTH);
	assert_int_equal(srup_msg_verify(m, tu_rsa_key(4096, 0)), SRUP_OK);
	/* An all-0xff signature of the right length is not even a valid
	 * RSA value for this modulus: a failed verify, not a crash. */
	memset(m->signature.data, 0xff, m->signature.len);
	assert_int_equal(srup_msg_verify(m, tu_rsa_key(4096, 0)), SRUP_E_BAD_SIGNATURE);
	srup_msg_free(m);
}

static void test_generic_and_unsigned_messages(void **state)
{
	struct srup_msg *g = tu_make_msg(SRUP_TYPE_GENERIC, 1, 1, 4, 0, 0);
	struct srup_msg *m = tu_make_msg(SRUP_TYPE_ACTION, 1, 1, 4, 0, 0);

	(void)state;
	assert_int_equal(srup_msg_sign(g, key2048()), SRUP_E_UNSIGNED);
	assert_int_equal(srup_msg_verify(g, key2048()), SRUP_E_UNSIGNED);
	assert_int_equal(srup_msg_verify(m, key2048()), SRUP_E_UNSIGNED);
	assert_int_equal(srup_msg_sign(NULL, key2048()), SRUP_E_ARG);
	assert_int_equal(srup_msg_sign(m, NULL), SRUP_E_ARG);
	assert_int_equal(srup_msg_verify(NULL, key2048()), SRUP_E_ARG);
	m->type = 0x15;
	assert_int_equal(srup_msg_sign(m, key2048()), SRUP_E_TYPE);
	srup_msg_free(g);
	srup_msg_free(m);
}

/* G9: a signing failure is reported and leaves no signature behind (and
 * never an uninitialised one): here the key has no private half. */
static void test_g9_sign_failure_leaves_message_unsigned(void **state)
{
	EVP_PKEY *pub = tu_public_only(key2048());
	struct srup_msg *m = tu_make_msg(SRUP_TYPE_TERMINATE_COMMAND, 1, 1, 4, 0, 0);
	uint8_t *out = NULL, before[256];
	size_t len;

	(void)state;
	assert_non_null(pub);
	assert_int_equal(srup_msg_sign(m, pub), SRUP_E_CRYPTO);
	assert_int_equal(m->signature.len, 0);
	assert_null(m->signature.data);
	assert_int_equal(srup_msg_encode(m, &out, &len), SRUP_E_UNSIGNED);
	/* A signed message keeps its good signature when re-signing fails. */
	assert_int_equal(srup_msg_sign(m, key2048()), SRUP_OK);
	memcpy(before, m->signature.data, sizeof before);
	assert_int_equal(srup_msg_sign(m, pub), SRUP_E_CRYPTO);
	assert_int_equal(m->signature.len, 256);
	assert_memory_equal(before, m->signature.data, sizeof before);
	assert_int_equal(srup_msg_verify(m, pub), SRUP_OK);
	/* A message that cannot be encoded is not signed either. */
	srup_bytes_clear(&m->token);
	assert_int_equal(srup_msg_sign(m, key2048()), SRUP_E_FIELD_BOUND);
	assert_memory_equal(before, m->signature.data, sizeof before);
	EVP_PKEY_free(pub);
	srup_msg_free(m);
}

/* Pre-sign bytes larger than the signer's stack buffer. */
static void test_sign_verify_large_message(void **state)
{
	struct srup_msg *m = tu_make_msg(SRUP_TYPE_INITIATE, 1, 1, SRUP_LV16_MAX, SRUP_LV16_MAX, 0);

	(void)state;
	assert_int_equal(srup_msg_sign(m, key2048()), SRUP_OK);
	assert_int_equal(srup_msg_verify(m, key2048()), SRUP_OK);
	m->digest.data[SRUP_LV16_MAX - 1] ^= 1;
	assert_int_equal(srup_msg_verify(m, key2048()), SRUP_E_BAD_SIGNATURE);
	srup_msg_free(m);
}

/* ---- the blob ---- */

static void test_blob_round_trip_each_key_size_layout(void **state)
{
	static const size_t sizes[] = { 1, 15, 16, 17, 32, 100, SRUP_BLOB_MAX_PLAINTEXT };
	uint8_t *pt = malloc(SRUP_BLOB_MAX_PLAINTEXT);

	(void)state;
	for (size_t i = 0; i < SRUP_BLOB_MAX_PLAINTEXT; i++)
		pt[i] = (uint8_t)(i % 5 ? i : 0);
	for (size_t k = 0; k < sizeof key_sizes / sizeof key_sizes[0]; k++) {
		EVP_PKEY *key = tu_rsa_key(key_sizes[k], 0);
		EVP_PKEY *pub = tu_public_only(key);
		size_t K = (size_t)key_sizes[k] / 8;

		for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
			struct srup_bytes blob = { 0 }, out = { 0 };
			size_t C = 16 * (sizes[s] / 16 + 1);

			assert_int_equal(srup_blob_seal(pub, pt, sizes[s], &blob), SRUP_OK);
			assert_int_equal(blob.len, 28 + K + C);
			assert_int_equal(le32(blob.data), K);
			assert_int_equal(le32(blob.data + 4 + K + 16), C);
			assert_int_equal(le32(blob.data + 4 + K + 20), sizes[s]);
			assert_int_equal(srup_blob_open(key, blob.data, blob.len, &out), SRUP_OK);
			assert_int_equal(out.len, sizes[s]);
			assert_memory_equal(out.data, pt, sizes[s]);
			srup_bytes_clear(&out);
			srup_bytes_clear(&blob);
		}
		EVP_PKEY_free(pub);
	}
	free(pt);
}

static void test_blob_is_fresh_every_time(void **state)
{
	static const uint8_t pt[32] = "5e1f0c2d3b4a69788796a5b4c3d2e1f0";
	struct srup_bytes a = { 0 }, b = { 0 };

	(void)state;
	assert_int_equal(srup_blob_seal(key2048(), pt, sizeof pt, &a), SRUP_OK);
	assert_int_equal(srup_blob_seal(key2048(), pt, sizeof pt, &b), SRUP_OK);
	assert_int_equal(a.len, 332);
	assert_int_equal(b.len, 332);
	assert_memory_not_equal(a.data + 4, b.data + 4, 256);      /* wrapped key */
	assert_memory_not_equal(a.data + 260, b.data + 260, 16);   /* IV */
	assert_memory_not_equal(a.data + 284, b.data + 284, 48);   /* ciphertext */
	srup_bytes_clear(&a);
	srup_bytes_clear(&b);
}

/* Our blob opens with OpenSSL's EVP_Open, as libSRUP opens it. */
static void test_blob_opens_with_evp_open(void **state)
{
	static const uint8_t pt[] = "a confirmation value\0with a NUL";
	struct srup_bytes blob = { 0 };
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	uint8_t out[64];
	int n1 = 0, n2 = 0;

	(void)state;
	assert_int_equal(srup_blob_seal(key2048(), pt, sizeof pt, &blob), SRUP_OK);
	assert_int_equal(EVP_OpenInit(ctx, EVP_aes_256_cbc(), blob.data + 4, 256, blob.data + 260,
				      key2048()),
			 1);
	assert_int_equal(EVP_OpenUpdate(ctx, out, &n1, blob.data + 284, (int)blob.len - 284), 1);
	assert_int_equal(EVP_OpenFinal(ctx, out + n1, &n2), 1);
	assert_int_equal(n1 + n2, sizeof pt);
	assert_memory_equal(out, pt, sizeof pt);
	EVP_CIPHER_CTX_free(ctx);
	srup_bytes_clear(&blob);
}

/* A blob laid out from OpenSSL's EVP_Seal, as libSRUP makes it, opens. */
static void test_blob_from_evp_seal_opens(void **state)
{
	static const uint8_t pt[40] = "0123456789abcdef0123456789abcdef-extra";
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	EVP_PKEY *pub = tu_public_only(tu_rsa_key(3072, 0));
	uint8_t blob[28 + 384 + 48], *ek = blob + 4;
	int ekl = 0, n1 = 0, n2 = 0;
	struct srup_bytes out = { 0 };

	(void)state;
	assert_int_equal(EVP_SealInit(ctx, EVP_aes_256_cbc(), &ek, &ekl, blob + 4 + 384, &pub, 1),
			 1);
	assert_int_equal(ekl, 384);
	assert_int_equal(EVP_SealUpdate(ctx, blob + 28 + 384, &n1, pt, sizeof pt), 1);
	assert_int_equal(EVP_SealFinal(ctx, blob + 28 + 384 + n1, &n2), 1);
	assert_int_equal(n1 + n2, 48);
	put_le32(blob, 384);
	put_le32(blob + 4 + 384 + 16, 48);
	put_le32(blob + 4 + 384 + 20, sizeof pt);
	assert_int_equal(srup_blob_open(tu_rsa_key(3072, 0), blob, sizeof blob, &out), SRUP_OK);
	assert_int_equal(out.len, sizeof pt);
	assert_memory_equal(out.data, pt, sizeof pt);
	srup_bytes_clear(&out);
	EVP_PKEY_free(pub);
	EVP_CIPHER_CTX_free(ctx);
}

/* A hand-made blob for the G3 tests: wraps an AES key of aes_key_len bytes
 * to key (RSA PKCS#1 v1.5), encrypts the already padded plaintext without
 * adding padding, and writes K, C and P exactly as given. */
struct crafted {
	uint8_t *data;
	size_t len;
};

static struct crafted craft(EVP_PKEY *key, size_t aes_key_len, const uint8_t *padded,
			    size_t padded_len, int32_t k, int32_t c, int32_t p)
{
	uint8_t aes_key[64] = { 0 }, iv[16];
	size_t K = (size_t)EVP_PKEY_get_size(key), wl = K;
	struct crafted b = { malloc(28 + K + padded_len), 28 + K + padded_len };
	EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
	EVP_CIPHER_CTX *cctx = EVP_CIPHER_CTX_new();
	int n1 = 0, n2 = 0;

	assert_int_equal(RAND_bytes(aes_key, (int)aes_key_len), 1);
	assert_int_equal(RAND_bytes(iv, 16), 1);
	assert_int_equal(EVP_PKEY_encrypt_init(pctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING), 1);
	assert_int_equal(EVP_PKEY_encrypt(pctx, b.data + 4, &wl, aes_key, aes_key_len), 1);
	assert_int_equal(wl, K);
	memcpy(b.data + 4 + K, iv, 16);
	assert_int_equal(EVP_EncryptInit_ex2(cctx, EVP_aes_256_cbc(), aes_key, iv, NULL), 1);
	assert_int_equal(EVP_CIPHER_CTX_set_padding(cctx, 0), 1);
	assert_int_equal(EVP_EncryptUpdate(cctx, b.data + 28 + K, &n1, padded, (int)padded_len),
			 1);
	assert_int_equal(EVP_EncryptFinal_ex(cctx, b.data + 28 + K + n1, &n2), 1);
	assert_int_equal((size_t)(n1 + n2), padded_len);
	put_le32(b.data, (uint32_t)k);
	put_le32(b.data + 4 + K + 16, (uint32_t)c);
	put_le32(b.data + 4 + K + 20, (uint32_t)p);
	EVP_CIPHER_CTX_free(cctx);
	EVP_PKEY_CTX_free(pctx);
	return b;
}

/* The 32-byte confirmation value padded to 48 bytes (PKCS#7). */
static void padded_value(uint8_t out[48])
{
	memcpy(out, "5e1f0c2d3b4a69788796a5b4c3d2e1f0", 32);
	memset(out + 32, 16, 16);
}

static void expect_open(const struct crafted *b, size_t len, enum srup_err err)
{
	struct srup_bytes out = { 0 };

	assert_int_equal(srup_blob_open(key2048(), b->data, len, &out), err);
	if (err) {
		assert_null(out.data);
		assert_int_equal(out.len, 0);
	}
	srup_bytes_clear(&out);
}

static void test_g3_blob_crafted_valid_opens(void **state)
{
	uint8_t padded[48];
	struct crafted b;

	(void)state;
	padded_value(padded);
	b = craft(key2048(), 32, padded, 48, 256, 48, 32);
	expect_open(&b, b.len, SRUP_OK);
	free(b.data);
}

static void test_g3_blob_k_negative_zero_or_not_modulus_size(void **state)
{
	static const int32_t bad_k[] = { -1, INT32_MIN, 0, 128, 255, 257, 384, 512, INT32_MAX };
	uint8_t padded[48];

	(void)state;
	padded_value(padded);
	for (size_t i = 0; i < sizeof bad_k / sizeof bad_k[0]; i++) {
		struct crafted b = craft(key2048(), 32, padded, 48, bad_k[i], 48, 32);

		expect_open(&b, b.len, SRUP_E_BLOB_FORMAT);
		free(b.data);
	}
}

static void test_g3_blob_shorter_than_its_header(void **state)
{
	uint8_t padded[48];
	struct crafted b;

	(void)state;
	padded_value(padded);
	b = craft(key2048(), 32, padded, 48, 256, 48, 32);
	/* Every prefix, including those that end inside K, key, IV, C or P. */
	for (size_t cut = 0; cut < b.len; cut++) {
		uint8_t *part = malloc(cut ? cut : 1);
		struct srup_bytes out = { 0 };

		memcpy(part, b.data, cut);
		assert_int_equal(srup_blob_open(key2048(), part, cut, &out), SRUP_E_BLOB_FORMAT);
		free(part);
	}
	free(b.data);
}

/* 28 + K + C must be the blob's length: C running past the end is refused
 * (libSRUP over-reads), and so is a C that leaves bytes over. */
static void test_g3_blob_c_past_end_or_short_of_end(void **state)
{
	uint8_t padded[64];
	struct crafted b;

	(void)state;
	padded_value(padded);
	memset(padded + 48, 7, 16);
	b = craft(key2048(), 32, padded, 48, 256, 64, 32);
	expect_open(&b, b.len, SRUP_E_BLOB_FORMAT);
	free(b.data);
	b = craft(key2048(), 32, padded, 64, 256, 48, 32);
	expect_open(&b, b.len, SRUP_E_BLOB_FORMAT);
	free(b.data);
}

static void test_g3_blob_c_zero_negative_or_not_multiple_of_16(void **state)
{
	static const int32_t bad_c[] = { 0, -16, -48, INT32_MIN, 47, 49, 33 };
	uint8_t padded[48];

	(void)state;
	padded_value(padded);
	for (size_t i = 0; i < sizeof bad_c / sizeof bad_c[0]; i++) {
		struct crafted b = craft(key2048(), 32, padded, 48, 256, bad_c[i], 32);

		expect_open(&b, b.len, SRUP_E_BLOB_FORMAT);
		/* Also when the blob really is that long (C not a multiple of 16). */
		if (bad_c[i] > 32 && bad_c[i] < 48)
			expect_open(&b, 28 + 256 + (size_t)bad_c[i], SRUP_E_BLOB_FORMAT);
		free(b.data);
	}
}

/* C over 4096 would overflow libSRUP's stack buffer. */
static void test_g3_blob_c_over_4096(void **state)
{
	uint8_t *padded = malloc(4112);
	struct crafted b;

	(void)state;
	assert_non_null(padded);
	memset(padded, 'x', 4112);
	memset(padded + 4096, 16, 16);
	b = craft(key2048(), 32, padded, 4112, 256, 4112, 4096);
	expect_open(&b, b.len, SRUP_E_BLOB_FORMAT);
	free(b.data);
	free(padded);
}

/* Each P of bad_p, in a blob that is otherwise a well-formed 32-byte value
 * (C = 48), is a format error. */
static void expect_bad_p(const int32_t *bad_p, size_t n)
{
	uint8_t padded[48];

	padded_value(padded);
	for (size_t i = 0; i < n; i++) {
		struct crafted b = craft(key2048(), 32, padded, 48, 256, 48, bad_p[i]);

		expect_open(&b, b.len, SRUP_E_BLOB_FORMAT);
		free(b.data);
	}
}

/* P larger than what the padding leaves: libSRUP's heap overflow. */
static void test_g3_blob_p_larger_than_plaintext(void **state)
{
	static const int32_t bad_p[] = { 33, 40, 47, 48, 64, 4079, 4080, 100000, INT32_MAX };

	(void)state;
	expect_bad_p(bad_p, sizeof bad_p / sizeof bad_p[0]);
}

static void test_g3_blob_p_smaller_than_plaintext_zero_or_negative(void **state)
{
	static const int32_t bad_p[] = { 31, 16, 1, 0, -1, -32, INT32_MIN };

	(void)state;
	expect_bad_p(bad_p, sizeof bad_p / sizeof bad_p[0]);
}

/* P over SRUP_BLOB_MAX_PLAINTEXT is refused even when it is consistent. */
static void test_g3_blob_p_over_max_plaintext(void **state)
{
	uint8_t *padded = malloc(4096);
	struct crafted b;

	(void)state;
	assert_non_null(padded);
	memset(padded, 'y', 4096);
	memset(padded + 4080, 16, 16);
	b = craft(key2048(), 32, padded, 4096, 256, 4096, 4080);
	expect_open(&b, b.len, SRUP_E_BLOB_FORMAT);
	free(b.data);
	free(padded);
}

static void test_g3_blob_aes_key_not_32_bytes(void **state)
{
	static const size_t bad_len[] = { 16, 24, 31, 33, 48 };
	uint8_t padded[48];

	(void)state;
	padded_value(padded);
	for (size_t i = 0; i < sizeof bad_len / sizeof bad_len[0]; i++) {
		struct crafted b = craft(key2048(), bad_len[i], padded, 48, 256, 48, 32);

		expect_open(&b, b.len, SRUP_E_DECRYPT);
		free(b.data);
	}
}

/* Strict PKCS#7: the pad length is 1..16 and every pad byte equals it. */
static void test_g3_blob_bad_padding(void **state)
{
	uint8_t padded[48];
	struct crafted b;

	(void)state;
	for (int variant = 0; variant < 5; variant++) {
		padded_value(padded);
		switch (variant) {
		case 0:
			padded[47] = 0; /* pad length 0 */
			break;
		case 1:
			padded[47] = 17; /* longer than a block */
			break;
		case 2:
			padded[40] = 15; /* one pad byte differs */
			break;
		case 3:
			padded[32] = 0; /* the first pad byte differs */
			break;
		case 4:
			padded[47] = 0xff;
			break;
		}
		b = craft(key2048(), 32, padded, 48, 256, 48, 32);
		expect_open(&b, b.len, SRUP_E_DECRYPT);
		free(b.data);
	}
	/* Valid padding (2 bytes) whose length disagrees with P is a format error. */
	padded_value(padded);
	padded[46] = padded[47] = 2;
	b = craft(key2048(), 32, padded, 48, 256, 48, 32);
	expect_open(&b, b.len, SRUP_E_BLOB_FORMAT);
	free(b.data);
}

static void test_g3_blob_wrong_recipient_or_garbage_key(void **state)
{
	static const uint8_t pt[32] = "5e1f0c2d3b4a69788796a5b4c3d2e1f0";
	struct srup_bytes blob = { 0 }, out = { 0 };

	(void)state;
	assert_int_equal(srup_blob_seal(tu_rsa_key(2048, 1), pt, sizeof pt, &blob), SRUP_OK);
	assert_int_equal(srup_blob_open(key2048(), blob.data, blob.len, &out), SRUP_E_DECRYPT);
	/* A key of another size: K no longer matches the modulus. */
	assert_int_equal(srup_blob_open(tu_rsa_key(3072, 0), blob.data, blob.len, &out),
			 SRUP_E_BLOB_FORMAT);
	memset(blob.data + 4, 0x5a, 256);
	assert_int_equal(srup_blob_open(tu_rsa_key(2048, 1), blob.data, blob.len, &out),
			 SRUP_E_DECRYPT);
	assert_null(out.data);
	srup_bytes_clear(&blob);
}

/* Any single flipped byte gives a clean result: an error, or (there is no
 * MAC, WIRE.md section 4) a plaintext of exactly P bytes. */
static void test_g3_blob_every_byte_flipped_never_crashes(void **state)
{
	static const uint8_t pt[32] = "5e1f0c2d3b4a69788796a5b4c3d2e1f0";
	struct srup_bytes blob = { 0 };

	(void)state;
	assert_int_equal(srup_blob_seal(key2048(), pt, sizeof pt, &blob), SRUP_OK);
	for (size_t i = 0; i < blob.len; i++) {
		for (int bit = 0; bit < 8; bit += 7) {
			struct srup_bytes out = { 0 };
			enum srup_err rc;

			blob.data[i] ^= (uint8_t)(1u << bit);
			rc = srup_blob_open(key2048(), blob.data, blob.len, &out);
			if (rc == SRUP_OK)
				assert_int_equal(out.len, le32(blob.data + 280));
			else
				assert_true(rc == SRUP_E_BLOB_FORMAT || rc == SRUP_E_DECRYPT);
			blob.data[i] ^= (uint8_t)(1u << bit);
			srup_bytes_clear(&out);
		}
	}
	srup_bytes_clear(&blob);
}

/* G4: open says how long the plaintext is, exactly. */
static void test_g4_open_returns_exact_plaintext_length(void **state)
{
	uint8_t pt[80];
	struct srup_bytes blob = { 0 }, out = { 0 };

	(void)state;
	memset(pt, 0, sizeof pt);
	for (size_t n = 1; n <= sizeof pt; n += 7) {
		assert_int_equal(srup_blob_seal(key2048(), pt, n, &blob), SRUP_OK);
		/* A previous plaintext in out is replaced. */
		assert_int_equal(srup_blob_open(key2048(), blob.data, blob.len, &out), SRUP_OK);
		assert_int_equal(out.len, n);
		assert_memory_equal(out.data, pt, n);
	}
	srup_bytes_clear(&out);
	srup_bytes_clear(&blob);
}

/* G5: no plaintext over the bound, none empty; the largest fits an lv16
 * even with a 4096-bit key. */
static void test_g5_seal_plaintext_bounds(void **state)
{
	uint8_t *pt = calloc(1, SRUP_BLOB_MAX_PLAINTEXT + 1);
	struct srup_msg *m = tu_make_msg(SRUP_TYPE_OBSERVE_REQUEST, 1, 1, 4, 0, 0), *back = NULL;
	struct srup_bytes blob = { 0 }, out = { 0 };
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_int_equal(srup_blob_seal(key2048(), pt, 0, &blob), SRUP_E_FIELD_BOUND);
	assert_int_equal(srup_blob_seal(key2048(), pt, SRUP_BLOB_MAX_PLAINTEXT + 1, &blob),
			 SRUP_E_FIELD_BOUND);
	assert_int_equal(srup_blob_seal(key2048(), NULL, 4, &blob), SRUP_E_ARG);
	assert_null(blob.data);
	assert_int_equal(srup_msg_seal(m, tu_rsa_key(4096, 0), pt, SRUP_BLOB_MAX_PLAINTEXT),
			 SRUP_OK);
	assert_int_equal(m->encrypted.len, 28 + 512 + 4080);
	assert_int_equal(srup_msg_sign(m, key2048()), SRUP_OK);
	assert_int_equal(srup_msg_encode(m, &buf, &len), SRUP_OK);
	assert_int_equal(srup_msg_decode(buf, len, &back, NULL), SRUP_OK);
	assert_int_equal(srup_msg_verify(back, key2048()), SRUP_OK);
	assert_int_equal(srup_msg_open(back, tu_rsa_key(4096, 0), &out), SRUP_OK);
	assert_int_equal(out.len, SRUP_BLOB_MAX_PLAINTEXT);
	srup_bytes_clear(&out);
	free(buf);
	srup_msg_free(back);
	srup_msg_free(m);
	free(pt);
}

static void test_msg_seal_open_only_for_blob_types(void **state)
{
	static const uint8_t pt[5] = "hello";

	(void)state;
	for (unsigned code = 0; code < N_TYPES; code++) {
		struct srup_msg *m = tu_make_msg((uint8_t)code, 1, 1, 4, 0, 0);
		const struct srup_field_desc *f = srup_type_blob_field(srup_type_by_code((uint8_t)code));
		struct srup_bytes out = { 0 };

		if (!f) {
			assert_int_equal(srup_msg_seal(m, key2048(), pt, sizeof pt), SRUP_E_NO_BLOB);
			assert_int_equal(srup_msg_open(m, key2048(), &out), SRUP_E_NO_BLOB);
		} else {
			assert_int_equal(srup_msg_seal(m, key2048(), pt, sizeof pt), SRUP_OK);
			assert_int_equal(srup_field_bytes(m, f)->len, 28 + 256 + 16);
			assert_int_equal(srup_msg_open(m, key2048(), &out), SRUP_OK);
			assert_memory_equal(out.data, pt, sizeof pt);
			srup_bytes_clear(&out);
			/* An empty blob field does not open. */
			srup_bytes_clear(srup_field_bytes(m, f));
			assert_int_equal(srup_msg_open(m, key2048(), &out), SRUP_E_BLOB_FORMAT);
		}
		srup_msg_free(m);
	}
}

static int teardown_keys(void **state)
{
	(void)state;
	tu_free_keys();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_check_accepts_rsa_2048_to_4096),
		cmocka_unit_test(test_key_rejects_rsa_1024_ec_and_pss),
		cmocka_unit_test(test_sign_verify_every_type_each_key_size),
		cmocka_unit_test(test_sign_is_deterministic_and_replaces_signature),
		cmocka_unit_test(test_verify_fails_when_any_field_changes),
		cmocka_unit_test(test_g7_verify_rejects_signature_not_key_size),
		cmocka_unit_test(test_generic_and_unsigned_messages),
		cmocka_unit_test(test_g9_sign_failure_leaves_message_unsigned),
		cmocka_unit_test(test_sign_verify_large_message),
		cmocka_unit_test(test_blob_round_trip_each_key_size_layout),
		cmocka_unit_test(test_blob_is_fresh_every_time),
		cmocka_unit_test(test_blob_opens_with_evp_open),
		cmocka_unit_test(test_blob_from_evp_seal_opens),
		cmocka_unit_test(test_g3_blob_crafted_valid_opens),
		cmocka_unit_test(test_g3_blob_k_negative_zero_or_not_modulus_size),
		cmocka_unit_test(test_g3_blob_shorter_than_its_header),
		cmocka_unit_test(test_g3_blob_c_past_end_or_short_of_end),
		cmocka_unit_test(test_g3_blob_c_zero_negative_or_not_multiple_of_16),
		cmocka_unit_test(test_g3_blob_c_over_4096),
		cmocka_unit_test(test_g3_blob_p_larger_than_plaintext),
		cmocka_unit_test(test_g3_blob_p_smaller_than_plaintext_zero_or_negative),
		cmocka_unit_test(test_g3_blob_p_over_max_plaintext),
		cmocka_unit_test(test_g3_blob_aes_key_not_32_bytes),
		cmocka_unit_test(test_g3_blob_bad_padding),
		cmocka_unit_test(test_g3_blob_wrong_recipient_or_garbage_key),
		cmocka_unit_test(test_g3_blob_every_byte_flipped_never_crashes),
		cmocka_unit_test(test_g4_open_returns_exact_plaintext_length),
		cmocka_unit_test(test_g5_seal_plaintext_bounds),
		cmocka_unit_test(test_msg_seal_open_only_for_blob_types),
	};

	return cmocka_run_group_tests(tests, NULL, teardown_keys);
}
