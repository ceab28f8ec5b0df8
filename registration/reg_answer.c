/* The key service's answers, parsed with bounds (reg_answer.h). */
#include "reg_answer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "srup.h"

/* Members hold at most this much text: a PEM certificate in base64 lines
 * is a few kilobytes; the body cap bounds it anyway. */
#define MEMBER_MAX REG_BODY_MAX

const char *reg_strerror(enum reg_err err)
{
	switch (err) {
	case REG_OK:
		return "success";
	case REG_E_NOMEM:
		return "out of memory";
	case REG_E_ANSWER:
		return "answer outside the protocol";
	case REG_E__COUNT:
		break;
	}
	return "unknown error";
}

__attribute__((format(printf, 2, 3))) static enum reg_err refuse(char why[REG_WHY_MAX],
								  const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, REG_WHY_MAX, fmt, ap);
	va_end(ap);
	return REG_E_ANSWER;
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

enum reg_err reg_base64_decode(const char *text, size_t len, unsigned char **out,
			       size_t *out_len)
{
	/* Every 4 characters give at most 3 bytes. */
	unsigned char *buf = malloc(len / 4 * 3 + 3);
	unsigned acc = 0, nbits = 0, pad = 0;
	size_t n = 0, chars = 0;

	*out = NULL;
	*out_len = 0;
	if (!buf)
		return REG_E_NOMEM;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		int v;

		if (c == '\n' || c == '\r')
			continue;
		if (c == '=') {
			pad++;
			chars++;
			continue;
		}
		v = b64_value(c);
		if (v < 0 || pad > 0)  /* a foreign character, or data after padding */
			goto bad;
		chars++;
		acc = (acc << 6) | (unsigned)v;
		nbits += 6;
		if (nbits >= 8) {
			nbits -= 8;
			buf[n++] = (unsigned char)(acc >> nbits);
			acc &= (1u << nbits) - 1;
		}
	}
	/* Whole quads only, at most two '=', and no stray bits set. */
	if (chars == 0 || chars % 4 != 0 || pad > 2 || acc != 0 ||
	    (pad > 0 && (chars / 4 * 3 - pad) != n) || (pad == 0 && chars / 4 * 3 != n))
		goto bad;
	*out = buf;
	*out_len = n;
	return REG_OK;
bad:
	free(buf);
	return REG_E_ANSWER;
}

char *reg_base64_encode(const unsigned char *data, size_t len)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t out_len = (len + 2) / 3 * 4;
	char *out = malloc(out_len + 1), *p = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)data[i] << 16;
		size_t rest = len - i;

		if (rest > 1)
			v |= (unsigned)data[i + 1] << 8;
		if (rest > 2)
			v |= data[i + 2];
		*p++ = alphabet[(v >> 18) & 63];
		*p++ = alphabet[(v >> 12) & 63];
		*p++ = rest > 1 ? alphabet[(v >> 6) & 63] : '=';
		*p++ = rest > 2 ? alphabet[v & 63] : '=';
	}
	*p = '\0';
	return out;
}

bool reg_id_text_valid(const char *text)
{
	size_t n = strlen(text);

	if (n < 2 || n > REG_ID_TEXT_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((text[i] >= '0' && text[i] <= '9') || (text[i] >= 'a' && text[i] <= 'f')))
			return false;
	/* "%02x": a leading zero only in a two-digit form. */
	return !(text[0] == '0' && n > 2);
}

static enum reg_err parse_object(const char *body, size_t len, cJSON **out,
				 char why[REG_WHY_MAX])
{
	*out = NULL;
	if (len > REG_BODY_MAX)
		return refuse(why, "the answer is %zu bytes, more than the %u allowed", len,
			      REG_BODY_MAX);
	if (len == 0)
		return refuse(why, "the answer is empty, not JSON");
	*out = cJSON_ParseWithLength(body, len);
	if (!*out)
		return refuse(why, "the answer is not JSON (truncated or malformed)");
	if (!cJSON_IsObject(*out)) {
		cJSON_Delete(*out);
		*out = NULL;
		return refuse(why, "the answer is JSON but not an object");
	}
	return REG_OK;
}

/* The string member name, at most max bytes; NULL with why set if absent
 * or not a string. */
static const char *member_string(const cJSON *obj, const char *name, size_t max,
				 char why[REG_WHY_MAX])
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, name);

	if (!m) {
		refuse(why, "the answer has no \"%s\"", name);
		return NULL;
	}
	if (!cJSON_IsString(m) || !m->valuestring) {
		refuse(why, "\"%s\" is not a string", name);
		return NULL;
	}
	if (strlen(m->valuestring) > max) {
		refuse(why, "\"%s\" is longer than %zu characters", name, max);
		return NULL;
	}
	return m->valuestring;
}

static enum reg_err member_id(const cJSON *obj, const char *name, char out[REG_ID_TEXT_MAX + 1],
			      char why[REG_WHY_MAX])
{
	const char *text = member_string(obj, name, REG_ID_TEXT_MAX + 8, why);

	if (!text)
		return REG_E_ANSWER;
	if (!reg_id_text_valid(text))
		return refuse(why, "\"%s\" is '%.24s', not an ID as the service writes it "
				   "(lowercase hex, \"%%02x\")", name, text);
	memcpy(out, text, strlen(text) + 1);
	return REG_OK;
}

enum reg_err reg_parse_status(const char *body, size_t len, struct reg_status *out,
			      char why[REG_WHY_MAX])
{
	cJSON *obj;
	const cJSON *active;
	enum reg_err rc = parse_object(body, len, &obj, why);

	memset(out, 0, sizeof(*out));
	if (rc != REG_OK)
		return rc;
	active = cJSON_GetObjectItemCaseSensitive(obj, "active");
	if (!active)
		rc = refuse(why, "the answer has no \"active\"");
	else if (!cJSON_IsBool(active))
		rc = refuse(why, "\"active\" is not true or false");
	else {
		out->active = cJSON_IsTrue(active);
		rc = member_id(obj, "identity", out->identity, why);
	}
	cJSON_Delete(obj);
	return rc;
}

enum reg_err reg_parse_bare_key(const char *text, size_t len, EVP_PKEY **out,
				char why[REG_WHY_MAX])
{
	unsigned char *der;
	const unsigned char *p;
	size_t der_len;
	enum reg_err rc = reg_base64_decode(text, len, &der, &der_len);

	*out = NULL;
	if (rc == REG_E_NOMEM)
		return rc;
	if (rc != REG_OK)
		return refuse(why, "the server key is not base64");
	p = der;
	*out = d2i_PUBKEY(NULL, &p, (long)der_len);
	if (!*out || p != der + der_len) {
		EVP_PKEY_free(*out);
		*out = NULL;
		free(der);
		return refuse(why, "the server key is not a SubjectPublicKeyInfo (DER)");
	}
	free(der);
	if (!EVP_PKEY_is_a(*out, "RSA")) {
		rc = refuse(why, "the server key is %s, not RSA", EVP_PKEY_get0_type_name(*out));
	} else if (srup_key_check(*out) != SRUP_OK) {
		rc = refuse(why, "the server key is RSA of %d bits, not 2048..4096",
			    EVP_PKEY_get_bits(*out));
	}
	if (rc != REG_OK) {
		EVP_PKEY_free(*out);
		*out = NULL;
	}
	return rc;
}

enum reg_err reg_parse_register(const char *body, size_t len, struct reg_register *out,
				char why[REG_WHY_MAX])
{
	cJSON *obj;
	const char *broker, *key;
	enum reg_err rc = parse_object(body, len, &obj, why);

	memset(out, 0, sizeof(*out));
	if (rc != REG_OK)
		return rc;
	broker = member_string(obj, "broker", REG_BROKER_MAX, why);
	key = broker ? member_string(obj, "key", MEMBER_MAX, why) : NULL;
	if (!broker || !key) {
		rc = REG_E_ANSWER;
		goto out;
	}
	memcpy(out->broker, broker, strlen(broker) + 1);
	rc = reg_parse_bare_key(key, strlen(key), &out->server_key, why);
	if (rc != REG_OK)
		goto out;
	if (cJSON_GetObjectItemCaseSensitive(obj, "default_c2")) {
		rc = member_id(obj, "default_c2", out->default_c2, why);
		out->has_default_c2 = rc == REG_OK;
	}
out:
	if (rc != REG_OK)
		reg_register_clear(out);
	cJSON_Delete(obj);
	return rc;
}

void reg_register_clear(struct reg_register *r)
{
	EVP_PKEY_free(r->server_key);
	memset(r, 0, sizeof(*r));
}

enum reg_err reg_parse_validate(const char *body, size_t len, struct reg_validate *out,
				char why[REG_WHY_MAX])
{
	cJSON *obj;
	const char *sig;
	enum reg_err rc = parse_object(body, len, &obj, why);

	memset(out, 0, sizeof(*out));
	if (rc != REG_OK)
		return rc;
	rc = member_id(obj, "identity", out->identity, why);
	if (rc != REG_OK)
		goto out;
	sig = member_string(obj, "signature", MEMBER_MAX, why);
	if (!sig) {
		rc = REG_E_ANSWER;
		goto out;
	}
	rc = reg_base64_decode(sig, strlen(sig), &out->signature, &out->signature_len);
	if (rc == REG_E_ANSWER)
		refuse(why, "\"signature\" is not base64");
	/* RSA 2048..4096: 256..512 bytes. */
	else if (rc == REG_OK && (out->signature_len < 256 || out->signature_len > 512))
		rc = refuse(why, "\"signature\" is %zu bytes, not an RSA signature of 2048..4096 bits",
			    out->signature_len);
out:
	if (rc != REG_OK)
		reg_validate_clear(out);
	cJSON_Delete(obj);
	return rc;
}

void reg_validate_clear(struct reg_validate *v)
{
	free(v->signature);
	memset(v, 0, sizeof(*v));
}

/* One base64-of-PEM member to a certificate; the decoded PEM bytes kept. */
static enum reg_err member_certificate(const cJSON *obj, const char *name, X509 **cert,
				       unsigned char **pem, size_t *pem_len,
				       char why[REG_WHY_MAX])
{
	const char *text = member_string(obj, name, MEMBER_MAX, why);
	BIO *bio;
	enum reg_err rc;

	if (!text)
		return REG_E_ANSWER;
	rc = reg_base64_decode(text, strlen(text), pem, pem_len);
	if (rc == REG_E_ANSWER)
		return refuse(why, "\"%s\" is not base64", name);
	if (rc != REG_OK)
		return rc;
	if (*pem_len > INT32_MAX || !(bio = BIO_new_mem_buf(*pem, (int)*pem_len)))
		return REG_E_NOMEM;
	*cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!*cert)
		return refuse(why, "\"%s\" is not a PEM certificate", name);
	return REG_OK;
}

enum reg_err reg_parse_access(const char *body, size_t len, struct reg_access *out,
			      char why[REG_WHY_MAX])
{
	cJSON *obj;
	enum reg_err rc = parse_object(body, len, &obj, why);

	memset(out, 0, sizeof(*out));
	if (rc != REG_OK)
		return rc;
	rc = member_certificate(obj, "certificate", &out->certificate, &out->certificate_pem,
				&out->certificate_pem_len, why);
	if (rc == REG_OK)
		rc = member_certificate(obj, "CA_certificate", &out->ca_certificate, &out->ca_pem,
					&out->ca_pem_len, why);
	if (rc != REG_OK)
		reg_access_clear(out);
	cJSON_Delete(obj);
	return rc;
}

void reg_access_clear(struct reg_access *a)
{
	X509_free(a->certificate);
	X509_free(a->ca_certificate);
	free(a->certificate_pem);
	free(a->ca_pem);
	memset(a, 0, sizeof(*a));
}

static bool host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-';
}

enum reg_err reg_broker_url(const char *broker, char *out, size_t out_len,
			    char why[REG_WHY_MAX])
{
	const char *host, *end, *port = NULL;
	size_t host_len;
	unsigned long num = 0;
	int n;

	if (strncmp(broker, "mqtt://", 7) == 0)
		host = broker + 7;
	else if (strncmp(broker, "mqtts://", 8) == 0)
		host = broker + 8;
	else
		return refuse(why, "the broker '%.64s' is not mqtt://HOST[:PORT] or mqtts://HOST[:PORT]",
			      broker);
	if (*host == '[') {
		end = host + 1;
		while (*end && (host_char(*end) || *end == ':') && *end != '.')
			end++;
		if (*end != ']' || end == host + 1)
			return refuse(why, "the broker '%.64s' has a malformed IPv6 address", broker);
		end++;
	} else {
		end = host;
		while (host_char(*end))
			end++;
		if (end == host)
			return refuse(why, "the broker '%.64s' names no host", broker);
	}
	host_len = (size_t)(end - host);
	if (*end == ':') {
		port = end + 1;
		for (end = port; *end >= '0' && *end <= '9' && end - port < 6; end++)
			num = num * 10 + (unsigned long)(*end - '0');
		if (end == port || num < 1 || num > 65535)
			return refuse(why, "the broker '%.64s' has a port outside 1..65535", broker);
	}
	/* A trailing "/" is what URLs often carry; nothing else may follow. */
	if (*end == '/')
		end++;
	if (*end != '\0')
		return refuse(why, "the broker '%.64s' has something after HOST[:PORT]", broker);
	n = snprintf(out, out_len, "mqtts://%.*s:%lu", (int)host_len, host, port ? num : 8883ul);
	if (n < 0 || (size_t)n >= out_len)
		return refuse(why, "the broker '%.64s' is too long", broker);
	return REG_OK;
}
