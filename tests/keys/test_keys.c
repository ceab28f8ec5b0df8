/* keys/: loading (formats, permissions, sizes, types), writing, the peer
 * key store and the ID text helpers. Key files are made by the test in a
 * temporary directory with OpenSSL's encoders, in every format a user may
 * hand us. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "srup_keys.h"
#include "srup_keys_lenient.h"
#include "test_broker.h"

static char tmpdir[4096];
static EVP_PKEY *rsa2048;  /* one key for most tests: generating is slow */
static EVP_PKEY *rsa1024;
static EVP_PKEY *ec256;

static char *path_in_tmp(const char *name)
{
	static char buf[8][4200];
	static int next;
	char *p = buf[next++ % 8];
	snprintf(p, sizeof(buf[0]), "%s/%s", tmpdir, name);
	return p;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

/* Write key in any PEM structure ("type-specific" is PKCS#1 / SEC1). */
static void write_pem(const char *path, EVP_PKEY *key, int selection, const char *structure,
		      mode_t mode)
{
	OSSL_ENCODER_CTX *ectx =
		OSSL_ENCODER_CTX_new_for_pkey(key, selection, "PEM", structure, NULL);
	assert_non_null(ectx);
	assert_true(OSSL_ENCODER_CTX_get_num_encoders(ectx) > 0);
	unsigned char *pem = NULL;
	size_t len = 0;
	assert_int_equal(OSSL_ENCODER_to_data(ectx, &pem, &len), 1);
	OSSL_ENCODER_CTX_free(ectx);
	write_file(path, pem, len, mode);
	OPENSSL_free(pem);
}

static void assert_file_starts(const char *path, const char *prefix)
{
	char buf[128] = "";
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_memory_equal(buf, prefix, strlen(prefix));
}

static mode_t file_mode(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

static int group_setup(void **state)
{
	(void)state;
	if (test_tmpdir("srup-keys-test", tmpdir) != 0)
		return -1;
	if (srup_key_generate(2048, &rsa2048) != SRUP_KEYS_OK)
		return -1;
	rsa1024 = EVP_RSA_gen(1024);
	ec256 = EVP_EC_gen("P-256");
	return rsa1024 != NULL && ec256 != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(rsa2048);
	EVP_PKEY_free(rsa1024);
	EVP_PKEY_free(ec256);
	return test_rm_rf(tmpdir);
}

/* ---- loading ---- */

static void test_load_pkcs1_private(void **state)
{
	(void)state;
	const char *p = path_in_tmp("pkcs1.pem");
	write_pem(p, rsa2048, EVP_PKEY_KEYPAIR, "type-specific", 0600);
	assert_file_starts(p, "-----BEGIN RSA PRIVATE KEY-----");
	EVP_PKEY *k = NULL;
	char detail[512] = "";
	assert_int_equal(srup_key_load_private(p, &k, detail, sizeof(detail)), SRUP_KEYS_OK);
	assert_non_null(k);
	assert_int_equal(EVP_PKEY_eq(k, rsa2048), 1);
	EVP_PKEY_free(k);
}

static void test_load_pkcs8_private_written(void **state)
{
	(void)state;
	const char *p = path_in_tmp("pkcs8.pem");
	char detail[512] = "";
	assert_int_equal(srup_key_write_private(p, rsa2048, detail, sizeof(detail)),
			 SRUP_KEYS_OK);
	assert_int_equal(file_mode(p), 0600);
	assert_file_starts(p, "-----BEGIN PRIVATE KEY-----");
	EVP_PKEY *k = NULL;
	assert_int_equal(srup_key_load_private(p, &k, detail, sizeof(detail)), SRUP_KEYS_OK);
	assert_int_equal(EVP_PKEY_eq(k, rsa2048), 1);
	EVP_PKEY_free(k);
	/* Writing again replaces the file and leaves no temporary behind. */
	assert_int_equal(srup_key_write_private(p, rsa2048, detail, sizeof(detail)),
			 SRUP_KEYS_OK);
	assert_int_equal(file_mode(p), 0600);
}

static void test_load_spki_public_written(void **state)
{
	(void)state;
	const char *p = path_in_tmp("spki.pem");
	char detail[512] = "";
	/* The mode is exact whatever the umask. */
	mode_t old = umask(077);
	enum srup_keys_err rc = srup_key_write_public(p, rsa2048, detail, sizeof(detail));
	umask(old);
	assert_int_equal(rc, SRUP_KEYS_OK);
	assert_int_equal(file_mode(p), 0644);
	assert_file_starts(p, "-----BEGIN PUBLIC KEY-----");
	EVP_PKEY *k = NULL;
	assert_int_equal(srup_key_load_public(p, &k, detail, sizeof(detail)), SRUP_KEYS_OK);
	assert_int_equal(EVP_PKEY_eq(k, rsa2048), 1);
	EVP_PKEY_free(k);
}

static void test_refuse_pkcs1_public(void **state)
{
	(void)state;
	const char *p = path_in_tmp("pkcs1-public.pem");
	write_pem(p, rsa2048, EVP_PKEY_PUBLIC_KEY, "type-specific", 0644);
	assert_file_starts(p, "-----BEGIN RSA PUBLIC KEY-----");
	EVP_PKEY *k = NULL;
	char detail[512] = "";
	assert_int_equal(srup_key_load_public(p, &k, detail, sizeof(detail)), SRUP_KEYS_E_FORMAT);
	assert_null(k);
	assert_non_null(strstr(detail, p));
	assert_non_null(strstr(detail, "RSA PUBLIC KEY"));
	assert_non_null(strstr(detail, "SubjectPublicKeyInfo"));
}

static void check_too_open(mode_t mode)
{
	char name[64];
	snprintf(name, sizeof(name), "open-%04o.pem", (unsigned)mode);
	const char *p = path_in_tmp(name);
	write_pem(p, rsa2048, EVP_PKEY_KEYPAIR, "PrivateKeyInfo", mode);
	EVP_PKEY *k = NULL;
	char detail[512] = "";
	assert_int_equal(srup_key_load_private(p, &k, detail, sizeof(detail)),
			 SRUP_KEYS_E_PERMISSIONS);
	assert_null(k);
	char expect[600];
	snprintf(expect, sizeof(expect), "permissions %04o for '%s' are too open", (unsigned)mode,
		 p);
	assert_non_null(strstr(detail, expect));
	assert_non_null(strstr(detail, "must not be accessible by others"));

	/* srup-msg's variant loads it and reports the same problem. */
	bool too_open = false;
	detail[0] = '\0';
	assert_int_equal(srup_key_load_private_lenient(p, &k, &too_open, detail, sizeof(detail)),
			 SRUP_KEYS_OK);
	assert_true(too_open);
	assert_non_null(strstr(detail, expect));
	EVP_PKEY_free(k);
}

static void test_refuse_private_0644(void **state)
{
	(void)state;
	check_too_open(0644);
}

static void test_refuse_private_0640(void **state)
{
	(void)state;
	check_too_open(0640);
}

static void test_refuse_private_0604_0444(void **state)
{
	(void)state;
	check_too_open(0604);
	check_too_open(0444);
}

static void test_private_owner_only_modes(void **state)
{
	(void)state;
	const mode_t modes[] = {0400, 0600, 0700};
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		char name[64];
		snprintf(name, sizeof(name), "owner-%04o.pem", (unsigned)modes[i]);
		const char *p = path_in_tmp(name);
		write_pem(p, rsa2048, EVP_PKEY_KEYPAIR, "PrivateKeyInfo", modes[i]);
		EVP_PKEY *k = NULL;
		bool too_open = true;
		assert_int_equal(srup_key_load_private(p, &k, NULL, 0), SRUP_KEYS_OK);
		EVP_PKEY_free(k);
		assert_int_equal(srup_key_load_private_lenient(p, &k, &too_open, NULL, 0),
				 SRUP_KEYS_OK);
		assert_false(too_open);
		EVP_PKEY_free(k);
	}
}

static void test_refuse_1024_bits(void **state)
{
	(void)state;
	const char *priv = path_in_tmp("rsa1024-private.pem");
	const char *pub = path_in_tmp("rsa1024-public.pem");
	write_pem(priv, rsa1024, EVP_PKEY_KEYPAIR, "PrivateKeyInfo", 0600);
	write_pem(pub, rsa1024, EVP_PKEY_PUBLIC_KEY, "SubjectPublicKeyInfo", 0644);
	EVP_PKEY *k = NULL;
	char detail[512] = "";
	assert_int_equal(srup_key_load_private(priv, &k, detail, sizeof(detail)),
			 SRUP_KEYS_E_SIZE);
	assert_null(k);
	assert_non_null(strstr(detail, "1024"));
	assert_non_null(strstr(detail, priv));
	assert_int_equal(srup_key_load_public(pub, &k, detail, sizeof(detail)), SRUP_KEYS_E_SIZE);
	assert_null(k);
	/* The writers refuse it too, and generate refuses the size. */
	assert_int_equal(srup_key_write_public(path_in_tmp("w1024.pem"), rsa1024, NULL, 0),
			 SRUP_KEYS_E_SIZE);
	assert_int_equal(srup_key_generate(1024, &k), SRUP_KEYS_E_SIZE);
	assert_int_equal(srup_key_generate(4097, &k), SRUP_KEYS_E_SIZE);
	assert_null(k);
}

static void test_refuse_ec(void **state)
{
	(void)state;
	const char *pkcs8 = path_in_tmp("ec-pkcs8.pem");
	const char *sec1 = path_in_tmp("ec-sec1.pem");
	const char *pub = path_in_tmp("ec-public.pem");
	write_pem(pkcs8, ec256, EVP_PKEY_KEYPAIR, "PrivateKeyInfo", 0600);
	write_pem(sec1, ec256, EVP_PKEY_KEYPAIR, "type-specific", 0600);
	write_pem(pub, ec256, EVP_PKEY_PUBLIC_KEY, "SubjectPublicKeyInfo", 0644);
	assert_file_starts(sec1, "-----BEGIN EC PRIVATE KEY-----");
	EVP_PKEY *k = NULL;
	char detail[512] = "";
	assert_int_equal(srup_key_load_private(pkcs8, &k, detail, sizeof(detail)),
			 SRUP_KEYS_E_NOT_RSA);
	assert_non_null(strstr(detail, pkcs8));
	assert_int_equal(srup_key_load_private(sec1, &k, detail, sizeof(detail)),
			 SRUP_KEYS_E_NOT_RSA);
	assert_int_equal(srup_key_load_public(pub, &k, detail, sizeof(detail)),
			 SRUP_KEYS_E_NOT_RSA);
	assert_null(k);
	struct srup_keystore *ks = NULL;
	assert_int_equal(srup_keystore_open(NULL, &ks, NULL, 0), SRUP_KEYS_OK);
	assert_int_equal(srup_keystore_add(ks, 1, ec256), SRUP_KEYS_E_NOT_RSA);
	assert_int_equal(srup_keystore_add(ks, 1, rsa1024), SRUP_KEYS_E_SIZE);
	assert_null(srup_keystore_lookup(ks, 1));
	srup_keystore_free(ks);
}

static void test_missing_file(void **state)
{
	(void)state;
	const char *p = path_in_tmp("does-not-exist.pem");
	EVP_PKEY *k = NULL;
	char detail[512] = "";
	assert_int_equal(srup_key_load_private(p, &k, detail, sizeof(detail)), SRUP_KEYS_E_OPEN);
	assert_non_null(strstr(detail, p));
	assert_non_null(strstr(detail, "No such file"));
	assert_int_equal(srup_key_load_public(p, &k, detail, sizeof(detail)), SRUP_KEYS_E_OPEN);
	assert_int_equal(srup_key_load_public(tmpdir, &k, detail, sizeof(detail)),
			 SRUP_KEYS_E_OPEN);
	assert_non_null(strstr(detail, "not a regular file"));
	assert_null(k);
}

static void test_garbage_files(void **state)
{
	(void)state;
	static const char *const bodies[] = {
		"",
		"hello, this is not a key\n",
		"-----BEGIN PRIVATE KEY-----\nnot base64 at all!!\n-----END PRIVATE KEY-----\n",
		"-----BEGIN PUBLIC KEY-----\nnot base64 at all!!\n-----END PUBLIC KEY-----\n",
		/* Valid base64 of bytes that are not DER. */
		"-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END PRIVATE KEY-----\n",
		"-----BEGIN PUBLIC KEY-----\naGVsbG8gd29ybGQ=\n-----END PUBLIC KEY-----\n",
		"-----BEGIN RSA PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END RSA PRIVATE KEY-----\n",
		"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
	};
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		char name[32];
		snprintf(name, sizeof(name), "garbage-%zu.pem", i);
		const char *p = path_in_tmp(name);
		write_file(p, bodies[i], strlen(bodies[i]), 0600);
		EVP_PKEY *k = NULL;
		char detail[512] = "";
		assert_int_equal(srup_key_load_private(p, &k, detail, sizeof(detail)),
				 SRUP_KEYS_E_FORMAT);
		assert_null(k);
		assert_non_null(strstr(detail, p));
		detail[0] = '\0';
		assert_int_equal(srup_key_load_public(p, &k, detail, sizeof(detail)),
				 SRUP_KEYS_E_FORMAT);
		assert_null(k);
		assert_non_null(strstr(detail, p));
	}
	/* Binary bytes, and a file larger than any key. */
	unsigned char noise[256];
	for (size_t i = 0; i < sizeof(noise); i++)
		noise[i] = (unsigned char)(i * 37 + 11);
	const char *p = path_in_tmp("noise.pem");
	write_file(p, noise, sizeof(noise), 0600);
	EVP_PKEY *k = NULL;
	assert_int_equal(srup_key_load_private(p, &k, NULL, 0), SRUP_KEYS_E_FORMAT);
	size_t big_len = 200 * 1024;
	char *big = malloc(big_len);
	assert_non_null(big);
	memset(big, 'A', big_len);
	p = path_in_tmp("big.pem");
	write_file(p, big, big_len, 0600);
	free(big);
	char detail[512] = "";
	assert_int_equal(srup_key_load_public(p, &k, detail, sizeof(detail)), SRUP_KEYS_E_FORMAT);
	assert_non_null(strstr(detail, "larger than"));
}

static void test_wrong_half(void **state)
{
	(void)state;
	const char *priv = path_in_tmp("half-private.pem");
	const char *pub = path_in_tmp("half-public.pem");
	assert_int_equal(srup_key_write_private(priv, rsa2048, NULL, 0), SRUP_KEYS_OK);
	assert_int_equal(srup_key_write_public(pub, rsa2048, NULL, 0), SRUP_KEYS_OK);
	EVP_PKEY *k = NULL;
	char detail[512] = "";
	assert_int_equal(srup_key_load_public(priv, &k, detail, sizeof(detail)),
			 SRUP_KEYS_E_FORMAT);
	assert_non_null(strstr(detail, "private key"));
	/* A public key file is 0644 and would be refused for its mode first. */
	assert_int_equal(chmod(pub, 0600), 0);
	assert_int_equal(srup_key_load_private(pub, &k, detail, sizeof(detail)),
			 SRUP_KEYS_E_FORMAT);
	assert_non_null(strstr(detail, "public key"));
	assert_null(k);
}

static void test_encrypted_private_refused(void **state)
{
	(void)state;
	const char *p = path_in_tmp("encrypted.pem");
	OSSL_ENCODER_CTX *ectx = OSSL_ENCODER_CTX_new_for_pkey(
		rsa2048, EVP_PKEY_KEYPAIR, "PEM", "EncryptedPrivateKeyInfo", NULL);
	assert_non_null(ectx);
	assert_int_equal(OSSL_ENCODER_CTX_set_cipher(ectx, "AES-256-CBC", NULL), 1);
	assert_int_equal(
		OSSL_ENCODER_CTX_set_passphrase(ectx, (const unsigned char *)"secret", 6), 1);
	unsigned char *pem = NULL;
	size_t len = 0;
	assert_int_equal(OSSL_ENCODER_to_data(ectx, &pem, &len), 1);
	OSSL_ENCODER_CTX_free(ectx);
	write_file(p, pem, len, 0600);
	OPENSSL_free(pem);
	EVP_PKEY *k = NULL;
	char detail[512] = "";
	assert_int_equal(srup_key_load_private(p, &k, detail, sizeof(detail)),
			 SRUP_KEYS_E_FORMAT);
	assert_non_null(strstr(detail, "passphrase"));
	assert_null(k);
}

static void test_args_and_strerror(void **state)
{
	(void)state;
	EVP_PKEY *k = NULL;
	assert_int_equal(srup_key_load_private(NULL, &k, NULL, 0), SRUP_KEYS_E_ARG);
	assert_int_equal(srup_key_load_public("x", NULL, NULL, 0), SRUP_KEYS_E_ARG);
	assert_int_equal(srup_key_write_private(NULL, rsa2048, NULL, 0), SRUP_KEYS_E_ARG);
	assert_int_equal(srup_key_write_public("x", NULL, NULL, 0), SRUP_KEYS_E_ARG);
	assert_int_equal(srup_key_generate(2048, NULL), SRUP_KEYS_E_ARG);
	char detail[512] = "";
	assert_int_equal(srup_key_write_private("/nonexistent-dir/k.pem", rsa2048, detail,
						sizeof(detail)),
			 SRUP_KEYS_E_WRITE);
	assert_non_null(strstr(detail, "/nonexistent-dir/k.pem"));
	/* Every code has its own message. */
	for (int i = 0; i < SRUP_KEYS_E__COUNT; i++) {
		const char *a = srup_keys_strerror((enum srup_keys_err)i);
		assert_non_null(a);
		assert_string_not_equal(a, "unknown key error");
		for (int j = 0; j < i; j++)
			assert_string_not_equal(a, srup_keys_strerror((enum srup_keys_err)j));
	}
	assert_string_equal(srup_keys_strerror(SRUP_KEYS_E__COUNT), "unknown key error");
}

/* ---- key store ---- */

static void test_keystore(void **state)
{
	(void)state;
	char dir[4200];
	snprintf(dir, sizeof(dir), "%s/peers", tmpdir);
	assert_int_equal(mkdir(dir, 0755), 0);
	char p[4300];
	snprintf(p, sizeof(p), "%s/1122334455667788.pem", dir);
	assert_int_equal(srup_key_write_public(p, rsa2048, NULL, 0), SRUP_KEYS_OK);
	/* File names that are not 16 lowercase hex digits are never used. */
	snprintf(p, sizeof(p), "%s/AABBCCDDEEFF0011.pem", dir);
	assert_int_equal(srup_key_write_public(p, rsa2048, NULL, 0), SRUP_KEYS_OK);
	snprintf(p, sizeof(p), "%s/ab.pem", dir);
	assert_int_equal(srup_key_write_public(p, rsa2048, NULL, 0), SRUP_KEYS_OK);
	snprintf(p, sizeof(p), "%s/notes.txt", dir);
	write_file(p, "x\n", 2, 0644);
	/* A file with the right name but no key in it. */
	snprintf(p, sizeof(p), "%s/0000000000000001.pem", dir);
	write_file(p, "junk\n", 5, 0644);

	struct srup_keystore *ks = NULL;
	char detail[512] = "";
	assert_int_equal(srup_keystore_open(dir, &ks, detail, sizeof(detail)), SRUP_KEYS_OK);
	EVP_PKEY *hit = srup_keystore_lookup(ks, 0x1122334455667788u);
	assert_non_null(hit);
	assert_int_equal(EVP_PKEY_eq(hit, rsa2048), 1);
	/* Cached: the same object the second time. */
	assert_ptr_equal(srup_keystore_lookup(ks, 0x1122334455667788u), hit);
	assert_null(srup_keystore_lookup(ks, 0xaabbccddeeff0011u));
	assert_null(srup_keystore_lookup(ks, 0xab));
	assert_null(srup_keystore_lookup(ks, 1));
	assert_null(srup_keystore_lookup(ks, 0x99));
	assert_null(srup_keystore_lookup(ks, 0));
	assert_null(srup_keystore_lookup(ks, UINT64_MAX));

	/* A miss is not cached: a key file added later is found. */
	snprintf(p, sizeof(p), "%s/0000000000000099.pem", dir);
	assert_int_equal(srup_key_write_public(p, rsa2048, NULL, 0), SRUP_KEYS_OK);
	assert_non_null(srup_keystore_lookup(ks, 0x99));

	/* In-memory keys; replacing one keeps the old pointer valid. */
	EVP_PKEY *other = NULL;
	assert_int_equal(srup_key_generate(2048, &other), SRUP_KEYS_OK);
	assert_int_equal(srup_keystore_add(ks, UINT64_MAX, other), SRUP_KEYS_OK);
	assert_ptr_equal(srup_keystore_lookup(ks, UINT64_MAX), other);
	assert_int_equal(srup_keystore_add(ks, 0x1122334455667788u, other), SRUP_KEYS_OK);
	assert_ptr_equal(srup_keystore_lookup(ks, 0x1122334455667788u), other);
	assert_int_equal(EVP_PKEY_get_bits(hit), 2048);
	/* Many IDs keep the order right. */
	for (uint64_t id = 1000; id > 900; id--)
		assert_int_equal(srup_keystore_add(ks, id * 0x9e3779b97f4a7c15u, other),
				 SRUP_KEYS_OK);
	for (uint64_t id = 901; id <= 1000; id++)
		assert_ptr_equal(srup_keystore_lookup(ks, id * 0x9e3779b97f4a7c15u), other);
	assert_int_equal(srup_keystore_add(ks, 5, NULL), SRUP_KEYS_E_ARG);
	EVP_PKEY_free(other);  /* the store holds its own references */
	assert_int_equal(EVP_PKEY_get_bits(srup_keystore_lookup(ks, UINT64_MAX)), 2048);

	/* Removal: a key from the directory is not loaded again; an old
	 * pointer stays valid; the ID can be added again. */
	EVP_PKEY *from_dir = srup_keystore_lookup(ks, 0x99);
	assert_non_null(from_dir);
	assert_int_equal(srup_keystore_remove(ks, 0x99), SRUP_KEYS_OK);
	assert_null(srup_keystore_lookup(ks, 0x99));
	assert_int_equal(EVP_PKEY_get_bits(from_dir), 2048);
	assert_int_equal(srup_keystore_remove(ks, 0x99), SRUP_KEYS_E_NOT_FOUND);
	assert_int_equal(srup_keystore_remove(ks, 0x12345), SRUP_KEYS_E_NOT_FOUND);
	assert_int_equal(srup_keystore_remove(ks, UINT64_MAX), SRUP_KEYS_OK);
	assert_null(srup_keystore_lookup(ks, UINT64_MAX));
	assert_int_equal(srup_keystore_add(ks, UINT64_MAX, from_dir), SRUP_KEYS_OK);
	assert_ptr_equal(srup_keystore_lookup(ks, UINT64_MAX), from_dir);
	assert_int_equal(srup_keystore_remove(NULL, 1), SRUP_KEYS_E_ARG);
	srup_keystore_free(ks);
	srup_keystore_free(NULL);

	assert_int_equal(srup_keystore_open(path_in_tmp("no-such-dir"), &ks, detail,
					    sizeof(detail)),
			 SRUP_KEYS_E_OPEN);
	assert_non_null(strstr(detail, "no-such-dir"));
	snprintf(p, sizeof(p), "%s/notes.txt", dir);
	assert_int_equal(srup_keystore_open(p, &ks, detail, sizeof(detail)), SRUP_KEYS_E_OPEN);
	assert_non_null(strstr(detail, "not a directory"));
	assert_null(srup_keystore_lookup(NULL, 1));
}

/* ---- IDs ---- */

/* A resolver (a server's key service) answers a miss: asked once per miss,
 * its key kept; a key outside the rules and a removed ID are not. */
struct resolver_calls {
	unsigned n;
	EVP_PKEY *give;
};

static EVP_PKEY *count_resolver(uint64_t id, void *user)
{
	struct resolver_calls *c = user;

	(void)id;
	c->n++;
	if (c->give != NULL)
		EVP_PKEY_up_ref(c->give);
	return c->give;
}

/* srup_keystore_find says why an ID has no key: no file, a file that is
 * no key, one that cannot be read, a removed key; and the file's name. */
static void test_keystore_find_says_why(void **state)
{
	(void)state;
	char dir[4200], p[4300], detail[512];
	struct srup_keystore *ks = NULL;
	EVP_PKEY *key = (EVP_PKEY *)1;

	snprintf(dir, sizeof(dir), "%s/peers-why", tmpdir);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(p, sizeof(p), "%s/0000000000000010.pem", dir);
	assert_int_equal(srup_key_write_public(p, rsa2048, NULL, 0), SRUP_KEYS_OK);
	snprintf(p, sizeof(p), "%s/0000000000000011.pem", dir);
	write_file(p, "junk\n", 5, 0644);
	/* Cannot be read as a file, even by root. */
	snprintf(p, sizeof(p), "%s/0000000000000012.pem", dir);
	assert_int_equal(mkdir(p, 0755), 0);
	assert_int_equal(srup_keystore_open(dir, &ks, NULL, 0), SRUP_KEYS_OK);

	assert_int_equal(srup_keystore_find(ks, 0x10, &key, detail, sizeof(detail)),
			 SRUP_KEYS_OK);
	assert_ptr_equal(key, srup_keystore_lookup(ks, 0x10));

	assert_int_equal(srup_keystore_find(ks, 0x13, &key, detail, sizeof(detail)),
			 SRUP_KEYS_E_NOT_FOUND);
	assert_null(key);
	assert_non_null(strstr(detail, "no key file "));
	assert_non_null(strstr(detail, "/0000000000000013.pem"));

	assert_int_equal(srup_keystore_find(ks, 0x11, &key, detail, sizeof(detail)),
			 SRUP_KEYS_E_FORMAT);
	assert_null(key);
	assert_non_null(strstr(detail, "/0000000000000011.pem: "));

	enum srup_keys_err rc = srup_keystore_find(ks, 0x12, &key, detail, sizeof(detail));
	assert_true(rc != SRUP_KEYS_OK && rc != SRUP_KEYS_E_NOT_FOUND);
	assert_null(key);
	assert_non_null(strstr(detail, "/0000000000000012.pem: "));

	assert_int_equal(srup_keystore_remove(ks, 0x10), SRUP_KEYS_OK);
	assert_int_equal(srup_keystore_find(ks, 0x10, &key, detail, sizeof(detail)),
			 SRUP_KEYS_E_NOT_FOUND);
	assert_non_null(strstr(detail, "removed"));
	/* detail may be left out; the arguments are checked. */
	assert_int_equal(srup_keystore_find(ks, 0x13, &key, NULL, 0), SRUP_KEYS_E_NOT_FOUND);
	assert_int_equal(srup_keystore_find(NULL, 0x13, &key, NULL, 0), SRUP_KEYS_E_ARG);
	assert_int_equal(srup_keystore_find(ks, 0x13, NULL, NULL, 0), SRUP_KEYS_E_ARG);
	srup_keystore_free(ks);
}

static void test_keystore_resolver(void **state)
{
	(void)state;
	struct srup_keystore *ks = NULL;
	struct resolver_calls calls = {0};

	assert_int_equal(srup_keystore_open(tmpdir, &ks, NULL, 0), SRUP_KEYS_OK);
	srup_keystore_set_resolver(ks, count_resolver, &calls);
	assert_null(srup_keystore_lookup(ks, 0x77));
	assert_int_equal(calls.n, 1);
	assert_null(srup_keystore_lookup(ks, 0x77)); /* a miss is asked again */
	assert_int_equal(calls.n, 2);
	calls.give = rsa1024;
	assert_null(srup_keystore_lookup(ks, 0x77));
	calls.give = ec256;
	assert_null(srup_keystore_lookup(ks, 0x77));
	calls.give = rsa2048;
	assert_ptr_equal(srup_keystore_lookup(ks, 0x77), rsa2048);
	calls.n = 0;
	assert_ptr_equal(srup_keystore_lookup(ks, 0x77), rsa2048); /* kept */
	assert_int_equal(calls.n, 0);
	assert_int_equal(srup_keystore_remove(ks, 0x77), SRUP_KEYS_OK);
	assert_null(srup_keystore_lookup(ks, 0x77));
	assert_int_equal(calls.n, 0);
	srup_keystore_free(ks);

	/* A store held in memory only asks too. */
	assert_int_equal(srup_keystore_open(NULL, &ks, NULL, 0), SRUP_KEYS_OK);
	srup_keystore_set_resolver(ks, count_resolver, &calls);
	assert_ptr_equal(srup_keystore_lookup(ks, 0x78), rsa2048);
	srup_keystore_free(ks);
}

static void test_id_format(void **state)
{
	(void)state;
	char s[17];
	srup_id_format16(0, s);
	assert_string_equal(s, "0000000000000000");
	srup_id_format16(UINT64_MAX, s);
	assert_string_equal(s, "ffffffffffffffff");
	srup_id_format16(0xff, s);
	assert_string_equal(s, "00000000000000ff");
	srup_id_format16(0x0102030405060708u, s);
	assert_string_equal(s, "0102030405060708");
	srup_id_format16(0xa1b2c3d4e5f60718u, s);
	assert_string_equal(s, "a1b2c3d4e5f60718");

	srup_id_format_topic(0, s);
	assert_string_equal(s, "0");
	srup_id_format_topic(UINT64_MAX, s);
	assert_string_equal(s, "ffffffffffffffff");
	srup_id_format_topic(0xff, s);
	assert_string_equal(s, "ff");
	srup_id_format_topic(0x100, s);
	assert_string_equal(s, "100");
	srup_id_format_topic(0x0102030405060708u, s);
	assert_string_equal(s, "102030405060708");
	srup_id_format_topic(0x8000000000000000u, s);
	assert_string_equal(s, "8000000000000000");
}

static void test_id_parse(void **state)
{
	(void)state;
	uint64_t v = 12345;
	assert_int_equal(srup_id_parse("0", &v), 0);
	assert_true(v == 0);
	assert_int_equal(srup_id_parse("0000000000000000", &v), 0);
	assert_true(v == 0);
	assert_int_equal(srup_id_parse("ffffffffffffffff", &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(srup_id_parse("FFFFFFFFFFFFFFFF", &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(srup_id_parse("00000000000000ab", &v), 0);
	assert_true(v == 0xab);
	assert_int_equal(srup_id_parse("aB", &v), 0);
	assert_true(v == 0xab);
	assert_int_equal(srup_id_parse("102030405060708", &v), 0);
	assert_true(v == 0x0102030405060708u);

	v = 777;
	static const char *const bad[] = {
		"",    "00000000000000000", "10000000000000000", "ffffffffffffffff0",
		"0x1", "0X1",		    "x1",		 "-1",
		"+1",  " 1",		    "1 ",		 "1\n",
		"g",   "12z4",		    "ab.pem",		 "１",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(srup_id_parse(bad[i], &v), -1);
		assert_true(v == 777);
	}
	assert_int_equal(srup_id_parse(NULL, &v), -1);
	assert_int_equal(srup_id_parse("1", NULL), -1);

	/* format -> parse is the identity, both forms. */
	const uint64_t samples[] = {0, 1, 0xf, 0x10, 0xab, 0x0102030405060708u, UINT64_MAX,
				    0x8000000000000000u};
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		char s[17];
		srup_id_format16(samples[i], s);
		assert_int_equal(srup_id_parse(s, &v), 0);
		assert_true(v == samples[i]);
		srup_id_format_topic(samples[i], s);
		assert_int_equal(srup_id_parse(s, &v), 0);
		assert_true(v == samples[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_pkcs1_private),
		cmocka_unit_test(test_load_pkcs8_private_written),
		cmocka_unit_test(test_load_spki_public_written),
		cmocka_unit_test(test_refuse_pkcs1_public),
		cmocka_unit_test(test_refuse_private_0644),
		cmocka_unit_test(test_refuse_private_0640),
		cmocka_unit_test(test_refuse_private_0604_0444),
		cmocka_unit_test(test_private_owner_only_modes),
		cmocka_unit_test(test_refuse_1024_bits),
		cmocka_unit_test(test_refuse_ec),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_garbage_files),
		cmocka_unit_test(test_wrong_half),
		cmocka_unit_test(test_encrypted_private_refused),
		cmocka_unit_test(test_args_and_strerror),
		cmocka_unit_test(test_keystore),
		cmocka_unit_test(test_keystore_find_says_why),
		cmocka_unit_test(test_keystore_resolver),
		cmocka_unit_test(test_id_format),
		cmocka_unit_test(test_id_parse),
	};
	return cmocka_run_group_tests_name("keys", tests, group_setup, group_teardown);
}
