/* Key files and the peer key store.
 *
 * Private keys: PEM, PKCS#1 ("RSA PRIVATE KEY") or PKCS#8. A file readable
 * by group or others is refused, as ssh refuses it.
 * Public keys: PEM SubjectPublicKeyInfo ("BEGIN PUBLIC KEY") only, as libSRUP.
 * Every key must be RSA, 2048..4096 bits (srup_key_check).
 *
 * The peer key store is a directory of "<id>.pem" files, id being 16
 * lowercase hex digits, looked up by 64-bit SRUP ID. */
#ifndef SRUP_KEYS_H
#define SRUP_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

enum srup_keys_err {
	SRUP_KEYS_OK = 0,
	SRUP_KEYS_E_NOMEM,
	SRUP_KEYS_E_ARG,
	SRUP_KEYS_E_OPEN,         /* file cannot be opened or read (errno in detail) */
	SRUP_KEYS_E_PERMISSIONS,  /* private key readable by group or others */
	SRUP_KEYS_E_FORMAT,       /* not a PEM key of the expected kind */
	SRUP_KEYS_E_NOT_RSA,
	SRUP_KEYS_E_SIZE,         /* RSA modulus not within 2048..4096 bits */
	SRUP_KEYS_E_NOT_FOUND,    /* no key for that ID in the store */
	SRUP_KEYS_E_WRITE,        /* writing a key file failed */
	SRUP_KEYS_E__COUNT
};

const char *srup_keys_strerror(enum srup_keys_err err);

/* Loaders. On failure, detail (if not NULL, detail_len bytes) receives a
 * message naming the file and what was wrong. */
enum srup_keys_err srup_key_load_private(const char *path, EVP_PKEY **out, char *detail,
					 size_t detail_len);
enum srup_keys_err srup_key_load_public(const char *path, EVP_PKEY **out, char *detail,
					size_t detail_len);

/* Writers used by srup-keygen: the private half with mode 0600 (PKCS#8 PEM),
 * the public half as SubjectPublicKeyInfo PEM (mode 0644). Files are written
 * to a temporary name and renamed. */
enum srup_keys_err srup_key_write_private(const char *path, EVP_PKEY *key, char *detail,
					  size_t detail_len);
enum srup_keys_err srup_key_write_public(const char *path, EVP_PKEY *key, char *detail,
					 size_t detail_len);
enum srup_keys_err srup_key_generate(int bits, EVP_PKEY **out);

/* Peer key store. */
struct srup_keystore;

enum srup_keys_err srup_keystore_open(const char *dir, struct srup_keystore **out, char *detail,
				      size_t detail_len);
void srup_keystore_free(struct srup_keystore *ks);
/* Add a key for an ID in memory (not written to disk); the store takes a
 * reference of its own (EVP_PKEY_up_ref). */
enum srup_keys_err srup_keystore_add(struct srup_keystore *ks, uint64_t id, EVP_PKEY *key);
/* Borrowed pointer, valid until the store is freed; NULL if unknown. Keys in
 * the directory are loaded lazily and cached. */
EVP_PKEY *srup_keystore_lookup(struct srup_keystore *ks, uint64_t id);
/* The same, saying why there is no key: SRUP_KEYS_E_NOT_FOUND (no key file,
 * none added, or removed), or the error of the ID's key file in the store's
 * directory (SRUP_KEYS_E_OPEN unreadable, _FORMAT not a PEM public key,
 * _NOT_RSA, _SIZE), with the file and the reason in detail. *key is set
 * (borrowed, as from lookup) only on SRUP_KEYS_OK. */
enum srup_keys_err srup_keystore_find(struct srup_keystore *ks, uint64_t id, EVP_PKEY **key,
				      char *detail, size_t detail_len);
/* A resolver asked for the key of an ID the store does not hold (neither
 * added nor a file of its directory), as a server asks its key service:
 * it returns a new reference (the store keeps it, if it is an RSA key of
 * 2048..4096 bits; otherwise it is freed) or NULL. A miss is asked again at
 * the next lookup. It runs inside srup_keystore_lookup, so it must be
 * quick or bounded. NULL removes it. */
typedef EVP_PKEY *(*srup_keystore_resolver)(uint64_t id, void *user);
void srup_keystore_set_resolver(struct srup_keystore *ks, srup_keystore_resolver resolver,
				void *user);
/* Forget the key for an ID (in memory; a key file in the store's directory
 * is not deleted, but is no longer loaded for this ID). Pointers handed out
 * by lookup stay valid until the store is freed. SRUP_KEYS_E_NOT_FOUND if
 * the store held no key for it. */
enum srup_keys_err srup_keystore_remove(struct srup_keystore *ks, uint64_t id);

/* IDs as text. Format: 16 lowercase hex digits, zero-padded (file names,
 * JSON). Topic form: lowercase hex without leading zeros ("0" for zero),
 * as pySRUP writes IDs in topics (WIRE.md G12). */
void srup_id_format16(uint64_t id, char out[17]);
void srup_id_format_topic(uint64_t id, char out[17]);
/* Parse 1..16 hex digits (either case, leading zeros optional), nothing
 * else. Returns 0 on success, -1 if not an ID. */
int srup_id_parse(const char *text, uint64_t *out);

#endif
