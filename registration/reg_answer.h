/* The key service's answers (REGISTRATION.md 3), parsed from the bytes of
 * a body: every answer of srup-register goes through here.
 *
 * A body longer than REG_BODY_MAX is refused before it is looked at; JSON
 * is parsed with the body's length (no terminator needed); base64 may hold
 * line breaks, and nothing else outside its alphabet. Keys must be RSA of
 * 2048..4096 bits (libsrup's srup_key_check). On failure the function
 * returns REG_E_ANSWER (or REG_E_NOMEM) and why holds what was wrong,
 * naming the member. */
#ifndef REG_ANSWER_H
#define REG_ANSWER_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#define REG_BODY_MAX (64u * 1024u)
#define REG_ID_TEXT_MAX 16u    /* "%02" PRIx64 of a 64-bit ID */
#define REG_BROKER_MAX 255u
#define REG_WHY_MAX 256u

enum reg_err {
	REG_OK = 0,
	REG_E_NOMEM,
	REG_E_ANSWER, /* outside the protocol: not JSON, a member missing or malformed */
	REG_E__COUNT
};

const char *reg_strerror(enum reg_err err);

struct reg_status {
	bool active;
	char identity[REG_ID_TEXT_MAX + 1]; /* the server ID text, as sent */
};

struct reg_register {
	char broker[REG_BROKER_MAX + 1];     /* as sent */
	EVP_PKEY *server_key;                /* owned; reg_register_clear */
	bool has_default_c2;
	char default_c2[REG_ID_TEXT_MAX + 1];
};

struct reg_validate {
	char identity[REG_ID_TEXT_MAX + 1];
	unsigned char *signature;            /* owned; reg_validate_clear */
	size_t signature_len;
};

struct reg_access {
	X509 *certificate;                   /* owned; reg_access_clear */
	X509 *ca_certificate;
	unsigned char *certificate_pem;      /* the PEM bytes as sent (decoded) */
	size_t certificate_pem_len;
	unsigned char *ca_pem;
	size_t ca_pem_len;
};

enum reg_err reg_parse_status(const char *body, size_t len, struct reg_status *out,
			      char why[REG_WHY_MAX]);
enum reg_err reg_parse_register(const char *body, size_t len, struct reg_register *out,
				char why[REG_WHY_MAX]);
void reg_register_clear(struct reg_register *r);
enum reg_err reg_parse_validate(const char *body, size_t len, struct reg_validate *out,
				char why[REG_WHY_MAX]);
void reg_validate_clear(struct reg_validate *v);
enum reg_err reg_parse_access(const char *body, size_t len, struct reg_access *out,
			      char why[REG_WHY_MAX]);
void reg_access_clear(struct reg_access *a);

/* Strict base64 (RFC 4648 alphabet, '=' padding), line breaks ("\n",
 * "\r") skipped. *out is malloc'd (free it). REG_E_ANSWER if it does not
 * decode. */
enum reg_err reg_base64_decode(const char *text, size_t len, unsigned char **out,
			       size_t *out_len);
/* base64 of data, one line, no terminator but '\0'; malloc'd, NULL if out
 * of memory. */
char *reg_base64_encode(const unsigned char *data, size_t len);

/* The server key in the service's bare form: base64 of SubjectPublicKeyInfo
 * DER. */
enum reg_err reg_parse_bare_key(const char *text, size_t len, EVP_PKEY **out,
				char why[REG_WHY_MAX]);

/* Whether text is an ID as the service writes it: 2..16 lowercase hex
 * digits, no leading zero beyond "%02x" (an ID below 0x10 is "0N"). */
bool reg_id_text_valid(const char *text);

/* The broker value to the configuration's form: "mqtt://HOST" (no port)
 * becomes "mqtts://HOST:8883", "mqtt://HOST:PORT" "mqtts://HOST:PORT",
 * "mqtts://..." is kept; the reference device always uses TLS. HOST is a
 * DNS name or address of [A-Za-z0-9.-] or a bracketed IPv6 address, PORT
 * 1..65535; anything else is REG_E_ANSWER with why. */
enum reg_err reg_broker_url(const char *broker, char *out, size_t out_len,
			    char why[REG_WHY_MAX]);

#endif
