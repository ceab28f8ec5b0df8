/* libFuzzer target: srup_blob_open on arbitrary bytes with the reference
 * vectors' observer key (seeded with the blob of observe_request, so that
 * mutations past the wrapped key reach the AES and padding checks). Every
 * input must give an error, or a plaintext of exactly P bytes within bounds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#include "srup.h"

#ifndef SRUP_FUZZ_BLOB_KEY
#define SRUP_FUZZ_BLOB_KEY "observer_private.pem"
#endif

static EVP_PKEY *observer_key;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *path = getenv("SRUP_FUZZ_BLOB_KEY");
	FILE *f;

	(void)argc;
	(void)argv;
	if (!path)
		path = SRUP_FUZZ_BLOB_KEY;
	f = fopen(path, "r");
	if (f) {
		observer_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (!observer_key || srup_key_check(observer_key) != SRUP_OK) {
		fprintf(stderr, "fuzz_srup_blob_open: cannot load RSA key %s\n", path);
		exit(2);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct srup_bytes pt = { 0 };
	enum srup_err rc = srup_blob_open(observer_key, data, size, &pt);
	size_t k = (size_t)EVP_PKEY_get_size(observer_key);

	if (rc == SRUP_OK) {
		uint32_t p;

		if (size < 28 + k || !pt.data)
			__builtin_trap();
		p = (uint32_t)data[24 + k] | (uint32_t)data[25 + k] << 8 |
		    (uint32_t)data[26 + k] << 16 | (uint32_t)data[27 + k] << 24;
		if (pt.len != p || pt.len < 1 || pt.len > SRUP_BLOB_MAX_PLAINTEXT ||
		    size != 28 + k + 16 * (pt.len / 16 + 1))
			__builtin_trap();
	} else if (pt.data || pt.len ||
		   (rc != SRUP_E_BLOB_FORMAT && rc != SRUP_E_DECRYPT)) {
		__builtin_trap();
	}
	srup_bytes_clear(&pt);
	return 0;
}
