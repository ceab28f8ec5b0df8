/* Signatures, the access CSR and certificate checks (reg_crypto.h). */
#include "reg_crypto.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "reg_answer.h"

__attribute__((format(printf, 2, 3))) static int fail(char why[REG_CRYPTO_WHY_MAX],
						       const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, REG_CRYPTO_WHY_MAX, fmt, ap);
	va_end(ap);
	ERR_clear_error();
	return -1;
}

static int pss_setup(EVP_MD_CTX *ctx, EVP_PKEY *key, int sign, int saltlen)
{
	EVP_PKEY_CTX *pctx = NULL;
	int ok = sign ? EVP_DigestSignInit(ctx, &pctx, EVP_sha256(), NULL, key)
		      : EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), NULL, key);

	return ok == 1 && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
		       EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1 &&
		       EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, saltlen) == 1
		       ? 0
		       : -1;
}

int reg_sign_pss(EVP_PKEY *key, const void *data, size_t len, unsigned char **sig,
		 size_t *sig_len, char why[REG_CRYPTO_WHY_MAX])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int rc = -1;

	*sig = NULL;
	if (!ctx || pss_setup(ctx, key, 1, RSA_PSS_SALTLEN_MAX) != 0 ||
	    EVP_DigestSign(ctx, NULL, sig_len, data, len) != 1 || !(*sig = malloc(*sig_len)) ||
	    EVP_DigestSign(ctx, *sig, sig_len, data, len) != 1) {
		free(*sig);
		*sig = NULL;
		fail(why, "cannot make an RSA-PSS signature with the identity key");
	} else {
		rc = 0;
	}
	EVP_MD_CTX_free(ctx);
	return rc;
}

int reg_verify_pss(EVP_PKEY *key, const void *data, size_t len, const unsigned char *sig,
		   size_t sig_len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int rc = -1;

	if (ctx && pss_setup(ctx, key, 0, RSA_PSS_SALTLEN_AUTO) == 0 &&
	    EVP_DigestVerify(ctx, sig, sig_len, data, len) == 1)
		rc = 0;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return rc;
}

static int bio_take(BIO *bio, char **out, size_t *len)
{
	char *data;
	long n = BIO_get_mem_data(bio, &data);

	if (n <= 0 || !(*out = malloc((size_t)n + 1)))
		return -1;
	memcpy(*out, data, (size_t)n);
	(*out)[n] = '\0';
	*len = (size_t)n;
	return 0;
}

int reg_make_csr(EVP_PKEY *access_key, const char *cn, char **pem, size_t *pem_len,
		 char why[REG_CRYPTO_WHY_MAX])
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	BIO *bio = BIO_new(BIO_s_mem());
	int rc = -1;

	*pem = NULL;
	if (!req || !name || !bio ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
				       0) != 1 ||
	    X509_REQ_set_version(req, 0) != 1 || X509_REQ_set_subject_name(req, name) != 1 ||
	    X509_REQ_set_pubkey(req, access_key) != 1 ||
	    X509_REQ_sign(req, access_key, EVP_sha256()) <= 0 || PEM_write_bio_X509_REQ(bio, req) != 1 ||
	    bio_take(bio, pem, pem_len) != 0)
		fail(why, "cannot make the certificate request");
	else
		rc = 0;
	BIO_free(bio);
	X509_NAME_free(name);
	X509_REQ_free(req);
	return rc;
}

int reg_check_certificate(X509 *cert, X509 *ca, EVP_PKEY *access_key, const char *cn, time_t now,
			  struct tm *not_after, char why[REG_CRYPTO_WHY_MAX])
{
	EVP_PKEY *cert_key = X509_get0_pubkey(cert), *ca_key = X509_get0_pubkey(ca);
	X509_NAME *subject = X509_get_subject_name(cert);
	int idx, n_cn = 0;
	char got[128] = "";

	if (!cert_key || EVP_PKEY_eq(cert_key, access_key) != 1)
		return fail(why, "the certificate does not hold the access key this run made");
	if (!ca_key || X509_verify(cert, ca_key) != 1)
		return fail(why, "the certificate does not verify with CA_certificate's key");
	for (idx = -1; (idx = X509_NAME_get_index_by_NID(subject, NID_commonName, idx)) >= 0;) {
		ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
		int len = ASN1_STRING_length(s);

		if (n_cn++ == 0 && len >= 0 && (size_t)len < sizeof(got)) {
			memcpy(got, ASN1_STRING_get0_data(s), (size_t)len);
			got[len] = '\0';
			if (strlen(got) != (size_t)len)
				got[0] = '\0';
		}
	}
	if (n_cn != 1 || strcmp(got, cn) != 0)
		return fail(why, "the certificate names CN=%s%s, not CN=%s", got[0] ? got : "?",
			    n_cn > 1 ? " and more" : "", cn);
	if (X509_cmp_time(X509_get0_notBefore(cert), &now) > 0)
		return fail(why, "the certificate is not valid yet");
	if (X509_cmp_time(X509_get0_notAfter(cert), &now) < 0)
		return fail(why, "the certificate has expired");
	if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), not_after) != 1)
		return fail(why, "the certificate's end date cannot be read");
	ERR_clear_error();
	return 0;
}

int reg_key_sha256(EVP_PKEY *key, unsigned char out[32])
{
	unsigned char *der = NULL;
	unsigned int n = 0;
	int len = i2d_PUBKEY(key, &der), rc = -1;

	if (len > 0 && EVP_Digest(der, (size_t)len, out, &n, EVP_sha256(), NULL) == 1 && n == 32)
		rc = 0;
	OPENSSL_free(der);
	return rc;
}

int reg_public_pem(EVP_PKEY *key, char **pem, size_t *len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int rc = bio && PEM_write_bio_PUBKEY(bio, key) == 1 ? bio_take(bio, pem, len) : -1;

	BIO_free(bio);
	return rc;
}

char *reg_public_bare(EVP_PKEY *key)
{
	unsigned char *der = NULL;
	int len = i2d_PUBKEY(key, &der);
	char *out = len > 0 ? reg_base64_encode(der, (size_t)len) : NULL;

	OPENSSL_free(der);
	return out;
}
