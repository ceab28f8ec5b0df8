/* The JSON side of the codec table: see srup_json.h. */
#include "srup_json.h"
#include "srup_hex.h"
#include "srup_msg_layout.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

/* ---- message to JSON ---- */

static bool add_hex(cJSON *obj, const char *key, const uint8_t *p, size_t n)
{
	char *hex = srup_hex_encode(p, n);
	if (hex == NULL)
		return false;
	bool ok = cJSON_AddStringToObject(obj, key, hex) != NULL;
	free(hex);
	return ok;
}

static bool add_id(cJSON *obj, const char *key, uint64_t id)
{
	char text[17];
	snprintf(text, sizeof(text), "%016" PRIx64, id);
	return cJSON_AddStringToObject(obj, key, text) != NULL;
}

static bool is_printable(const struct srup_bytes *b)
{
	if (b->len == 0)
		return false;
	for (size_t i = 0; i < b->len; i++)
		if (b->data[i] < 0x20 || b->data[i] > 0x7e)
			return false;
	return true;
}

/* "<key>_text" beside a byte field whose bytes are all printable ASCII. */
static bool add_text(cJSON *obj, const char *key, const struct srup_bytes *b)
{
	if (!is_printable(b))
		return true;
	char name[64];
	snprintf(name, sizeof(name), "%s_text", key);
	char *text = malloc(b->len + 1);
	if (text == NULL)
		return false;
	memcpy(text, b->data, b->len);
	text[b->len] = '\0';
	bool ok = cJSON_AddStringToObject(obj, name, text) != NULL;
	free(text);
	return ok;
}

static bool add_field(cJSON *obj, struct srup_msg *m, const struct srup_field_desc *f)
{
	switch (f->kind) {
	case SRUP_FIELD_U8: {
		uint8_t v = *srup_field_u8(m, f);
		if (cJSON_AddNumberToObject(obj, f->name, v) == NULL)
			return false;
		/* The one u8 whose values have names (WIRE.md section 3). */
		if (strcmp(f->name, "status") == 0) {
			const char *name = srup_status_name(v);
			if (name != NULL && cJSON_AddStringToObject(obj, "status_name", name) == NULL)
				return false;
		}
		return true;
	}
	case SRUP_FIELD_ID64:
		return add_id(obj, f->name, *srup_field_id64(m, f));
	case SRUP_FIELD_LV16: {
		const struct srup_bytes *b = srup_field_bytes(m, f);
		if (!add_hex(obj, f->name, b->data, b->len))
			return false;
		return f->is_blob || add_text(obj, f->name, b);
	}
	}
	return false;
}

/* An INITIATE from a pySRUP server carries its url and digest with a C
 * terminator (WIRE.md Q8): for a field that ends in it, say so and show
 * the text before it, which is what a receiver uses. Other messages get
 * nothing more than every byte field gets. */
static bool add_initiate_terminators(cJSON *obj, const struct srup_msg *m)
{
	const char *url;
	size_t url_len;
	uint8_t digest[SRUP_INITIATE_DIGEST_LEN];

	if (srup_initiate_url(m, &url, &url_len) == SRUP_OK && url_len != m->url.len) {
		const struct srup_bytes text = { (uint8_t *)url, url_len };

		if (cJSON_AddTrueToObject(obj, "url_terminated") == NULL ||
		    !add_text(obj, "url", &text))
			return false;
	}
	if (srup_initiate_digest(m, digest) == SRUP_OK &&
	    (m->digest.len == 2 * SRUP_INITIATE_DIGEST_LEN + 1 ||
	     m->digest.len == SRUP_INITIATE_DIGEST_LEN + 1)) {
		const struct srup_bytes text = { m->digest.data, m->digest.len - 1 };

		if (cJSON_AddTrueToObject(obj, "digest_terminated") == NULL ||
		    !add_text(obj, "digest", &text))
			return false;
	}
	return true;
}

cJSON *srup_json_from_msg(struct srup_msg *m, const bool *signature_valid)
{
	const struct srup_type_desc *t = srup_type_by_code(m->type);
	if (t == NULL)
		return NULL;
	cJSON *obj = cJSON_CreateObject();
	if (obj == NULL)
		return NULL;
	bool ok = cJSON_AddStringToObject(obj, "type", t->name) != NULL &&
		  cJSON_AddNumberToObject(obj, "version", m->version) != NULL &&
		  add_id(obj, "sequence_id", m->sequence_id) &&
		  add_id(obj, "sender_id", m->sender_id) &&
		  add_hex(obj, "token", m->token.data, m->token.len) &&
		  add_text(obj, "token", &m->token);
	if (ok && t->is_signed)
		ok = add_hex(obj, "signature", m->signature.data, m->signature.len);
	if (ok && signature_valid != NULL)
		ok = cJSON_AddBoolToObject(obj, "signature_valid", *signature_valid) != NULL;
	for (size_t i = 0; ok && i < t->n_fields; i++)
		ok = add_field(obj, m, &t->fields[i]);
	if (ok && m->type == SRUP_TYPE_INITIATE)
		ok = add_initiate_terminators(obj, m);
	if (!ok) {
		cJSON_Delete(obj);
		return NULL;
	}
	return obj;
}

/* ---- JSON to message ---- */

__attribute__((format(printf, 3, 4))) static enum srup_err fail(struct srup_json_error *err,
								 const char *key,
								 const char *fmt, ...)
{
	err->key = key;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->what, sizeof(err->what), fmt, ap);
	va_end(ap);
	return SRUP_E_ARG;
}

/* The member named key (exact case), NULL if absent. A key given twice is
 * an error: which of the two was meant cannot be known. */
static enum srup_err member(const cJSON *obj, const char *key, const cJSON **out,
			    struct srup_json_error *err)
{
	*out = NULL;
	for (const cJSON *c = obj->child; c != NULL; c = c->next) {
		if (c->string == NULL || strcmp(c->string, key) != 0)
			continue;
		if (*out != NULL)
			return fail(err, key, "given more than once");
		*out = c;
	}
	return SRUP_OK;
}

static enum srup_err required(const cJSON *obj, const char *key, const cJSON **out,
			      struct srup_json_error *err)
{
	enum srup_err rc = member(obj, key, out, err);
	if (rc == SRUP_OK && *out == NULL)
		return fail(err, key, "missing");
	return rc;
}

static enum srup_err get_u8(const cJSON *obj, const char *key, uint8_t *out,
			    struct srup_json_error *err)
{
	const cJSON *v;
	enum srup_err rc = required(obj, key, &v, err);
	if (rc != SRUP_OK)
		return rc;
	if (!cJSON_IsNumber(v))
		return fail(err, key, "expected a number 0..255");
	double d = v->valuedouble;
	if (!(d >= 0 && d <= 255) || d != (double)(int)d)
		return fail(err, key, "expected an integer 0..255, got %g", d);
	*out = (uint8_t)(int)d;
	return SRUP_OK;
}

static enum srup_err get_id(const cJSON *obj, const char *key, uint64_t *out,
			    struct srup_json_error *err)
{
	const cJSON *v;
	enum srup_err rc = required(obj, key, &v, err);
	if (rc != SRUP_OK)
		return rc;
	const char *s = cJSON_GetStringValue(v);
	if (s == NULL)
		return fail(err, key, "expected a string of 16 hex digits");
	if (s[0] == '\0')
		return fail(err, key, "expected 1 to 16 hex digits, got an empty string");
	if (srup_hex_parse_id(s, out) != 0)
		return fail(err, key, "expected 1 to 16 hex digits, got \"%.40s\"", s);
	return SRUP_OK;
}

enum srup_err srup_json_get_bytes(const cJSON *obj, const char *key, size_t min_len,
				  size_t max_len, struct srup_bytes *out,
				  struct srup_json_error *err)
{
	const cJSON *v;
	enum srup_err rc = required(obj, key, &v, err);
	if (rc != SRUP_OK)
		return rc;
	const char *s = cJSON_GetStringValue(v);
	if (s == NULL)
		return fail(err, key, "expected a string of hex digits");
	size_t text_len = strlen(s);
	uint8_t *bytes;
	size_t n, bad_at;
	int hr = srup_hex_decode(s, text_len, false, &bytes, &n, &bad_at);
	if (hr == -2)
		return SRUP_E_NOMEM;
	if (hr == -1) {
		if (bad_at == text_len)
			return fail(err, key, "odd number of hex digits (%zu)", text_len);
		return fail(err, key, "character %zu ('%c') is not a hex digit", bad_at,
			    (s[bad_at] > 0x20 && s[bad_at] < 0x7f) ? s[bad_at] : '?');
	}
	if (n < min_len || n > max_len) {
		free(bytes);
		return fail(err, key, "%zu bytes; expected %zu to %zu", n, min_len, max_len);
	}
	rc = srup_bytes_set(out, bytes, n);
	OPENSSL_cleanse(bytes, n);
	free(bytes);
	return rc;
}

static enum srup_err get_field(const cJSON *obj, struct srup_msg *m,
			       const struct srup_field_desc *f, struct srup_json_error *err)
{
	switch (f->kind) {
	case SRUP_FIELD_U8:
		return get_u8(obj, f->name, srup_field_u8(m, f), err);
	case SRUP_FIELD_ID64:
		return get_id(obj, f->name, srup_field_id64(m, f), err);
	case SRUP_FIELD_LV16:
		if (f->is_blob) {
			const cJSON *v;
			enum srup_err rc = member(obj, f->name, &v, err);
			if (rc != SRUP_OK)
				return rc;
			if (v == NULL)
				return fail(err, f->name,
					    "missing (give a ready blob, or \"plaintext\" and "
					    "--encrypt-for)");
		}
		return srup_json_get_bytes(obj, f->name, 0, f->max_len, srup_field_bytes(m, f),
					   err);
	}
	return fail(err, f->name, "field of an unknown kind");
}

enum srup_err srup_json_to_msg(const cJSON *obj, bool skip_blob, struct srup_msg **out,
			       struct srup_json_error *err)
{
	*out = NULL;
	if (!cJSON_IsObject(obj))
		return fail(err, "(top level)", "expected a JSON object");

	const cJSON *v;
	enum srup_err rc = required(obj, "type", &v, err);
	if (rc != SRUP_OK)
		return rc;
	const char *type_name = cJSON_GetStringValue(v);
	if (type_name == NULL)
		return fail(err, "type", "expected a type name (a string)");
	const struct srup_type_desc *t = srup_type_by_name(type_name);
	if (t == NULL)
		return fail(err, "type", "unknown type \"%.40s\"", type_name);

	uint8_t version;
	rc = get_u8(obj, "version", &version, err);
	if (rc != SRUP_OK)
		return rc;
	if (version != SRUP_VERSION)
		return fail(err, "version", "expected %d, got %u", SRUP_VERSION, version);

	struct srup_msg *m = srup_msg_new(t->code);
	if (m == NULL)
		return SRUP_E_NOMEM;
	rc = get_id(obj, "sequence_id", &m->sequence_id, err);
	if (rc == SRUP_OK)
		rc = get_id(obj, "sender_id", &m->sender_id, err);
	if (rc == SRUP_OK)
		rc = srup_json_get_bytes(obj, "token", 0, SRUP_LV16_MAX, &m->token, err);
	for (size_t i = 0; rc == SRUP_OK && i < t->n_fields; i++) {
		const struct srup_field_desc *f = &t->fields[i];
		if (f->is_blob && skip_blob)
			continue;
		rc = get_field(obj, m, f, err);
	}
	if (rc != SRUP_OK) {
		srup_msg_free(m);
		return rc;
	}
	*out = m;
	return SRUP_OK;
}
