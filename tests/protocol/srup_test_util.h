/* Helpers for the libsrup tests: files, hex, PEM keys, cached RSA keys and
 * messages filled through the codec table. */
#ifndef SRUP_TEST_UTIL_H
#define SRUP_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "srup.h"
#include "srup_msg_layout.h"

/* Whole file into a malloc'd buffer; NULL on error. */
uint8_t *tu_read_file(const char *path, size_t *len);
/* Parse hex text into a malloc'd buffer; NULL if it is not even-length hex
 * (srup_hex_decode without the error detail). */
uint8_t *tu_unhex(const char *hex, size_t *len);

EVP_PKEY *tu_load_private(const char *path);
EVP_PKEY *tu_load_public(const char *path);
/* A public-only copy of key (through SubjectPublicKeyInfo DER). */
EVP_PKEY *tu_public_only(EVP_PKEY *key);

/* RSA key of bits (2048, 3072 or 4096), generated once per process; index
 * picks one of several distinct keys of the same size (0 or 1). Borrowed. */
EVP_PKEY *tu_rsa_key(int bits, int index);
void tu_free_keys(void);

/* A message of type code whose every field is set through the table:
 * IDs = id, u8 fields = byte, each lv16 field (token included) = field_len
 * bytes of a pattern with NULs, signature = sig_len pattern bytes (0: none). */
struct srup_msg *tu_make_msg(uint8_t code, uint64_t id, uint8_t byte, size_t token_len,
			     size_t field_len, size_t sig_len);
/* Field-by-field equality walking the table (and the common prefix). */
int tu_msg_equal(const struct srup_msg *a, const struct srup_msg *b);

#endif
