/* libsrup: SRUP messages on the wire (byte-compatible with libSRUP v5),
 * their signatures and the encrypted blob.
 *
 * The wire layout is fixed by spec/WIRE.md. A message (struct srup_msg) is
 * opaque: typed getters and setters below reach its fields.
 *
 * Ownership: a struct srup_msg owns every buffer it points to; free it with
 * srup_msg_free(). Byte getters return a view into the message, valid
 * until that field is set again or the message is freed. Functions return
 * enum srup_err; SRUP_OK is 0. Nothing here logs, exits or aborts. */
#ifndef SRUP_H
#define SRUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define SRUP_VERSION 0x05

/* Bounds. Lengths on the wire are u16; signatures are RSA 2048..4096 bits. */
#define SRUP_LV16_MAX 65535u
#define SRUP_SIG_MIN_BYTES 256u
#define SRUP_SIG_MAX_BYTES 512u
#define SRUP_RSA_MIN_BITS 2048
#define SRUP_RSA_MAX_BITS 4096
/* Largest plaintext sealed or accepted in a blob. libSRUP's fixed 4096-byte
 * buffers overflow above this (WIRE.md G5), so peers could not open more. */
#define SRUP_BLOB_MAX_PLAINTEXT 4079u
#define SRUP_BLOB_IV_LEN 16u
#define SRUP_BLOB_AES_KEY_LEN 32u

enum srup_err {
	SRUP_OK = 0,
	SRUP_E_NOMEM,          /* allocation failed */
	SRUP_E_ARG,            /* caller passed an invalid argument */
	SRUP_E_TRUNCATED,      /* input ends inside a field */
	SRUP_E_TRAILING,       /* bytes left over after the last field */
	SRUP_E_VERSION,        /* version byte is not 0x05 */
	SRUP_E_TYPE,           /* unknown message type code */
	SRUP_E_WRONG_TYPE,     /* a known type, but not the one expected */
	SRUP_E_FIELD_BOUND,    /* a field is longer (or shorter) than allowed */
	SRUP_E_UNSIGNED,       /* the message has no signature (or cannot have one) */
	SRUP_E_SIG_LENGTH,     /* signature length differs from the key size */
	SRUP_E_BAD_SIGNATURE,  /* the signature does not verify */
	SRUP_E_KEY,            /* key is not RSA, or its size is out of range */
	SRUP_E_CRYPTO,         /* OpenSSL failed */
	SRUP_E_NO_BLOB,        /* the type carries no encrypted blob */
	SRUP_E_BLOB_FORMAT,    /* blob lengths are inconsistent (WIRE.md G3) */
	SRUP_E_DECRYPT,        /* blob did not decrypt (key unwrap or padding) */
	SRUP_E_FIELD_VALUE,    /* a field's contents are not what it must hold */
	SRUP_E_NO_FIELD,       /* the message's type carries no such field */
	SRUP_E__COUNT
};

const char *srup_strerror(enum srup_err err);

/* The library's version ("0.1.0"), as built: what a program actually runs
 * against, whatever header it was compiled with. */
const char *srup_version(void);

enum srup_type {
	SRUP_TYPE_GENERIC = 0x00,
	SRUP_TYPE_INITIATE = 0x01,
	SRUP_TYPE_RESPONSE = 0x02,
	SRUP_TYPE_ACTIVATE = 0x03,
	SRUP_TYPE_ACTION = 0x04,
	SRUP_TYPE_DATA = 0x05,
	SRUP_TYPE_ID_REQUEST = 0x06,
	SRUP_TYPE_GROUP_ADD = 0x07,
	SRUP_TYPE_GROUP_DELETE = 0x08,
	SRUP_TYPE_JOIN_REQUEST = 0x09,
	SRUP_TYPE_JOIN_COMMAND = 0x0A,
	SRUP_TYPE_HM_JOIN_REQUEST = 0x0B,
	SRUP_TYPE_HM_JOIN_RESPONSE = 0x0C,
	SRUP_TYPE_OBS_JOIN_REQUEST = 0x0D,
	SRUP_TYPE_OBS_JOIN_RESPONSE = 0x0E,
	SRUP_TYPE_OBSERVE_REQUEST = 0x0F,
	SRUP_TYPE_RESIGN_REQUEST = 0x10,
	SRUP_TYPE_TERMINATE_COMMAND = 0x11,
	SRUP_TYPE_DEREGISTER_REQUEST = 0x12,
	SRUP_TYPE_DEREGISTER_COMMAND = 0x13,
	SRUP_TYPE_GROUP_DESTROY = 0x14,
};

/* RESPONSE status codes (WIRE.md section 3). */
enum srup_status {
	SRUP_STATUS_UPDATE_SUCCESS = 0x00,
	SRUP_STATUS_ACTIVATE_SUCCESS = 0x10,
	SRUP_STATUS_ACTIVATE_FAIL = 0x1F,
	SRUP_STATUS_ACTION_SUCCESS = 0x20,
	SRUP_STATUS_ACTION_UNKNOWN = 0x2E,
	SRUP_STATUS_ACTION_FAIL = 0x2F,
	SRUP_STATUS_DATA_TYPE_UNKNOWN = 0x3F,
	SRUP_STATUS_JOIN_SUCCESS = 0x50,
	SRUP_STATUS_JOIN_REFUSED = 0x5E,
	SRUP_STATUS_JOIN_FAIL = 0x5F,
	SRUP_STATUS_OBSERVED_JOIN_VALID = 0x60,
	SRUP_STATUS_OBSERVED_JOIN_INVALID = 0x6E,
	SRUP_STATUS_OBSERVED_JOIN_FAIL = 0x6F,
	SRUP_STATUS_RESIGN_SUCCESS = 0x70,
	SRUP_STATUS_RESIGN_FAIL = 0x7F,
	SRUP_STATUS_DEREGISTER_SUCCESS = 0x80,
	SRUP_STATUS_DEREGISTER_FAIL = 0x8F,
	SRUP_STATUS_UPDATE_FAIL_HTTP_ERROR = 0xFC,
	SRUP_STATUS_UPDATE_FAIL_SERVER = 0xFD,
	SRUP_STATUS_UPDATE_FAIL_FILE = 0xFE,
	SRUP_STATUS_UPDATE_FAIL_DIGEST = 0xFF,
};

/* Name of a status code ("OBSERVED_JOIN_VALID"), or NULL if unknown. */
const char *srup_status_name(uint8_t status);

/* Name of a message type code as srup-msg's JSON spells it
 * ("observe_request"), or NULL if unknown. */
const char *srup_type_name(uint8_t type);
/* Whether a type code is a known type that carries a signature (every
 * known type but GENERIC). */
bool srup_type_is_signed(uint8_t type);

/* A byte string owned by the message that holds it. */
struct srup_bytes {
	uint8_t *data;
	size_t len;
};

/* A message. Opaque: make one with srup_msg_new (or a srup_msg_new_*
 * constructor below) or srup_msg_decode, read and change it with the
 * getters and setters, free it with srup_msg_free. */
struct srup_msg;

/* Where a decode failed: the field (name as in the JSON, or "version",
 * "type", "sequence_id", "sender_id", "token", "signature", "message"),
 * the byte offset where it starts, and what went wrong. */
struct srup_decode_error {
	enum srup_err err;
	const char *field;
	size_t offset;
	size_t need;      /* bytes the field needed (TRUNCATED, FIELD_BOUND) */
	size_t have;      /* bytes that were there (VERSION, TYPE, WRONG_TYPE:
			   * the byte found; TRAILING: bytes left over) */
};

/* Allocation. srup_msg_new sets version and type; everything else zero
 * (NULL if out of memory). */
struct srup_msg *srup_msg_new(uint8_t type);
void srup_msg_free(struct srup_msg *m);

/* Constructors of the commonest messages, the given fields set (NULL if out
 * of memory or an argument is invalid: data_id NULL, or longer than a
 * field holds). The common fields (token, sequence and sender ID) are left
 * to set, as after srup_msg_new. */
struct srup_msg *srup_msg_new_response(uint8_t status);
struct srup_msg *srup_msg_new_action(uint8_t action_id);
/* data_id: text, sent without its terminator. */
struct srup_msg *srup_msg_new_data(const char *data_id, const void *data, size_t len);

/* Getters and setters.
 * Getters of a NULL message, or of a field its type does not carry, return
 * 0 (bytes: NULL with *len 0). Byte getters may return NULL for an empty
 * field; len may be NULL.
 * Setters return SRUP_E_ARG for a NULL message (or NULL data with a
 * nonzero len), SRUP_E_NO_FIELD if the message's type has no such field,
 * SRUP_E_FIELD_BOUND for bytes longer than SRUP_LV16_MAX, SRUP_E_NOMEM.
 * Byte setters copy; setting a new value, or freeing the message, wipes the
 * token. Setting any field of a signed message keeps its old signature:
 * sign again (srup_msg_sign) before encoding. */
uint8_t srup_msg_get_version(const struct srup_msg *m);
uint8_t srup_msg_get_type(const struct srup_msg *m);

/* Common to every type. */
uint64_t srup_msg_get_sequence_id(const struct srup_msg *m);
enum srup_err srup_msg_set_sequence_id(struct srup_msg *m, uint64_t sequence_id);
uint64_t srup_msg_get_sender_id(const struct srup_msg *m);
enum srup_err srup_msg_set_sender_id(struct srup_msg *m, uint64_t sender_id);
const uint8_t *srup_msg_token(const struct srup_msg *m, size_t *len);
enum srup_err srup_msg_set_token(struct srup_msg *m, const void *token, size_t len);
/* The signature, empty until signed or decoded (GENERIC has none: set
 * gives SRUP_E_NO_FIELD). Set one made elsewhere over srup_msg_presign's
 * bytes (an HSM, say); srup_msg_verify checks it. */
const uint8_t *srup_msg_signature(const struct srup_msg *m, size_t *len);
enum srup_err srup_msg_set_signature(struct srup_msg *m, const void *signature, size_t len);

/* Body fields; each belongs to the types named (WIRE.md section 3). */
/* RESPONSE */
uint8_t srup_msg_get_status(const struct srup_msg *m);
enum srup_err srup_msg_set_status(struct srup_msg *m, uint8_t status);
/* ACTION */
uint8_t srup_msg_get_action_id(const struct srup_msg *m);
enum srup_err srup_msg_set_action_id(struct srup_msg *m, uint8_t action_id);
/* GROUP_ADD, GROUP_DELETE, JOIN_COMMAND */
uint64_t srup_msg_get_device_id(const struct srup_msg *m);
enum srup_err srup_msg_set_device_id(struct srup_msg *m, uint64_t device_id);
/* OBS_JOIN_REQUEST */
uint64_t srup_msg_get_observer_id(const struct srup_msg *m);
enum srup_err srup_msg_set_observer_id(struct srup_msg *m, uint64_t observer_id);
/* OBSERVE_REQUEST */
uint64_t srup_msg_get_joining_device_id(const struct srup_msg *m);
enum srup_err srup_msg_set_joining_device_id(struct srup_msg *m, uint64_t joining_device_id);
/* INITIATE (as sent; srup_initiate_url and _digest below check and
 * normalise them) */
const uint8_t *srup_msg_url(const struct srup_msg *m, size_t *len);
enum srup_err srup_msg_set_url(struct srup_msg *m, const void *url, size_t len);
const uint8_t *srup_msg_digest(const struct srup_msg *m, size_t *len);
enum srup_err srup_msg_set_digest(struct srup_msg *m, const void *digest, size_t len);
/* DATA */
const uint8_t *srup_msg_data_id(const struct srup_msg *m, size_t *len);
enum srup_err srup_msg_set_data_id(struct srup_msg *m, const void *data_id, size_t len);
const uint8_t *srup_msg_data(const struct srup_msg *m, size_t *len);
enum srup_err srup_msg_set_data(struct srup_msg *m, const void *data, size_t len);
/* GROUP_ADD, GROUP_DELETE, GROUP_DESTROY */
const uint8_t *srup_msg_group_id(const struct srup_msg *m, size_t *len);
enum srup_err srup_msg_set_group_id(struct srup_msg *m, const void *group_id, size_t len);
/* HM_JOIN_RESPONSE, OBS_JOIN_RESPONSE, OBSERVE_REQUEST: the encrypted blob
 * as on the wire (srup_msg_seal and srup_msg_open make and read it). */
const uint8_t *srup_msg_encrypted(const struct srup_msg *m, size_t *len);
enum srup_err srup_msg_set_encrypted(struct srup_msg *m, const void *blob, size_t len);

/* Replace a byte string's contents with a copy of (data, len). */
enum srup_err srup_bytes_set(struct srup_bytes *b, const void *data, size_t len);
/* Wipe and free a byte string (for secrets). */
void srup_bytes_clear(struct srup_bytes *b);

/* Decode one message of exactly len bytes. Dispatches on the type byte;
 * type 0x00 decodes the common prefix only. On failure *out is NULL and
 * err (if not NULL) says which field failed where. An encrypted blob is
 * only checked as an lv16 here; its own lengths are checked when it is
 * opened (srup_msg_open), after the signature has been verified. */
enum srup_err srup_msg_decode(const uint8_t *buf, size_t len, struct srup_msg **out,
			      struct srup_decode_error *err);

/* As srup_msg_decode, but the type byte must be expected_type (WIRE.md G2):
 * another known type fails with SRUP_E_WRONG_TYPE, field "type". */
enum srup_err srup_msg_decode_as(const uint8_t *buf, size_t len, uint8_t expected_type,
				 struct srup_msg **out, struct srup_decode_error *err);

/* Encode a message. Signed types need a signature (srup_msg_sign first).
 * *out is malloc'd; free() it. */
enum srup_err srup_msg_encode(const struct srup_msg *m, uint8_t **out, size_t *out_len);

/* The signed bytes: the message without sig_len and signature. */
enum srup_err srup_msg_presign(const struct srup_msg *m, uint8_t **out, size_t *out_len);

/* RSASSA-PKCS1-v1_5 / SHA-256 over the pre-sign bytes. The key must be RSA
 * with 2048..4096 bits. sign replaces the signature; verify needs the
 * signature length to equal the key size. */
enum srup_err srup_msg_sign(struct srup_msg *m, EVP_PKEY *private_key);
enum srup_err srup_msg_verify(const struct srup_msg *m, EVP_PKEY *public_key);

/* The encrypted blob (EVP_Seal-compatible; WIRE.md section 4).
 * seal: encrypt plaintext (1..SRUP_BLOB_MAX_PLAINTEXT bytes) to recipient.
 * open: every guard of WIRE.md G3; plaintext is secret, srup_bytes_clear it. */
enum srup_err srup_blob_seal(EVP_PKEY *recipient_public, const uint8_t *plaintext, size_t len,
			     struct srup_bytes *blob);
enum srup_err srup_blob_open(EVP_PKEY *recipient_private, const uint8_t *blob, size_t len,
			     struct srup_bytes *plaintext);

/* Convenience for a message's own blob field (types 0x0C, 0x0E, 0x0F). */
enum srup_err srup_msg_seal(struct srup_msg *m, EVP_PKEY *recipient_public,
			    const uint8_t *plaintext, size_t len);
enum srup_err srup_msg_open(const struct srup_msg *m, EVP_PKEY *recipient_private,
			    struct srup_bytes *plaintext);

/* INITIATE's url and digest as a receiver uses them (WIRE.md Q8). pySRUP
 * sends both with their C terminator, so one trailing 00 on either field is
 * dropped; any other NUL is an error.
 * url: a view into the url field (no terminator of its own, *url_len bytes): the
 *   URL without one trailing 00. SRUP_E_FIELD_VALUE if that is empty or
 *   still holds a NUL byte.
 * digest: the SHA-256 of the update, from 64 hex digits (either case) or 32
 *   raw bytes, either one followed by one 00 or not (65, 64, 33 or 32
 *   bytes); a 32-byte field is 32 raw bytes even when its last is 00.
 *   SRUP_E_FIELD_VALUE for anything else.
 * Both: SRUP_E_ARG for a NULL argument, SRUP_E_WRONG_TYPE if m is not an
 * INITIATE. */
#define SRUP_INITIATE_DIGEST_LEN 32u
enum srup_err srup_initiate_url(const struct srup_msg *m, const char **url, size_t *url_len);
enum srup_err srup_initiate_digest(const struct srup_msg *m,
				   uint8_t digest[SRUP_INITIATE_DIGEST_LEN]);

/* Tokens and confirmation values as pySRUP makes them (JOIN-FLOW.md 3):
 * str(uuid4()), 36 lowercase characters 8-4-4-4-12 with hyphens; and
 * uuid4().hex, 32 lowercase hex characters. From the OpenSSL CSPRNG. */
#define SRUP_UUID_TEXT_LEN 36u
#define SRUP_UUID_HEX_LEN 32u
enum srup_err srup_uuid4_text(char out[SRUP_UUID_TEXT_LEN + 1]);
enum srup_err srup_uuid4_hex(char out[SRUP_UUID_HEX_LEN + 1]);

/* Check that a key is RSA with 2048..4096 bits. */
enum srup_err srup_key_check(EVP_PKEY *key);

#endif
