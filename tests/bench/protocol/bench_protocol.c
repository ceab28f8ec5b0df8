/* srup-bench-protocol: libsrup throughput and crypto cost.
 *
 * Codec: encode and decode of every message type without crypto, in
 * messages/s and MB/s. Crypto: mean cost of sign, verify, seal and open
 * next to raw OpenSSL EVP calls doing the same work on the same bytes in the
 * same run (interleaved in rounds so drift hits both alike), and the ratio
 * ours/raw.
 *
 * Usage: srup-bench-protocol [CODEC_ITERATIONS [CRYPTO_ITERATIONS [BITS]]]
 * Prints figures only; exits 1 if an operation fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "srup.h"
#include "srup_msg_layout.h"

#define ROUNDS 5
#define N_TYPES (SRUP_TYPE_GROUP_DESTROY + 1)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, enum srup_err rc)
{
	fprintf(stderr, "srup-bench-protocol: %s: %s\n", what, srup_strerror(rc));
	exit(1);
}

static void check(const char *what, enum srup_err rc)
{
	if (rc != SRUP_OK)
		die(what, rc);
}

static void check_ossl(const char *what, int ok)
{
	if (ok != 1) {
		fprintf(stderr, "srup-bench-protocol: %s failed\n", what);
		exit(1);
	}
}

/* A representative message of each type: 16-byte token, 256-byte
 * signature, 40-byte text fields and a 332-byte blob (RSA-2048, 32 bytes). */
static struct srup_msg *sample(uint8_t code)
{
	const struct srup_type_desc *t = srup_type_by_code(code);
	struct srup_msg *m = srup_msg_new(code);
	uint8_t fill[400];

	if (!m)
		die("srup_msg_new", SRUP_E_NOMEM);
	memset(fill, 0xa5, sizeof fill);
	m->sequence_id = 0x0102030405060708ull;
	m->sender_id = 0x1122334455667788ull;
	check("token", srup_bytes_set(&m->token, "tok-benchmark-01", 16));
	if (t->is_signed)
		check("signature", srup_bytes_set(&m->signature, fill, 256));
	for (size_t i = 0; i < t->n_fields; i++) {
		const struct srup_field_desc *f = &t->fields[i];

		if (f->kind == SRUP_FIELD_U8)
			*srup_field_u8(m, f) = 0x60;
		else if (f->kind == SRUP_FIELD_ID64)
			*srup_field_id64(m, f) = 0xc1c2c3c4c5c6c7c8ull;
		else
			check(f->name, srup_bytes_set(srup_field_bytes(m, f), fill,
						      f->is_blob ? 332 : 40));
	}
	return m;
}

static void bench_codec(long iterations)
{
	printf("codec, no crypto: %ld messages per type and direction\n", iterations);
	printf("%-20s %6s %13s %11s %13s %11s\n", "type", "bytes", "encode msg/s", "encode MB/s",
	       "decode msg/s", "decode MB/s");
	for (unsigned code = 0; code < N_TYPES; code++) {
		struct srup_msg *m = sample((uint8_t)code);
		uint8_t *wire;
		size_t len;
		double t0, t_enc, t_dec;

		check("encode", srup_msg_encode(m, &wire, &len));
		t0 = now();
		for (long i = 0; i < iterations; i++) {
			uint8_t *out;
			size_t n;

			check("encode", srup_msg_encode(m, &out, &n));
			free(out);
		}
		t_enc = now() - t0;
		t0 = now();
		for (long i = 0; i < iterations; i++) {
			struct srup_msg *d;

			check("decode", srup_msg_decode(wire, len, &d, NULL));
			srup_msg_free(d);
		}
		t_dec = now() - t0;
		printf("%-20s %6zu %13.0f %11.1f %13.0f %11.1f\n", srup_type_by_code((uint8_t)code)->name,
		       len, (double)iterations / t_enc, (double)iterations * (double)len / t_enc / 1e6,
		       (double)iterations / t_dec, (double)iterations * (double)len / t_dec / 1e6);
		free(wire);
		srup_msg_free(m);
	}
}

/* ---- the same work done with raw EVP calls ---- */

struct crypto_ctx {
	EVP_PKEY *key;   /* private */
	EVP_PKEY *pub;   /* public only */
	struct srup_msg *msg;
	uint8_t *presign;
	size_t presign_len;
	uint8_t value[32];
	struct srup_bytes blob;
};

static void raw_sign(struct crypto_ctx *c)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	uint8_t sig[512];
	size_t sig_len = sizeof sig;

	check_ossl("EVP_DigestSignInit_ex",
		   EVP_DigestSignInit_ex(ctx, &pctx, "SHA256", NULL, NULL, c->key, NULL));
	check_ossl("set padding", EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING));
	check_ossl("EVP_DigestSign",
		   EVP_DigestSign(ctx, sig, &sig_len, c->presign, c->presign_len));
	EVP_MD_CTX_free(ctx);
}

static void raw_verify(struct crypto_ctx *c)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;

	check_ossl("EVP_DigestVerifyInit_ex",
		   EVP_DigestVerifyInit_ex(ctx, &pctx, "SHA256", NULL, NULL, c->pub, NULL));
	check_ossl("set padding", EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING));
	check_ossl("EVP_DigestVerify",
		   EVP_DigestVerify(ctx, c->msg->signature.data, c->msg->signature.len, c->presign,
				    c->presign_len));
	EVP_MD_CTX_free(ctx);
}

static void raw_seal(struct crypto_ctx *c)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	uint8_t ek[512], iv[16], ct[64], *ekp = ek;
	int ekl = 0, n1 = 0, n2 = 0;

	check_ossl("EVP_SealInit", EVP_SealInit(ctx, EVP_aes_256_cbc(), &ekp, &ekl, iv, &c->pub, 1) > 0);
	check_ossl("EVP_SealUpdate", EVP_SealUpdate(ctx, ct, &n1, c->value, sizeof c->value));
	check_ossl("EVP_SealFinal", EVP_SealFinal(ctx, ct + n1, &n2));
	EVP_CIPHER_CTX_free(ctx);
}

static void raw_open(struct crypto_ctx *c)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	size_t k = (size_t)EVP_PKEY_get_size(c->key);
	const uint8_t *b = c->blob.data;
	uint8_t pt[64];
	int n1 = 0, n2 = 0;

	check_ossl("EVP_OpenInit",
		   EVP_OpenInit(ctx, EVP_aes_256_cbc(), b + 4, (int)k, b + 4 + k, c->key) > 0);
	check_ossl("EVP_OpenUpdate",
		   EVP_OpenUpdate(ctx, pt, &n1, b + 28 + k, (int)(c->blob.len - 28 - k)));
	check_ossl("EVP_OpenFinal", EVP_OpenFinal(ctx, pt + n1, &n2));
	EVP_CIPHER_CTX_free(ctx);
}

static void ours_sign(struct crypto_ctx *c)
{
	check("srup_msg_sign", srup_msg_sign(c->msg, c->key));
}

static void ours_verify(struct crypto_ctx *c)
{
	check("srup_msg_verify", srup_msg_verify(c->msg, c->pub));
}

static void ours_seal(struct crypto_ctx *c)
{
	struct srup_bytes blob = { 0 };

	check("srup_blob_seal", srup_blob_seal(c->pub, c->value, sizeof c->value, &blob));
	srup_bytes_clear(&blob);
}

static void ours_open(struct crypto_ctx *c)
{
	struct srup_bytes pt = { 0 };

	check("srup_blob_open", srup_blob_open(c->key, c->blob.data, c->blob.len, &pt));
	srup_bytes_clear(&pt);
}

static void compare(const char *name, void (*ours)(struct crypto_ctx *),
		    void (*raw)(struct crypto_ctx *), struct crypto_ctx *c, long iterations)
{
	double t_ours = 0, t_raw = 0, t0;
	long per_round = iterations / ROUNDS > 0 ? iterations / ROUNDS : 1;

	ours(c); /* warm up both paths (provider fetches, caches) */
	raw(c);
	for (int r = 0; r < ROUNDS; r++) {
		t0 = now();
		for (long i = 0; i < per_round; i++)
			ours(c);
		t_ours += now() - t0;
		t0 = now();
		for (long i = 0; i < per_round; i++)
			raw(c);
		t_raw += now() - t0;
	}
	t_ours /= (double)(per_round * ROUNDS);
	t_raw /= (double)(per_round * ROUNDS);
	printf("%-8s %12.1f %12.1f %9.3f\n", name, t_ours * 1e6, t_raw * 1e6, t_ours / t_raw);
}

static void bench_crypto(long iterations, int bits)
{
	struct crypto_ctx c = { 0 };
	unsigned char *der = NULL;
	const unsigned char *p;
	int der_len;

	c.key = EVP_RSA_gen((unsigned)bits);
	if (!c.key)
		die("RSA key generation", SRUP_E_CRYPTO);
	der_len = i2d_PUBKEY(c.key, &der);
	p = der;
	c.pub = der_len > 0 ? d2i_PUBKEY(NULL, &p, der_len) : NULL;
	OPENSSL_free(der);
	if (!c.pub)
		die("public key", SRUP_E_CRYPTO);
	memcpy(c.value, "5e1f0c2d3b4a69788796a5b4c3d2e1f0", sizeof c.value);

	c.msg = srup_msg_new(SRUP_TYPE_OBSERVE_REQUEST);
	c.msg->sequence_id = 0x0102030405060708ull;
	c.msg->sender_id = 0x1122334455667788ull;
	c.msg->joining_device_id = 0xc1c2c3c4c5c6c7c8ull;
	check("token", srup_bytes_set(&c.msg->token, "tok-observe_req", 15));
	check("seal", srup_msg_seal(c.msg, c.pub, c.value, sizeof c.value));
	check("sign", srup_msg_sign(c.msg, c.key));
	check("presign", srup_msg_presign(c.msg, &c.presign, &c.presign_len));
	check("blob", srup_bytes_set(&c.blob, c.msg->encrypted.data, c.msg->encrypted.len));

	printf("\ncrypto: RSA-%d, observe_request (%zu pre-sign bytes, %zu-byte blob of a "
	       "32-byte value), %ld iterations each\n",
	       bits, c.presign_len, c.blob.len, iterations);
	printf("%-8s %12s %12s %9s\n", "op", "ours us/op", "raw us/op", "ours/raw");
	compare("sign", ours_sign, raw_sign, &c, iterations);
	compare("verify", ours_verify, raw_verify, &c, iterations * 10);
	compare("seal", ours_seal, raw_seal, &c, iterations * 10);
	compare("open", ours_open, raw_open, &c, iterations);

	free(c.presign);
	srup_bytes_clear(&c.blob);
	srup_msg_free(c.msg);
	EVP_PKEY_free(c.pub);
	EVP_PKEY_free(c.key);
}

static long arg(int argc, char **argv, int i, long def)
{
	char *end;
	long v;

	if (argc <= i)
		return def;
	v = strtol(argv[i], &end, 10);
	if (*end || v <= 0) {
		fprintf(stderr, "usage: %s [CODEC_ITERATIONS [CRYPTO_ITERATIONS [BITS]]]\n",
			argv[0]);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	long codec_iterations = arg(argc, argv, 1, 1000000);
	long crypto_iterations = arg(argc, argv, 2, 2000);
	long bits = arg(argc, argv, 3, 2048);

	if (bits < SRUP_RSA_MIN_BITS || bits > SRUP_RSA_MAX_BITS) {
		fprintf(stderr, "BITS must be within %d..%d\n", SRUP_RSA_MIN_BITS, SRUP_RSA_MAX_BITS);
		return 2;
	}
	bench_codec(codec_iterations);
	bench_crypto(crypto_iterations, (int)bits);
	return 0;
}
