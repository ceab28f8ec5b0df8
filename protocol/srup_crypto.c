/* Signatures (RSASSA-PKCS1-v1_5, SHA-256, over the pre-sign bytes) and the
 * encrypted blob (EVP_Seal layout: RSA PKCS#1 v1.5 key wrap + AES-256-CBC),
 * WIRE.md sections 2 and 4. OpenSSL 3 EVP interfaces only. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "srup.h"
#include "srup_cursor.h"
#include "srup_internal.h"

/* Blob header: K (int32), IV, C (int32), P (int32); K and C bytes follow. */
#define BLOB_FIXED_LEN (4 + SRUP_BLOB_IV_LEN + 4 + 4)
/* libSRUP decrypts into a fixed 4096-byte buffer (WIRE.md G3). */
#define BLOB_MAX_CIPHERTEXT 4096u
#define AES_BLOCK 16u

/* Pre-sign bytes of most messages fit here, which saves an allocation per
 * sign or verify; larger ones (long URLs, data) are allocated. */
#define PRESIGN_STACK_LEN 1024u

enum srup_err srup_key_check(EVP_PKEY *key)
{
	int bits;

	if (!key)
		return SRUP_E_ARG;
	/* "RSA" only: an RSA-PSS key cannot make PKCS#1 v1.5 signatures. */
	if (!EVP_PKEY_is_a(key, "RSA"))
		return SRUP_E_KEY;
	bits = EVP_PKEY_get_bits(key);
	if (bits < SRUP_RSA_MIN_BITS || bits > SRUP_RSA_MAX_BITS)
		return SRUP_E_KEY;
	return SRUP_OK;
}

/* The pre-sign bytes, in the caller's stack buffer when they fit. */
struct presign {
	uint8_t stack[PRESIGN_STACK_LEN];
	uint8_t *data;
	size_t len;
};

static enum srup_err presign_build(const struct srup_msg *m, struct presign *ps)
{
	enum srup_err rc = srup_presign_length(m, &ps->len);

	if (rc)
		return rc;
	ps->data = ps->stack;
	if (ps->len > sizeof ps->stack) {
		ps->data = malloc(ps->len);
		if (!ps->data)
			return SRUP_E_NOMEM;
	}
	rc = srup_presign_write(m, ps->data, ps->len);
	if (rc && ps->data != ps->stack) {
		free(ps->data);
		ps->data = NULL;
	}
	return rc;
}

static void presign_release(struct presign *ps)
{
	if (ps->data && ps->data != ps->stack)
		free(ps->data);
	ps->data = NULL;
}

static enum srup_err signable(const struct srup_msg *m, EVP_PKEY *key)
{
	const struct srup_type_desc *t;

	if (!m || !key)
		return SRUP_E_ARG;
	t = srup_type_by_code(m->type);
	if (!t)
		return SRUP_E_TYPE;
	if (!t->is_signed)
		return SRUP_E_UNSIGNED;
	return srup_key_check(key);
}

enum srup_err srup_msg_sign(struct srup_msg *m, EVP_PKEY *private_key)
{
	EVP_MD_CTX *ctx = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	struct presign ps = { .data = NULL };
	uint8_t *sig = NULL;
	size_t sig_len;
	int key_size;
	enum srup_err rc;

	rc = signable(m, private_key);
	if (rc)
		return rc;
	key_size = EVP_PKEY_get_size(private_key);
	if (key_size < (int)SRUP_SIG_MIN_BYTES || key_size > (int)SRUP_SIG_MAX_BYTES)
		return SRUP_E_KEY;
	rc = presign_build(m, &ps);
	if (rc)
		return rc;

	/* G9: every step is checked; on failure the old signature stays and no
	 * uninitialised buffer is ever attached to the message. */
	rc = SRUP_E_CRYPTO;
	sig_len = (size_t)key_size;
	sig = malloc(sig_len);
	ctx = EVP_MD_CTX_new();
	if (!sig || !ctx) {
		rc = SRUP_E_NOMEM;
		goto out;
	}
	if (EVP_DigestSignInit_ex(ctx, &pctx, "SHA256", NULL, NULL, private_key, NULL) != 1)
		goto out;
	if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1)
		goto out;
	if (EVP_DigestSign(ctx, sig, &sig_len, ps.data, ps.len) != 1)
		goto out;
	if (sig_len != (size_t)key_size)
		goto out;
	free(m->signature.data);
	m->signature.data = sig;
	m->signature.len = sig_len;
	sig = NULL;
	rc = SRUP_OK;
out:
	if (rc == SRUP_E_CRYPTO)
		ERR_clear_error();
	free(sig);
	EVP_MD_CTX_free(ctx);
	presign_release(&ps);
	return rc;
}

enum srup_err srup_msg_verify(const struct srup_msg *m, EVP_PKEY *public_key)
{
	EVP_MD_CTX *ctx = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	struct presign ps = { .data = NULL };
	enum srup_err rc;
	int ok;

	rc = signable(m, public_key);
	if (rc)
		return rc;
	if (m->signature.len == 0 || !m->signature.data)
		return SRUP_E_UNSIGNED;
	/* G7: the signature must be exactly as long as the signer's modulus. */
	if (m->signature.len != (size_t)EVP_PKEY_get_size(public_key))
		return SRUP_E_SIG_LENGTH;
	/* Our decoder is strict, so re-serializing the parsed fields gives back
	 * exactly the received bytes minus sig_len and signature. */
	rc = presign_build(m, &ps);
	if (rc)
		return rc;

	rc = SRUP_E_CRYPTO;
	ctx = EVP_MD_CTX_new();
	if (!ctx) {
		rc = SRUP_E_NOMEM;
		goto out;
	}
	if (EVP_DigestVerifyInit_ex(ctx, &pctx, "SHA256", NULL, NULL, public_key, NULL) != 1)
		goto out;
	if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1)
		goto out;
	ok = EVP_DigestVerify(ctx, m->signature.data, m->signature.len, ps.data, ps.len);
	/* 0 is a mismatch; a negative value is a signature that is not even
	 * well formed for this key, which is just as false. */
	rc = ok == 1 ? SRUP_OK : SRUP_E_BAD_SIGNATURE;
out:
	if (rc != SRUP_OK)
		ERR_clear_error();
	EVP_MD_CTX_free(ctx);
	presign_release(&ps);
	return rc;
}

/* ---- the encrypted blob ---- */

static void put_int32le(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

enum srup_err srup_blob_seal(EVP_PKEY *recipient_public, const uint8_t *plaintext, size_t len,
			     struct srup_bytes *blob)
{
	uint8_t aes_key[SRUP_BLOB_AES_KEY_LEN];
	uint8_t *buf = NULL, *iv, *ct;
	EVP_PKEY_CTX *pctx = NULL;
	EVP_CIPHER_CTX *cctx = NULL;
	size_t key_size, ct_len, total, wrapped_len;
	int out1 = 0, out2 = 0;
	enum srup_err rc;

	if (!recipient_public || !blob || (!plaintext && len))
		return SRUP_E_ARG;
	/* G5: libSRUP peers cannot open more than this. */
	if (len == 0 || len > SRUP_BLOB_MAX_PLAINTEXT)
		return SRUP_E_FIELD_BOUND;
	rc = srup_key_check(recipient_public);
	if (rc)
		return rc;
	key_size = (size_t)EVP_PKEY_get_size(recipient_public);
	ct_len = AES_BLOCK * (len / AES_BLOCK + 1);
	total = BLOB_FIXED_LEN + key_size + ct_len;
	if (total > SRUP_LV16_MAX)
		return SRUP_E_FIELD_BOUND;

	rc = SRUP_E_CRYPTO;
	buf = malloc(total);
	if (!buf) {
		rc = SRUP_E_NOMEM;
		goto out;
	}
	iv = buf + 4 + key_size;
	ct = iv + SRUP_BLOB_IV_LEN + 8;
	if (RAND_priv_bytes(aes_key, sizeof aes_key) != 1 ||
	    RAND_bytes(iv, SRUP_BLOB_IV_LEN) != 1)
		goto out;

	pctx = EVP_PKEY_CTX_new_from_pkey(NULL, recipient_public, NULL);
	if (!pctx || EVP_PKEY_encrypt_init(pctx) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1)
		goto out;
	wrapped_len = key_size;
	if (EVP_PKEY_encrypt(pctx, buf + 4, &wrapped_len, aes_key, sizeof aes_key) != 1 ||
	    wrapped_len != key_size)
		goto out;

	cctx = EVP_CIPHER_CTX_new();
	if (!cctx || EVP_EncryptInit_ex2(cctx, EVP_aes_256_cbc(), aes_key, iv, NULL) != 1 ||
	    EVP_EncryptUpdate(cctx, ct, &out1, plaintext, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(cctx, ct + out1, &out2) != 1 ||
	    (size_t)out1 + (size_t)out2 != ct_len)
		goto out;

	put_int32le(buf, (uint32_t)key_size);
	put_int32le(iv + SRUP_BLOB_IV_LEN, (uint32_t)ct_len);
	put_int32le(iv + SRUP_BLOB_IV_LEN + 4, (uint32_t)len);
	free(blob->data);
	blob->data = buf;
	blob->len = total;
	buf = NULL;
	rc = SRUP_OK;
out:
	OPENSSL_cleanse(aes_key, sizeof aes_key);
	if (rc == SRUP_E_CRYPTO)
		ERR_clear_error();
	EVP_CIPHER_CTX_free(cctx);
	EVP_PKEY_CTX_free(pctx);
	free(buf);
	return rc;
}

/* Constant-time check of PKCS#7 padding over the last block of buf (len is a
 * non-zero multiple of 16). Returns the pad length, or 0 if it is invalid. */
static size_t pkcs7_pad_length(const uint8_t *buf, size_t len)
{
	unsigned pad = buf[len - 1];
	unsigned bad = (unsigned)(pad == 0) | (unsigned)(pad > AES_BLOCK);

	for (unsigned i = 0; i < AES_BLOCK; i++) {
		/* in_pad is all-ones when byte len-1-i belongs to the padding. */
		unsigned in_pad = 0u - (unsigned)(i < pad);

		bad |= in_pad & (unsigned)(buf[len - 1 - i] ^ pad);
	}
	return bad ? 0 : pad;
}

static uint32_t read_int32le(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The blob's integers are native C ints (WIRE.md Q4), so they may be negative. */
static int32_t as_int32(uint32_t v)
{
	int32_t r;

	memcpy(&r, &v, sizeof r);
	return r;
}

enum srup_err srup_blob_open(EVP_PKEY *recipient_private, const uint8_t *blob, size_t len,
			     struct srup_bytes *plaintext)
{
	/* The unwrapped AES key; OpenSSL wants room for a whole RSA block. */
	uint8_t aes_key[SRUP_SIG_MAX_BYTES];
	uint8_t clear[BLOB_MAX_CIPHERTEXT];
	const uint8_t *p, *wrapped, *iv, *ct;
	struct srup_cursor c;
	EVP_PKEY_CTX *pctx = NULL;
	EVP_CIPHER_CTX *cctx = NULL;
	int32_t k, ct_len, pt_len;
	size_t key_size, unwrapped_len = 0, pad;
	int out1 = 0, out2 = 0;
	uint8_t *result = NULL;
	enum srup_err rc;

	if (!recipient_private || !plaintext || (!blob && len))
		return SRUP_E_ARG;
	rc = srup_key_check(recipient_private);
	if (rc)
		return rc;
	key_size = (size_t)EVP_PKEY_get_size(recipient_private);

	/* G3: every length in the blob is checked before it is used. */
	srup_cursor_init(&c, blob, len);
	if (srup_cursor_bytes(&c, 4, &p) != SRUP_OK)
		return SRUP_E_BLOB_FORMAT;
	k = as_int32(read_int32le(p));
	if (k <= 0 || (size_t)k != key_size)
		return SRUP_E_BLOB_FORMAT;
	if (srup_cursor_bytes(&c, (size_t)k, &wrapped) != SRUP_OK ||
	    srup_cursor_bytes(&c, SRUP_BLOB_IV_LEN, &iv) != SRUP_OK ||
	    srup_cursor_bytes(&c, 4, &p) != SRUP_OK)
		return SRUP_E_BLOB_FORMAT;
	ct_len = as_int32(read_int32le(p));
	if (srup_cursor_bytes(&c, 4, &p) != SRUP_OK)
		return SRUP_E_BLOB_FORMAT;
	pt_len = as_int32(read_int32le(p));
	if (ct_len <= 0 || (size_t)ct_len % AES_BLOCK || (size_t)ct_len > BLOB_MAX_CIPHERTEXT)
		return SRUP_E_BLOB_FORMAT;
	/* 28 + K + C == blob length: the ciphertext is exactly what is left. */
	if ((size_t)ct_len != srup_cursor_left(&c))
		return SRUP_E_BLOB_FORMAT;
	if (pt_len <= 0 || (size_t)pt_len > SRUP_BLOB_MAX_PLAINTEXT)
		return SRUP_E_BLOB_FORMAT;
	/* PKCS#7 always pads 1..16 bytes. */
	if (pt_len >= ct_len || ct_len - pt_len > (int32_t)AES_BLOCK)
		return SRUP_E_BLOB_FORMAT;
	if (srup_cursor_bytes(&c, (size_t)ct_len, &ct) != SRUP_OK)
		return SRUP_E_BLOB_FORMAT;

	rc = SRUP_E_DECRYPT;
	pctx = EVP_PKEY_CTX_new_from_pkey(NULL, recipient_private, NULL);
	if (!pctx || EVP_PKEY_decrypt_init(pctx) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1) {
		rc = SRUP_E_CRYPTO;
		goto out;
	}
	unwrapped_len = sizeof aes_key;
	if (EVP_PKEY_decrypt(pctx, aes_key, &unwrapped_len, wrapped, (size_t)k) != 1)
		goto out;
	if (unwrapped_len != SRUP_BLOB_AES_KEY_LEN)
		goto out;

	/* Padding is checked here, strictly, rather than by OpenSSL. */
	cctx = EVP_CIPHER_CTX_new();
	if (!cctx || EVP_DecryptInit_ex2(cctx, EVP_aes_256_cbc(), aes_key, iv, NULL) != 1 ||
	    EVP_CIPHER_CTX_set_padding(cctx, 0) != 1 ||
	    EVP_DecryptUpdate(cctx, clear, &out1, ct, ct_len) != 1 ||
	    EVP_DecryptFinal_ex(cctx, clear + out1, &out2) != 1 ||
	    out1 + out2 != ct_len)
		goto out;
	pad = pkcs7_pad_length(clear, (size_t)ct_len);
	if (pad == 0)
		goto out;
	if ((size_t)ct_len - pad != (size_t)pt_len) {
		rc = SRUP_E_BLOB_FORMAT;
		goto out;
	}
	result = malloc((size_t)pt_len);
	if (!result) {
		rc = SRUP_E_NOMEM;
		goto out;
	}
	memcpy(result, clear, (size_t)pt_len);
	srup_bytes_clear(plaintext);
	plaintext->data = result;
	plaintext->len = (size_t)pt_len;
	rc = SRUP_OK;
out:
	OPENSSL_cleanse(aes_key, sizeof aes_key);
	OPENSSL_cleanse(clear, sizeof clear);
	if (rc != SRUP_OK)
		ERR_clear_error();
	EVP_CIPHER_CTX_free(cctx);
	EVP_PKEY_CTX_free(pctx);
	return rc;
}

enum srup_err srup_msg_seal(struct srup_msg *m, EVP_PKEY *recipient_public,
			    const uint8_t *plaintext, size_t len)
{
	const struct srup_field_desc *f;

	if (!m)
		return SRUP_E_ARG;
	f = srup_type_blob_field(srup_type_by_code(m->type));
	if (!f)
		return SRUP_E_NO_BLOB;
	return srup_blob_seal(recipient_public, plaintext, len, srup_field_bytes(m, f));
}

enum srup_err srup_msg_open(const struct srup_msg *m, EVP_PKEY *recipient_private,
			    struct srup_bytes *plaintext)
{
	const struct srup_field_desc *f;
	const struct srup_bytes *blob;

	if (!m)
		return SRUP_E_ARG;
	f = srup_type_blob_field(srup_type_by_code(m->type));
	if (!f)
		return SRUP_E_NO_BLOB;
	blob = (const struct srup_bytes *)((const char *)m + f->offset);
	return srup_blob_open(recipient_private, blob->data, blob->len, plaintext);
}
