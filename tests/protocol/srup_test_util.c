#include "srup_test_util.h"

#include "srup_hex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

uint8_t *tu_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long size;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)size + 1);
		if (buf && fread(buf, 1, (size_t)size, f) != (size_t)size) {
			free(buf);
			buf = NULL;
		}
		if (buf) {
			buf[size] = 0;
			*len = (size_t)size;
		}
	}
	fclose(f);
	return buf;
}

uint8_t *tu_unhex(const char *hex, size_t *len)
{
	uint8_t *out;
	size_t bad_at;

	if (srup_hex_decode(hex, strlen(hex), false, &out, len, &bad_at) != 0)
		return NULL;
	return out;
}

EVP_PKEY *tu_load_private(const char *path)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *k;

	if (!f)
		return NULL;
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	return k;
}

EVP_PKEY *tu_load_public(const char *path)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *k;

	if (!f)
		return NULL;
	k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	return k;
}

EVP_PKEY *tu_public_only(EVP_PKEY *key)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	EVP_PKEY *pub = NULL;
	int n = i2d_PUBKEY(key, &der);

	if (n > 0) {
		p = der;
		pub = d2i_PUBKEY(NULL, &p, n);
	}
	OPENSSL_free(der);
	return pub;
}

static EVP_PKEY *key_cache[3][2];

EVP_PKEY *tu_rsa_key(int bits, int index)
{
	int slot = bits == 2048 ? 0 : bits == 3072 ? 1 : bits == 4096 ? 2 : -1;

	if (slot < 0 || index < 0 || index > 1)
		return NULL;
	if (!key_cache[slot][index])
		key_cache[slot][index] = EVP_RSA_gen((unsigned)bits);
	return key_cache[slot][index];
}

void tu_free_keys(void)
{
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 2; j++) {
			EVP_PKEY_free(key_cache[i][j]);
			key_cache[i][j] = NULL;
		}
}

static int fill_bytes(struct srup_bytes *b, size_t len, uint8_t salt)
{
	uint8_t *tmp = malloc(len ? len : 1);
	int rc;

	if (!tmp)
		return -1;
	/* Every 7th byte is NUL: nothing may stop at a NUL (WIRE.md G8). */
	for (size_t i = 0; i < len; i++)
		tmp[i] = i % 7 == 3 ? 0 : (uint8_t)(i * 31 + salt);
	rc = srup_bytes_set(b, tmp, len) == SRUP_OK ? 0 : -1;
	free(tmp);
	return rc;
}

struct srup_msg *tu_make_msg(uint8_t code, uint64_t id, uint8_t byte, size_t token_len,
			     size_t field_len, size_t sig_len)
{
	const struct srup_type_desc *t = srup_type_by_code(code);
	struct srup_msg *m = srup_msg_new(code);

	if (!t || !m)
		goto fail;
	m->sequence_id = id;
	m->sender_id = ~id;
	if (fill_bytes(&m->token, token_len, 1))
		goto fail;
	if (sig_len && t->is_signed && fill_bytes(&m->signature, sig_len, 2))
		goto fail;
	for (size_t i = 0; i < t->n_fields; i++) {
		const struct srup_field_desc *f = &t->fields[i];

		switch (f->kind) {
		case SRUP_FIELD_U8:
			*srup_field_u8(m, f) = byte;
			break;
		case SRUP_FIELD_ID64:
			*srup_field_id64(m, f) = id ^ i;
			break;
		case SRUP_FIELD_LV16:
			if (fill_bytes(srup_field_bytes(m, f), field_len, (uint8_t)(3 + i)))
				goto fail;
			break;
		}
	}
	return m;
fail:
	srup_msg_free(m);
	return NULL;
}

static int bytes_equal(const struct srup_bytes *a, const struct srup_bytes *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

int tu_msg_equal(const struct srup_msg *a, const struct srup_msg *b)
{
	const struct srup_type_desc *t;
	struct srup_msg *ma = (struct srup_msg *)a, *mb = (struct srup_msg *)b;

	if (a->version != b->version || a->type != b->type || a->sequence_id != b->sequence_id ||
	    a->sender_id != b->sender_id || !bytes_equal(&a->token, &b->token) ||
	    !bytes_equal(&a->signature, &b->signature))
		return 0;
	t = srup_type_by_code(a->type);
	if (!t)
		return 0;
	for (size_t i = 0; i < t->n_fields; i++) {
		const struct srup_field_desc *f = &t->fields[i];

		switch (f->kind) {
		case SRUP_FIELD_U8:
			if (*srup_field_u8(ma, f) != *srup_field_u8(mb, f))
				return 0;
			break;
		case SRUP_FIELD_ID64:
			if (*srup_field_id64(ma, f) != *srup_field_id64(mb, f))
				return 0;
			break;
		case SRUP_FIELD_LV16:
			if (!bytes_equal(srup_field_bytes(ma, f), srup_field_bytes(mb, f)))
				return 0;
			break;
		}
	}
	return 1;
}
