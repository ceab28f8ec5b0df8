/* The cryptography of registration (REGISTRATION.md 1, 3, 4), OpenSSL 3
 * EVP only: RSA-PSS/SHA-256/MGF1-SHA-256 signatures, the access CSR, and
 * the checks of what the service hands back. Each returns 0, or -1 with a
 * message in why. */
#ifndef REG_CRYPTO_H
#define REG_CRYPTO_H

#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#define REG_CRYPTO_WHY_MAX 256u

/* PSS with the largest salt the key allows (the service refuses a
 * digest-length salt). *sig is malloc'd. */
int reg_sign_pss(EVP_PKEY *key, const void *data, size_t len, unsigned char **sig,
		 size_t *sig_len, char why[REG_CRYPTO_WHY_MAX]);
/* PSS with the salt length recovered from the signature. 0: it verifies. */
int reg_verify_pss(EVP_PKEY *key, const void *data, size_t len, const unsigned char *sig,
		   size_t sig_len);

/* A PEM certificate request for access_key, subject CN=cn, SHA-256
 * signed. *pem is malloc'd and '\0'-terminated (*pem_len excludes it). */
int reg_make_csr(EVP_PKEY *access_key, const char *cn, char **pem, size_t *pem_len,
		 char why[REG_CRYPTO_WHY_MAX]);

/* The section 4 checks of an issued certificate: it holds access_key's
 * public half, verifies with ca's key, names cn as its (only) CN and is
 * valid at now. *not_after receives its end. */
int reg_check_certificate(X509 *cert, X509 *ca, EVP_PKEY *access_key, const char *cn, time_t now,
			  struct tm *not_after, char why[REG_CRYPTO_WHY_MAX]);

/* SHA-256 of the key's SubjectPublicKeyInfo DER. */
int reg_key_sha256(EVP_PKEY *key, unsigned char out[32]);

/* PEM bytes of a public key (SubjectPublicKeyInfo), malloc'd. */
int reg_public_pem(EVP_PKEY *key, char **pem, size_t *len);
/* base64 of the SubjectPublicKeyInfo DER, one line (the service's form). */
char *reg_public_bare(EVP_PKEY *key);

#endif
